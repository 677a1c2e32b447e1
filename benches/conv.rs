//! conv2d forward and backward for every distinct layer shape of ResNet-20 on 28x28x1 inputs at
//! batch 64: `cargo bench --bench conv`. Backward is timed as (forward + backward) - forward;
//! it computes both dX and dW (the stem's input needs no dX in a network, but it is timed the
//! same way here, as PyTorch's script does). `SMALLGRAD_BENCH_LAYERS=text` times only the layers
//! whose name contains `text` (e.g. `stage1`), for profiling one shape.
//!
//! Each row also gives the layer's roofline: its flops, its minimum memory traffic (every
//! operand read once and every result written once, f32), their ratio (the arithmetic
//! intensity), the bound min(FMA peak, intensity x read bandwidth) with the peak and bandwidth
//! measured on this machine with the same thread count, and the achieved share of that bound.

mod common;

use common::{bench_threads, fma_peak, median_secs, read_bandwidth, record, with_threads};
use smallgrad::{Device, Tensor, no_grad};

/// (name, in channels, out channels, kernel, stride, padding, input side).
pub const LAYERS: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("stem 3x3 1->16 @28", 1, 16, 3, 1, 1, 28),
    ("stage1 3x3 16->16 @28", 16, 16, 3, 1, 1, 28),
    ("stage2 3x3 16->32 s2 @28", 16, 32, 3, 2, 1, 28),
    ("stage2 1x1 16->32 s2 @28", 16, 32, 1, 2, 0, 28),
    ("stage2 3x3 32->32 @14", 32, 32, 3, 1, 1, 14),
    ("stage3 3x3 32->64 s2 @14", 32, 64, 3, 2, 1, 14),
    ("stage3 1x1 32->64 s2 @14", 32, 64, 1, 2, 0, 14),
    ("stage3 3x3 64->64 @7", 64, 64, 3, 1, 1, 7),
];

const BATCH: usize = 64;

fn main() {
    let threads = bench_threads();
    println!(
        "# conv2d, ResNet-20 layer shapes on 28x28x1, batch {BATCH}, f32, {threads} threads ({})",
        common::cpu_name()
    );
    let (peak, bw) = (fma_peak(threads, false), read_bandwidth(threads));
    println!("Roofline: FMA peak {peak:.1} GFLOP/s f32, read bandwidth {bw:.1} GB/s ({threads} threads)");
    println!(
        "| layer | forward ms | backward ms | MFLOP fwd / bwd | min MB fwd / bwd | flop/byte fwd / bwd \
         | bound GFLOP/s fwd / bwd | GFLOP/s fwd | GFLOP/s bwd | % of bound fwd / bwd |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    with_threads(threads, || {
        // SMALLGRAD_BENCH_LAYERS=text: only the layers whose name contains it (for profiling).
        let only = std::env::var("SMALLGRAD_BENCH_LAYERS").unwrap_or_default();
        for (i, &(name, c, o, k, s, p, hw)) in LAYERS.iter().enumerate() {
            if !name.contains(only.as_str()) {
                continue;
            }
            let x = Tensor::<f32>::randn(&[BATCH, c, hw, hw], 1, Device::Cpu)
                .unwrap()
                .requires_grad();
            let w = Tensor::<f32>::randn(&[o, c, k, k], 2, Device::Cpu)
                .unwrap()
                .requires_grad();
            let fwd = no_grad(|| median_secs(3, 30, || drop(x.conv2d(&w, None, s, p).unwrap())));
            let y = x.conv2d(&w, None, s, p).unwrap();
            let g = Tensor::<f32>::randn(y.shape(), 3, Device::Cpu).unwrap();
            let both = median_secs(3, 30, || {
                let y = x.conv2d(&w, None, s, p).unwrap();
                y.backward_with(&g).unwrap();
                x.zero_grad();
                w.zero_grad();
            });
            let bwd = (both - fwd).max(0.0);
            let oh = (hw + 2 * p - k) / s + 1;
            let flops = 2.0 * (BATCH * o * oh * oh * c * k * k) as f64;
            let (xs, ws, ys) = (BATCH * c * hw * hw, o * c * k * k, BATCH * o * oh * oh);
            // Forward: read x, w; write y. Backward: read x, w, dy; write dx, dw.
            let bytes_f = 4.0 * (xs + ws + ys) as f64;
            let bytes_b = 4.0 * (2 * xs + 2 * ws + ys) as f64;
            let (ai_f, ai_b) = (flops / bytes_f, 2.0 * flops / bytes_b);
            let (bound_f, bound_b) = (peak.min(ai_f * bw), peak.min(ai_b * bw));
            let (gf, gb) = (flops / fwd / 1e9, 2.0 * flops / bwd / 1e9);
            println!(
                "| {name} | {:.3} | {:.3} | {:.1} / {:.1} | {:.2} / {:.2} | {ai_f:.1} / {ai_b:.1} \
                 | {bound_f:.0} / {bound_b:.0} | {gf:.1} | {gb:.1} | {:.0}% / {:.0}% |",
                fwd * 1e3,
                bwd * 1e3,
                flops / 1e6,
                2.0 * flops / 1e6,
                bytes_f / 1e6,
                bytes_b / 1e6,
                100.0 * gf / bound_f,
                100.0 * gb / bound_b
            );
            record(&format!("conv{i}_fwd_ms"), fwd * 1e3);
            record(&format!("conv{i}_bwd_ms"), bwd * 1e3);
        }
    });
}
