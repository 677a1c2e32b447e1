//! CPU kernels of softmax / log_softmax and their fused backward.
//!
//! The tensor is seen as `[outer, size, inner]` around the softmax dim (see
//! [`split_at_dim`](crate::shape::split_at_dim)): each of the `outer` blocks of `size * inner`
//! contiguous elements holds `inner` independent "columns" of length `size` (stride `inner`).
//! Blocks are processed independently (in parallel when large), each one sequentially, so the
//! result does not depend on the number of threads.

use crate::backend::cpu::{dot, for_each_row, sum};
use crate::dtype::Float;

/// The shape of the problem: `outer` blocks, the softmax dim of length `size`, and `inner`
/// interleaved columns per block. `log` selects log_softmax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SoftmaxParams {
    pub outer: usize,
    pub size: usize,
    pub inner: usize,
    pub log: bool,
}

impl SoftmaxParams {
    fn block(&self) -> usize {
        self.size * self.inner
    }
}

/// Forward: `y = softmax(x)` or `log_softmax(x)` along the dim, with the max subtracted first.
pub(super) fn forward<T: Float>(x: &[T], p: SoftmaxParams) -> Vec<T> {
    let mut out = crate::backend::cpu::pool::zeroed(x.len());
    let block = p.block();
    // ~ a handful of flops per element (max, exp, sum, divide).
    for_each_row(&mut out, block, block * 4, |b, o| {
        let xb = &x[b * block..(b + 1) * block];
        if p.inner == 1 {
            forward_row(xb, o, p.log);
        } else {
            forward_block(xb, o, p.size, p.inner, p.log);
        }
    });
    out
}

/// One contiguous row (the softmax dim is the last one): the common case.
fn forward_row<T: Float>(x: &[T], out: &mut [T], log: bool) {
    // -inf start: an all -inf row gives (-inf) - (-inf) = NaN below, as PyTorch.
    let m = x.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - m).exp();
    }
    let s = sum(out);
    if log {
        let ls = s.ln();
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v - m - ls;
        }
    } else {
        out.iter_mut().for_each(|o| *o /= s);
    }
}

/// One `[size, inner]` block: `inner` columns reduced along `size`, walked row by row so the
/// inner loops are contiguous.
fn forward_block<T: Float>(x: &[T], out: &mut [T], size: usize, inner: usize, log: bool) {
    let mut m = vec![T::neg_infinity(); inner];
    for row in x.chunks_exact(inner) {
        for (mi, &v) in m.iter_mut().zip(row) {
            *mi = mi.max(v);
        }
    }
    let mut s = vec![T::ZERO; inner];
    for (orow, xrow) in out.chunks_exact_mut(inner).zip(x.chunks_exact(inner)) {
        for i in 0..inner {
            let e = (xrow[i] - m[i]).exp();
            orow[i] = e;
            s[i] += e;
        }
    }
    debug_assert_eq!(out.len(), size * inner);
    if log {
        let ls: Vec<T> = s.iter().map(|v| v.ln()).collect();
        for (orow, xrow) in out.chunks_exact_mut(inner).zip(x.chunks_exact(inner)) {
            for i in 0..inner {
                orow[i] = xrow[i] - m[i] - ls[i];
            }
        }
    } else {
        for orow in out.chunks_exact_mut(inner) {
            for (o, &si) in orow.iter_mut().zip(&s) {
                *o /= si;
            }
        }
    }
}

/// Fused backward from the output `y` and the upstream gradient `g`:
/// softmax `dx = y * (g - sum(g * y))`, log_softmax `dx = g - exp(y) * sum(g)`, sums along
/// the dim.
pub(super) fn backward<T: Float>(y: &[T], g: &[T], p: SoftmaxParams) -> Vec<T> {
    let mut dx = crate::backend::cpu::pool::zeroed(y.len());
    let block = p.block();
    for_each_row(&mut dx, block, block * 3, |b, d| {
        let r = b * block..(b + 1) * block;
        let (yb, gb) = (&y[r.clone()], &g[r]);
        if p.inner == 1 {
            backward_row(yb, gb, d, p.log);
        } else {
            backward_block(yb, gb, d, p.inner, p.log);
        }
    });
    dx
}

fn backward_row<T: Float>(y: &[T], g: &[T], dx: &mut [T], log: bool) {
    if log {
        let sg = sum(g);
        for ((d, &y), &g) in dx.iter_mut().zip(y).zip(g) {
            *d = g - y.exp() * sg;
        }
    } else {
        let gy = dot(g, y);
        for ((d, &y), &g) in dx.iter_mut().zip(y).zip(g) {
            *d = y * (g - gy);
        }
    }
}

fn backward_block<T: Float>(y: &[T], g: &[T], dx: &mut [T], inner: usize, log: bool) {
    // acc[i] = sum_k g[k, i] * y[k, i] (softmax) or sum_k g[k, i] (log_softmax)
    let mut acc = vec![T::ZERO; inner];
    for (yrow, grow) in y.chunks_exact(inner).zip(g.chunks_exact(inner)) {
        for i in 0..inner {
            acc[i] += if log { grow[i] } else { grow[i] * yrow[i] };
        }
    }
    for ((drow, yrow), grow) in dx
        .chunks_exact_mut(inner)
        .zip(y.chunks_exact(inner))
        .zip(g.chunks_exact(inner))
    {
        for i in 0..inner {
            drow[i] = if log {
                grow[i] - yrow[i].exp() * acc[i]
            } else {
                yrow[i] * (grow[i] - acc[i])
            };
        }
    }
}
