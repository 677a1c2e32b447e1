//! GEMM throughput: `cargo bench --bench gemm`.
//!
//! Prints the machine's measured FMA peak (an FMA-throughput loop per thread) and GFLOP/s of
//! `matmul` on n x n matrices, f32 and f64, n = 128 ... 2048, 1 and 2 threads, with the percent
//! of peak. `SMALLGRAD_BENCH_QUICK=1` stops at n = 512; `SMALLGRAD_BENCH_SIZES=1024,2048` picks
//! the sizes.

mod common;

use common::{median_secs, record, with_threads};
use smallgrad::{Device, Float, Tensor, no_grad};
use std::time::Instant;

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
fn fma_peak(threads: usize, f64_lanes: bool) -> f64 {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| s.spawn(move || fma_peak_one_thread(f64_lanes)))
            .collect();
        hs.into_iter().map(|h| h.join().expect("peak thread")).sum()
    })
}

fn gflops<T: Float>(n: usize, threads: usize) -> f64 {
    let a = Tensor::<T>::randn(&[n, n], 1, Device::Cpu).expect("a");
    let b = Tensor::<T>::randn(&[n, n], 2, Device::Cpu).expect("b");
    let reps = if n <= 256 {
        30
    } else if n <= 1024 {
        7
    } else {
        3
    };
    let secs = with_threads(threads, || {
        no_grad(|| median_secs(1, reps, || drop(std::hint::black_box(a.matmul(&b).expect("matmul")))))
    });
    2.0 * (n as f64).powi(3) / secs / 1e9
}

fn main() {
    let quick = std::env::var_os("SMALLGRAD_BENCH_QUICK").is_some();
    let sizes: Vec<usize> = match std::env::var("SMALLGRAD_BENCH_SIZES") {
        Ok(list) => list.split(',').filter_map(|v| v.trim().parse().ok()).collect(),
        Err(_) if quick => vec![128, 256, 512],
        Err(_) => vec![128, 256, 512, 1024, 2048],
    };
    println!("# GEMM ({}), n x n x n, median wall time", common::cpu_name());
    let peaks: Vec<(usize, f64, f64)> = [1, 2]
        .iter()
        .map(|&t| (t, fma_peak(t, false), fma_peak(t, true)))
        .collect();
    for &(t, p32, p64) in &peaks {
        println!("FMA peak, {t} thread(s): {p32:.1} GFLOP/s f32, {p64:.1} GFLOP/s f64");
        record(&format!("peak_f32_t{t}"), p32);
        record(&format!("peak_f64_t{t}"), p64);
    }
    println!();
    println!("| dtype | n | threads | GFLOP/s | % of peak |");
    println!("|---|---:|---:|---:|---:|");
    for dtype in ["f32", "f64"] {
        for &n in &sizes {
            for &(t, p32, p64) in &peaks {
                let g = if dtype == "f32" {
                    gflops::<f32>(n, t)
                } else {
                    gflops::<f64>(n, t)
                };
                let peak = if dtype == "f32" { p32 } else { p64 };
                println!("| {dtype} | {n} | {t} | {g:.1} | {:.0}% |", 100.0 * g / peak);
                record(&format!("gemm_{dtype}_n{n}_t{t}"), g);
            }
        }
    }
}
