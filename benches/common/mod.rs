//! Shared by the bench binaries: timing, thread pools, peak memory, and the result lines that
//! `scripts/compare_pytorch.py` reads.
#![allow(dead_code)] // each bench uses a subset

use smallgrad::loss::{CosineLoss, Reduction};
use smallgrad::optim::{Sgd, SgdConfig};
use smallgrad::{Result, Tensor};
use std::io::Write;
use std::time::Instant;

/// The training setup every step benchmark (and scripts/compare_pytorch.py,
/// scripts/gpu_torch_bench.py) uses: the seed's cosine loss with cross-entropy weight 0.1, and
/// SGD with momentum 0.9, weight decay 5e-4, lr 0.05.
pub fn seed_training(params: Vec<Tensor<f32>>) -> Result<(CosineLoss, Sgd<f32>)> {
    let loss = CosineLoss {
        xent: 0.1,
        reduction: Reduction::Mean,
    };
    let opt = Sgd::new(
        params,
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            ..SgdConfig::default()
        },
    )?;
    Ok((loss, opt))
}

/// Median wall time in seconds of `reps` calls of `f` after `warmup` calls.
pub fn median_secs(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Runs `f` on a fresh rayon pool of `threads` threads.
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
        .install(f)
}

/// Threads to use for the end-to-end benches: `SMALLGRAD_BENCH_THREADS`, else 2 (the issue's
/// protocol), capped by what the machine has.
pub fn bench_threads() -> usize {
    std::env::var("SMALLGRAD_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// A kibibyte field of /proc/self/status (`VmHWM`, `VmRSS`), in MiB.
pub fn proc_status_mib(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the peak-RSS mark (`VmHWM`) to the current RSS (Linux: write 5 to clear_refs).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Appends `key value` to the file named by `SMALLGRAD_BENCH_OUT` (if set), for the comparison
/// script.
pub fn record(key: &str, value: f64) {
    if let Ok(path) = std::env::var("SMALLGRAD_BENCH_OUT")
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(f, "{key} {value}");
    }
}

/// A CPU name for the table headers.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
