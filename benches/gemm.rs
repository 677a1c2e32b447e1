//! GEMM throughput: `cargo bench --bench gemm`.
//!
//! Prints the machine's measured FMA peak (an FMA-throughput loop per thread) and GFLOP/s of
//! `matmul` on n x n matrices, f32 and f64, n = 128 ... 2048, 1 and 2 threads, with the percent
//! of peak. `SMALLGRAD_BENCH_QUICK=1` stops at n = 512; `SMALLGRAD_BENCH_SIZES=1024,2048` picks
//! the sizes.

mod common;

use common::{fma_peak, median_secs, record, with_threads};
use smallgrad::{Device, Float, Tensor, no_grad};

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
