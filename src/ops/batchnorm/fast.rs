//! The fast CPU kernels of batch norm over an input viewed as `[N, C, S]` (S = H*W, L, or 1):
//! the passes of `reference.rs`, summed with 8 accumulators (which vectorises) and run in
//! parallel over channels or rows.
//!
//! Per-channel reductions run one channel per task (in parallel over channels for large
//! inputs); inside a channel the values are summed in a fixed order (N slices of S values,
//! each with the 8-accumulator order of `backend::cpu::sum`), so results do not depend on the
//! thread count. Elementwise passes run over the N rows of `C*S` values.

use super::reference::{BnDims, relu};
use crate::backend::cpu::{PAR_THRESHOLD, new_rows, sum};
use crate::dtype::Float;
use rayon::prelude::*;

/// `sum_i f(a_i, b_i)` over equal slices with 8 accumulators combined in a fixed order.
fn sum8<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut acc = [T::ZERO; 8];
    let n8 = a.len() / 8 * 8;
    for i in (0..n8).step_by(8) {
        for k in 0..8 {
            acc[k] += f(a[i + k], b[i + k]);
        }
    }
    let mut s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for i in n8..a.len() {
        s += f(a[i], b[i]);
    }
    s
}

/// `f(channel)` for every channel, in parallel over channels when the input is large.
fn per_channel<R: Send>(d: BnDims, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    if d.c > 1 && d.numel() >= PAR_THRESHOLD {
        (0..d.c).into_par_iter().map(f).collect()
    } else {
        (0..d.c).map(f).collect()
    }
}

/// The `N` slices of `S` values of channel `c`, in order.
fn slices<T: Float>(d: BnDims, x: &[T], c: usize) -> impl Iterator<Item = &[T]> {
    (0..d.n).map(move |i| {
        let o = (i * d.c + c) * d.s;
        &x[o..o + d.s]
    })
}

/// Per channel: the mean and the sum of squared deviations from it, `sum (x - mean)^2`
/// (two passes over the channel, which is more accurate than `E[x^2] - mean^2`).
/// With `M = 0` the mean is NaN (unused: there is no output).
pub(super) fn channel_stats<T: Float>(d: BnDims, x: &[T]) -> Vec<(T, T)> {
    let m = T::from_usize(d.per_channel());
    per_channel(d, |c| {
        let mut total = T::ZERO;
        for sl in slices(d, x, c) {
            total += sum(sl);
        }
        let mean = total / m;
        let mut sq = T::ZERO;
        for sl in slices(d, x, c) {
            sq += sum8(sl, sl, |v, _| (v - mean) * (v - mean));
        }
        (mean, sq)
    })
}

/// `y = (x - mean[c]) * scale[c] + shift[c]`, with `scale = invstd * weight` and
/// `shift = bias` per channel.
pub(super) fn normalize<T: Float>(d: BnDims, x: &[T], mean: &[T], scale: &[T], shift: &[T]) -> Vec<T> {
    let row = d.c * d.s;
    new_rows(d.n, row, row, |i, orow| {
        let xrow = &x[i * row..(i + 1) * row];
        for c in 0..d.c {
            let (mu, k, b) = (mean[c], scale[c], shift[c]);
            let range = c * d.s..(c + 1) * d.s;
            for (o, &v) in orow[range.clone()].iter_mut().zip(&xrow[range]) {
                o.write((v - mu) * k + b);
            }
        }
    })
}

/// The fused forward: `y = relu((x - mean[c]) * scale[c] + shift[c] + residual)` in one pass
/// (the residual, if any, has the input's shape).
pub(super) fn normalize_relu<T: Float>(
    d: BnDims,
    x: &[T],
    mean: &[T],
    scale: &[T],
    shift: &[T],
    residual: Option<&[T]>,
) -> Vec<T> {
    let row = d.c * d.s;
    new_rows(d.n, row, 2 * row, |i, orow| {
        let xrow = &x[i * row..(i + 1) * row];
        for c in 0..d.c {
            let (mu, k, b) = (mean[c], scale[c], shift[c]);
            let range = c * d.s..(c + 1) * d.s;
            let (o, xs) = (&mut orow[range.clone()], &xrow[range.clone()]);
            match residual {
                Some(r) => {
                    let rs = &r[i * row..(i + 1) * row][range];
                    for ((o, &v), &rv) in o.iter_mut().zip(xs).zip(rs) {
                        o.write(relu((v - mu) * k + b + rv));
                    }
                }
                None => {
                    for (o, &v) in o.iter_mut().zip(xs) {
                        o.write(relu((v - mu) * k + b));
                    }
                }
            }
        }
    })
}

/// [`super::reference::relu_grad`] in parallel over the N rows.
pub(super) fn relu_grad<T: Float>(d: BnDims, dy: &[T], y: &[T]) -> Vec<T> {
    let row = d.c * d.s;
    new_rows(d.n, row, row, |i, orow| {
        let (gs, ys) = (&dy[i * row..(i + 1) * row], &y[i * row..(i + 1) * row]);
        for ((o, &g), &v) in orow.iter_mut().zip(gs).zip(ys) {
            o.write(if v > T::ZERO { g } else { T::ZERO });
        }
    })
}

/// Per channel: `(sum dy, sum dy * xhat)` with `xhat = (x - mean) * invstd`.
pub(super) fn grad_sums<T: Float>(d: BnDims, x: &[T], g: &[T], mean: &[T], invstd: &[T]) -> Vec<(T, T)> {
    per_channel(d, |c| {
        let mu = mean[c];
        let (mut sg, mut sgx) = (T::ZERO, T::ZERO);
        for (gs, xs) in slices(d, g, c).zip(slices(d, x, c)) {
            sg += sum(gs);
            sgx += sum8(gs, xs, |gv, xv| gv * (xv - mu));
        }
        (sg, sgx * invstd[c])
    })
}

/// The input gradient, elementwise per channel:
/// - training: `dx = k * (dy - a - xhat * b)`, `k = w * invstd`, `a = sum dy / M`,
///   `b = sum(dy * xhat) / M` (the closed form in `mod.rs`), with `xhat = (x - mean) * invstd`;
/// - eval (`coefs = None`): `dx = k * dy`.
pub(super) fn grad_input<T: Float>(
    d: BnDims,
    x: &[T],
    g: &[T],
    mean: &[T],
    invstd: &[T],
    k: &[T],
    coefs: Option<&[(T, T)]>,
) -> Vec<T> {
    let row = d.c * d.s;
    new_rows(d.n, row, row, |i, orow| {
        let (xrow, grow) = (&x[i * row..(i + 1) * row], &g[i * row..(i + 1) * row]);
        for c in 0..d.c {
            let range = c * d.s..(c + 1) * d.s;
            let (o, xs, gs) = (&mut orow[range.clone()], &xrow[range.clone()], &grow[range]);
            let kc = k[c];
            match coefs {
                Some(ab) => {
                    let (a, b, mu, r) = (ab[c].0, ab[c].1, mean[c], invstd[c]);
                    for ((o, &xv), &gv) in o.iter_mut().zip(xs).zip(gs) {
                        o.write(kc * (gv - a - (xv - mu) * r * b));
                    }
                }
                None => {
                    for (o, &gv) in o.iter_mut().zip(gs) {
                        o.write(kc * gv);
                    }
                }
            }
        }
    })
}
