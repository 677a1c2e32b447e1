//! ResNet-20 (28x28x1, 10 classes) end to end: `cargo bench --bench resnet_step`.
//!
//! (c) a training step at batch 64 — forward, the seed's cosine loss (xent weight 0.1),
//! backward, SGD (momentum 0.9, weight decay 5e-4) — and inference at batch 256 in eval mode,
//! median of 30 after 5 warm-up steps, ms and images/s; (d) the peak RSS of each. f32, random
//! normal inputs, `SMALLGRAD_BENCH_THREADS` threads (default 2). These are the workloads of
//! `scripts/compare_pytorch.py`. `SMALLGRAD_BENCH_PROFILE=1` prints a per-op profile of 10
//! training steps instead.

mod common;

use common::{bench_threads, median_secs, proc_status_mib, record, reset_peak_rss, with_threads};
use smallgrad::nn::Module;
use smallgrad::nn::resnet::{CifarResNetConfig, cifar_resnet};
use smallgrad::{Device, Tensor, no_grad};

fn main() {
    let threads = bench_threads();
    let (warmup, reps) = (5, 30);
    let cfg = CifarResNetConfig {
        in_channels: 1,
        num_classes: 10,
        width: 1,
        seed: 0,
    };
    let mut model = cifar_resnet::<f32>(20, &cfg).expect("resnet20");
    let (loss, mut opt) = common::seed_training(model.parameters()).expect("sgd");
    let x = Tensor::<f32>::randn(&[64, 1, 28, 28], 1, Device::Cpu).unwrap();
    let targets: Vec<usize> = (0..64).map(|i| (i * 7) % 10).collect();
    let x_inf = Tensor::<f32>::randn(&[256, 1, 28, 28], 2, Device::Cpu).unwrap();
    let base_rss = proc_status_mib("VmRSS").unwrap_or(f64::NAN);

    // SMALLGRAD_BENCH_PROFILE=1: a per-op profile of 10 training steps, then exit.
    if std::env::var_os("SMALLGRAD_BENCH_PROFILE").is_some() {
        let ((), prof) = with_threads(threads, || {
            smallgrad::profile(|| {
                for _ in 0..10 {
                    opt.zero_grad();
                    let logits = model.forward(&x).unwrap();
                    loss.forward(&logits, &targets).unwrap().backward().unwrap();
                    opt.step().unwrap();
                }
            })
        });
        println!("{prof}");
        return;
    }

    reset_peak_rss();
    let train = with_threads(threads, || {
        median_secs(warmup, reps, || {
            opt.zero_grad();
            let logits = model.forward(&x).unwrap();
            loss.forward(&logits, &targets).unwrap().backward().unwrap();
            opt.step().unwrap();
        })
    });
    let train_peak = proc_status_mib("VmHWM").unwrap_or(f64::NAN);

    model.set_training(false);
    let reset = reset_peak_rss();
    let infer = with_threads(threads, || {
        no_grad(|| median_secs(warmup, reps, || drop(model.forward(&x_inf).unwrap())))
    });
    let infer_peak = proc_status_mib("VmHWM").unwrap_or(f64::NAN);

    println!("# ResNet-20, 28x28x1, f32, {threads} threads ({})", common::cpu_name());
    println!("| workload | ms (median of {reps}) | images/s | peak RSS MiB |");
    println!("|---|---:|---:|---:|");
    println!(
        "| training step, batch 64 | {:.1} | {:.0} | {train_peak:.0} |",
        train * 1e3,
        64.0 / train
    );
    println!(
        "| inference, batch 256 | {:.1} | {:.0} | {} |",
        infer * 1e3,
        256.0 / infer,
        if reset {
            format!("{infer_peak:.0}")
        } else {
            "n/a".into()
        }
    );
    println!("(RSS before the first step: {base_rss:.0} MiB)");
    record("train_ms", train * 1e3);
    record("infer_ms", infer * 1e3);
    record("train_peak_rss_mib", train_peak);
    record("infer_peak_rss_mib", infer_peak);
}
