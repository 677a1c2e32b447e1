//! CPU kernels of the reductions. Every sum runs in a fixed order (see `backend::cpu::sum`),
//! so results do not depend on the thread count.

use crate::backend::cpu::{PAR_THRESHOLD, sum};
use crate::dtype::Float;
use crate::ops::shape::cpu::permute;
use crate::shape::split_at_dim;
use rayon::prelude::*;

/// Sums `x` over the dims where `mask` is true; the result is in row-major order over the kept
/// dims. The reduced dims are moved last (a permuted copy, skipped when they already are), then
/// each contiguous row is summed.
pub(super) fn sum_dims<T: Float>(x: &[T], shape: &[usize], mask: &[bool]) -> Vec<T> {
    let kept: Vec<usize> = (0..shape.len()).filter(|&d| !mask[d]).collect();
    let reduced: Vec<usize> = (0..shape.len()).filter(|&d| mask[d]).collect();
    let row: usize = reduced.iter().map(|&d| shape[d]).product();
    let rows: usize = kept.iter().map(|&d| shape[d]).product();
    let already_last = kept.iter().enumerate().all(|(i, &d)| i == d);
    let moved;
    let data: &[T] = if already_last {
        x
    } else {
        let perm: Vec<usize> = kept.iter().chain(&reduced).copied().collect();
        moved = permute(x, shape, &perm);
        &moved
    };
    if row == 0 {
        return vec![T::ZERO; rows];
    }
    if rows * row >= PAR_THRESHOLD && rows > 1 {
        data.par_chunks(row).map(sum).collect()
    } else if rows == 1 && row >= PAR_THRESHOLD {
        // One long row: fixed-size chunks summed in parallel, combined in order.
        let parts: Vec<T> = data.par_chunks(1 << 14).map(sum).collect();
        vec![parts.into_iter().fold(T::ZERO, |a, b| a + b)]
    } else {
        data.chunks(row).map(sum).collect()
    }
}

/// Max along `dim`: (values, flat index in `x` of the first maximum) per output element.
/// NaN propagates (a NaN is taken as the maximum, as PyTorch).
pub(super) fn max_dim<T: Float>(x: &[T], shape: &[usize], dim: usize) -> (Vec<T>, Vec<usize>) {
    let (outer, size, inner) = split_at_dim(shape, dim);
    let mut vals = Vec::with_capacity(outer * inner);
    let mut idx = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let base = o * size * inner + i;
            let (mut best, mut bi) = (x[base], base);
            for k in 1..size {
                let v = x[base + k * inner];
                if !best.is_nan() && (v > best || v.is_nan()) {
                    best = v;
                    bi = base + k * inner;
                }
            }
            vals.push(best);
            idx.push(bi);
        }
    }
    (vals, idx)
}

/// L2 norm along `dim` (output in keepdim layout).
pub(super) fn norm_dim<T: Float>(x: &[T], shape: &[usize], dim: usize) -> Vec<T> {
    let (outer, size, inner) = split_at_dim(shape, dim);
    let mut out = crate::backend::cpu::pool::zeroed::<T>(outer * inner);
    for o in 0..outer {
        for k in 0..size {
            let row = &x[(o * size + k) * inner..(o * size + k + 1) * inner];
            for (acc, &v) in out[o * inner..(o + 1) * inner].iter_mut().zip(row) {
                *acc += v * v;
            }
        }
    }
    out.iter_mut().for_each(|v| *v = v.sqrt());
    out
}

/// dL/dx = g * x / n along `dim` (0 where n = 0); `n` and `g` in keepdim layout.
pub(super) fn norm_backward<T: Float>(x: &[T], shape: &[usize], dim: usize, n: &[T], g: &[T]) -> Vec<T> {
    let (outer, size, inner) = split_at_dim(shape, dim);
    let mut dx = crate::backend::cpu::pool::zeroed(x.len());
    for o in 0..outer {
        for k in 0..size {
            for i in 0..inner {
                let j = o * inner + i;
                let p = (o * size + k) * inner + i;
                dx[p] = if n[j] == T::ZERO { T::ZERO } else { g[j] * x[p] / n[j] };
            }
        }
    }
    dx
}
