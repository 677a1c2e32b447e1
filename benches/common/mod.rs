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

/// Peak GFLOP/s of one thread: 12 independent FMA chains on full-width vectors.
fn fma_peak_one_thread(f64_lanes: bool) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present (checked above).
            return unsafe { peak_avx512(f64_lanes) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA are present (checked above).
            return unsafe { peak_avx2(f64_lanes) };
        }
    }
    let _ = f64_lanes;
    f64::NAN
}

const ITERS: usize = 10_000_000;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn peak_avx512(f64_lanes: bool) -> f64 {
    use std::arch::x86_64::*;
    let t = Instant::now();
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..ITERS {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let s: f32 = acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum();
    std::hint::black_box(s);
    let lanes = if f64_lanes { 8.0 } else { 16.0 };
    12.0 * ITERS as f64 * lanes * 2.0 / t.elapsed().as_secs_f64() / 1e9
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn peak_avx2(f64_lanes: bool) -> f64 {
    use std::arch::x86_64::*;
    let t = Instant::now();
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..ITERS {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut out = [0f32; 8];
    let mut s = 0.0;
    for v in acc {
        // SAFETY: `out` holds 8 f32.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
        s += out.iter().sum::<f32>();
    }
    std::hint::black_box(s);
    let lanes = if f64_lanes { 4.0 } else { 8.0 };
    12.0 * ITERS as f64 * lanes * 2.0 / t.elapsed().as_secs_f64() / 1e9
}

/// Peak of `threads` threads running the loop at once (sum of their rates).
pub fn fma_peak(threads: usize, f64_lanes: bool) -> f64 {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| s.spawn(move || fma_peak_one_thread(f64_lanes)))
            .collect();
        hs.into_iter().map(|h| h.join().expect("peak thread")).sum()
    })
}

/// Memory bandwidth of `threads` threads, GB/s: each thread sums a 64 MiB f32 buffer of its
/// own (far beyond the caches), best of 3 passes; the sum of their rates. A streaming read is
/// the bound a layer's minimum traffic meets in the roofline of benches/conv.rs.
pub fn read_bandwidth(threads: usize) -> f64 {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let buf = vec![1.0f32; 16 << 20];
                    let mut best = f64::INFINITY;
                    for _ in 0..3 {
                        let t = Instant::now();
                        // Sixteen partial sums so the adds are not one dependent chain.
                        let mut acc = [0.0f32; 16];
                        for ch in buf.chunks_exact(16) {
                            for (a, v) in acc.iter_mut().zip(ch) {
                                *a += v;
                            }
                        }
                        std::hint::black_box(acc);
                        best = best.min(t.elapsed().as_secs_f64());
                    }
                    (buf.len() * 4) as f64 / best / 1e9
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("bandwidth thread")).sum()
    })
}
