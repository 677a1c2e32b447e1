//! The caching allocator of the CUDA backend: a warm training loop makes no `cuMemAlloc` call.
//! Its own test binary (its own process), so that no other test allocates on the device while it
//! counts. Without a GPU it prints `no CUDA device: skipping ...`.
#![cfg(feature = "cuda")]

mod common;

use common::cuda::{gpu, tiny_resnet};
use common::{normal, targets, to_f32};
use smallgrad::loss::{Reduction, cross_entropy};
use smallgrad::nn::Module;
use smallgrad::optim::{Sgd, SgdConfig};
use smallgrad::{Result, Rng};

#[test]
fn allocator_reuses_memory_across_steps() {
    let Some(dev) = gpu("allocator_reuses_memory_across_steps") else {
        return;
    };
    let model = tiny_resnet(dev).unwrap();
    let mut opt = Sgd::new(
        model.parameters(),
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = Rng::new(5);
    let x = to_f32(&normal(&[8, 1, 12, 12], &mut rng)).to_device(dev).unwrap();
    let y = targets(8, 10, &mut rng);
    let mut step = || -> Result<()> {
        opt.zero_grad();
        cross_entropy(&model.forward(&x)?, &y, Reduction::Mean)?.backward()?;
        opt.step()
    };
    for _ in 0..2 {
        step().unwrap();
    }
    let before = smallgrad::cuda::memory_stats(dev).unwrap();
    for _ in 0..100 {
        step().unwrap();
    }
    smallgrad::cuda::synchronize(dev).unwrap();
    let after = smallgrad::cuda::memory_stats(dev).unwrap();
    assert_eq!(after.device_allocs, before.device_allocs, "{before:?} -> {after:?}");
    assert!(
        after.bytes_in_use <= before.bytes_in_use + (1 << 20),
        "{before:?} -> {after:?}"
    );
}
