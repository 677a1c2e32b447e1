//! The CUDA backend's speed (feature `cuda`; run on a GPU by scripts/gpu-check.sh):
//! `cargo bench --features cuda --bench cuda`.
//!
//! - GEMM through our path (matmul -> cuBLAS strided-batched GEMM), f32 and f64, n = 1024..8192;
//! - ResNet-20 (28x28x1, batch 128) and ResNet-50 (224x224x3, batch 32, 1000 classes) training
//!   steps: forward, loss (the seed's cosine loss, xent 0.1), backward, SGD (momentum 0.9, wd
//!   5e-4); median step time (synchronised) and images/s.
//!
//! The same workloads in PyTorch are in scripts/gpu_torch_bench.py. Without a GPU it prints one
//! line and exits.

mod common;

use common::median_secs;
use smallgrad::nn::resnet::{CifarResNetConfig, ResNetConfig, cifar_resnet, resnet50};
use smallgrad::nn::{self, Module};
use smallgrad::{Device, Float, Tensor};

fn sync(dev: Device) {
    smallgrad::cuda::synchronize(dev).expect("synchronize");
}

fn gemm<T: Float>(dev: Device, n: usize) -> f64 {
    let a = Tensor::<T>::randn(&[n, n], 1, Device::Cpu)
        .unwrap()
        .to_device(dev)
        .unwrap();
    let b = Tensor::<T>::randn(&[n, n], 2, Device::Cpu)
        .unwrap()
        .to_device(dev)
        .unwrap();
    let reps = if n >= 4096 { 5 } else { 20 };
    let secs = median_secs(3, reps, || {
        drop(a.matmul(&b).unwrap());
        sync(dev);
    });
    2.0 * (n as f64).powi(3) / secs / 1e9
}

fn step_time(dev: Device, model: &dyn Module<f32>, input: &[usize], classes: usize, reps: usize) -> f64 {
    nn::to_device(model, dev).unwrap();
    let (loss, mut opt) = common::seed_training(model.parameters()).unwrap();
    let x = Tensor::<f32>::randn(input, 1, Device::Cpu)
        .unwrap()
        .to_device(dev)
        .unwrap();
    let targets: Vec<usize> = (0..input[0]).map(|i| (i * 7) % classes).collect();
    median_secs(3, reps, || {
        opt.zero_grad();
        let logits = model.forward(&x).unwrap();
        loss.forward(&logits, &targets).unwrap().backward().unwrap();
        opt.step().unwrap();
        sync(dev);
    })
}

fn main() {
    let dev = Device::Cuda(0);
    if let Err(e) = dev.check_available() {
        println!("no CUDA device: skipping the CUDA benchmarks ({e})");
        return;
    }
    println!("# smallgrad on cuda:0");
    println!("| GEMM n | f32 GFLOP/s | f64 GFLOP/s |");
    println!("|---:|---:|---:|");
    for n in [1024, 2048, 4096, 8192] {
        println!("| {n} | {:.0} | {:.0} |", gemm::<f32>(dev, n), gemm::<f64>(dev, n));
    }
    let r20 = cifar_resnet::<f32>(
        20,
        &CifarResNetConfig {
            in_channels: 1,
            num_classes: 10,
            width: 1,
            seed: 0,
        },
    )
    .unwrap();
    let t20 = step_time(dev, &r20, &[128, 1, 28, 28], 10, 20);
    let r50 = resnet50::<f32>(&ResNetConfig {
        in_channels: 3,
        num_classes: 1000,
        small_input_stem: false,
        seed: 0,
    })
    .unwrap();
    let t50 = step_time(dev, &r50, &[32, 3, 224, 224], 1000, 5);
    println!();
    println!("| training step (f32) | ms (median) | images/s |");
    println!("|---|---:|---:|");
    println!(
        "| ResNet-20, 28x28x1, batch 128 | {:.2} | {:.0} |",
        t20 * 1e3,
        128.0 / t20
    );
    println!(
        "| ResNet-50, 224x224x3, batch 32 | {:.1} | {:.0} |",
        t50 * 1e3,
        32.0 / t50
    );
    let s = smallgrad::cuda::memory_stats(dev).unwrap();
    println!(
        "\nallocator: {} cuMemAlloc calls, {:.0} MiB in use, {:.0} MiB cached",
        s.device_allocs,
        s.bytes_in_use as f64 / 1048576.0,
        s.bytes_cached as f64 / 1048576.0
    );
}
