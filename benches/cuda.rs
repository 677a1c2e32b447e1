//! The CUDA backend's speed and call counts (feature `cuda`):
//! `cargo bench --features cuda --bench cuda [-- --short]`.
//!
//! For one warm training step (after two warm-up steps) of ResNet-20 and ResNet-50 — forward, the
//! seed's cosine loss (xent 0.1), backward, SGD (momentum 0.9, wd 5e-4) — a line of what the step
//! asked of the driver, counted by smallgrad (`smallgrad::cuda::counters`, the same on a GPU and
//! on the simulator):
//!
//! `cuda-step MODEL bBATCH: syncs=S d2h=D h2d=H launches=L cublas=C alloc_calls=A peak_mib=P`
//!
//! - full mode (a GPU, run by scripts/gpu-check.sh): GEMM GFLOP/s through matmul (f32, f64,
//!   n = 1024..8192), and the steps of ResNet-20 (28x28x1, batch 128) and ResNet-50 (224x224x3,
//!   batch 32, 1000 classes) with their median time, TF32 off and on; PyTorch's are in
//!   scripts/gpu_torch_bench.py;
//! - `--short` (or `SMALLGRAD_BENCH_SHORT=1`; the simulator in CI): small batches and inputs
//!   (the counts do not depend on the image size), and no timing worth reading.
//!
//! Without a GPU it prints one line and exits.

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

/// Median seconds of a training step (after two warm-up steps), and the counters line of the
/// last one.
fn step(
    dev: Device,
    name: &str,
    model: &dyn Module<f32>,
    input: &[usize],
    classes: usize,
    reps: usize,
) -> (f64, String) {
    nn::to_device(model, dev).unwrap();
    let (loss, mut opt) = common::seed_training(model.parameters()).unwrap();
    let x = Tensor::<f32>::randn(input, 1, Device::Cpu)
        .unwrap()
        .to_device(dev)
        .unwrap();
    let targets: Vec<usize> = (0..input[0]).map(|i| (i * 7) % classes).collect();
    let mut one = || {
        opt.zero_grad();
        let logits = model.forward(&x).unwrap();
        let l = loss.forward(&logits, &targets).unwrap();
        l.backward().unwrap();
        opt.step().unwrap();
        l.item().unwrap(); // the caller's read: the step's one necessary synchronisation
    };
    let mut before = smallgrad::cuda::counters(dev).unwrap();
    let secs = median_secs(2, reps, || {
        before = smallgrad::cuda::counters(dev).unwrap();
        one();
    });
    let after = smallgrad::cuda::counters(dev).unwrap();
    let mem = smallgrad::cuda::memory_stats(dev).unwrap();
    let d = after.since(&before);
    let line = format!(
        "cuda-step {name} b{}: syncs={} d2h={} h2d={} launches={} cublas={} alloc_calls={} peak_mib={:.1}",
        input[0],
        d.synchronizations,
        d.d2h_copies,
        d.h2d_copies,
        d.launches,
        d.cublas_calls,
        d.device_allocs,
        mem.peak_bytes_in_use as f64 / 1048576.0
    );
    (secs, line)
}

fn resnet20() -> Box<dyn Module<f32>> {
    let cfg = CifarResNetConfig {
        in_channels: 1,
        num_classes: 10,
        width: 1,
        seed: 0,
    };
    Box::new(cifar_resnet::<f32>(20, &cfg).unwrap())
}

fn resnet_50() -> Box<dyn Module<f32>> {
    let cfg = ResNetConfig {
        in_channels: 3,
        num_classes: 1000,
        small_input_stem: false,
        seed: 0,
    };
    Box::new(resnet50::<f32>(&cfg).unwrap())
}

fn main() {
    let dev = Device::Cuda(0);
    if let Err(e) = dev.check_available() {
        println!("no CUDA device: skipping the CUDA benchmarks ({e})");
        return;
    }
    let short =
        std::env::args().any(|a| a == "--short") || std::env::var("SMALLGRAD_BENCH_SHORT").is_ok_and(|v| v == "1");
    if short {
        println!("# smallgrad on cuda:0, short mode (counts; the times of a simulator mean nothing)");
        for batch in [2, 4] {
            println!("{}", step(dev, "resnet20", &*resnet20(), &[batch, 1, 12, 12], 10, 1).1);
        }
        for batch in [2, 4] {
            println!(
                "{}",
                step(dev, "resnet50", &*resnet_50(), &[batch, 3, 32, 32], 1000, 1).1
            );
        }
        return;
    }
    println!("# smallgrad on cuda:0");
    println!("| GEMM n | f32 GFLOP/s | f64 GFLOP/s |");
    println!("|---:|---:|---:|");
    for n in [1024, 2048, 4096, 8192] {
        println!("| {n} | {:.0} | {:.0} |", gemm::<f32>(dev, n), gemm::<f64>(dev, n));
    }
    println!();
    println!("| training step (f32) | TF32 | ms (median) | images/s |");
    println!("|---|---|---:|---:|");
    let mut lines = Vec::new();
    for tf32 in [false, true] {
        smallgrad::cuda::set_tf32(dev, tf32).unwrap();
        let on = if tf32 { "on" } else { "off" };
        let (t20, c20) = step(dev, "resnet20", &*resnet20(), &[128, 1, 28, 28], 10, 20);
        let (t50, c50) = step(dev, "resnet50", &*resnet_50(), &[32, 3, 224, 224], 1000, 5);
        println!(
            "| ResNet-20, 28x28x1, batch 128 | {on} | {:.2} | {:.0} |",
            t20 * 1e3,
            128.0 / t20
        );
        println!(
            "| ResNet-50, 224x224x3, batch 32 | {on} | {:.1} | {:.0} |",
            t50 * 1e3,
            32.0 / t50
        );
        lines = vec![c20, c50];
    }
    smallgrad::cuda::set_tf32(dev, false).unwrap();
    let (c20, c50) = (&lines[0], &lines[1]);
    println!("\n{c20}\n{c50}");
    let s = smallgrad::cuda::memory_stats(dev).unwrap();
    println!(
        "\nallocator: {} cuMemAlloc calls, {:.0} MiB in use, {:.0} MiB cached",
        s.device_allocs,
        s.bytes_in_use as f64 / 1048576.0,
        s.bytes_cached as f64 / 1048576.0
    );
}
