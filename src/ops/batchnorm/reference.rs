//! The reference CPU kernels of batch norm: the textbook passes, one channel at a time.
//!
//! The input is viewed as `[N, C, S]` (S = H*W, L, or 1); channel c's M = N*S values are
//! `x[i, c, j]`. Training statistics take two passes (the mean, then the sum of squared
//! deviations from it); normalising is a third. The backward's sums are one more pass and the
//! input gradient another, with the closed form derived in `mod.rs`. Plain loops, summed in
//! index order, on one thread: the kernels to read first and the oracle of `fast.rs`.

use crate::dtype::Float;

/// The input viewed as `[n, c, s]`: batch, channels, values per channel per sample.
#[derive(Clone, Copy, Debug)]
pub(super) struct BnDims {
    pub n: usize,
    pub c: usize,
    pub s: usize,
}

impl BnDims {
    /// Values per channel: `M = N * S`.
    pub fn per_channel(&self) -> usize {
        self.n * self.s
    }
    pub(super) fn numel(&self) -> usize {
        self.n * self.c * self.s
    }
}

/// Channel c's values in order: `x[i, c, j]` for i < N, j < S.
fn channel<T: Float>(d: BnDims, x: &[T], c: usize) -> impl Iterator<Item = T> + '_ {
    (0..d.n).flat_map(move |i| x[(i * d.c + c) * d.s..][..d.s].iter().copied())
}

/// Per channel: the mean and the sum of squared deviations from it, `sum (x - mean)^2`.
pub(super) fn channel_stats<T: Float>(d: BnDims, x: &[T]) -> Vec<(T, T)> {
    let m = T::from_usize(d.per_channel());
    (0..d.c)
        .map(|c| {
            let mean = channel(d, x, c).fold(T::ZERO, |s, v| s + v) / m;
            let sq = channel(d, x, c).fold(T::ZERO, |s, v| s + (v - mean) * (v - mean));
            (mean, sq)
        })
        .collect()
}

/// `y[i, c, j] = (x[i, c, j] - mean[c]) * scale[c] + shift[c]`.
pub(super) fn normalize<T: Float>(d: BnDims, x: &[T], mean: &[T], scale: &[T], shift: &[T]) -> Vec<T> {
    let mut y = vec![T::ZERO; d.numel()];
    for (at, (o, &v)) in y.iter_mut().zip(x).enumerate() {
        let c = at / d.s % d.c;
        *o = (v - mean[c]) * scale[c] + shift[c];
    }
    y
}

/// Per channel: `(sum dy, sum dy * xhat)` with `xhat = (x - mean) * invstd`.
pub(super) fn grad_sums<T: Float>(d: BnDims, x: &[T], g: &[T], mean: &[T], invstd: &[T]) -> Vec<(T, T)> {
    (0..d.c)
        .map(|c| {
            let sg = channel(d, g, c).fold(T::ZERO, |s, v| s + v);
            let sgx = channel(d, g, c)
                .zip(channel(d, x, c))
                .fold(T::ZERO, |s, (gv, xv)| s + gv * (xv - mean[c]) * invstd[c]);
            (sg, sgx)
        })
        .collect()
}

/// The input gradient: `dx = k * (dy - a - xhat * b)` in training (`coefs = Some((a, b))` per
/// channel: `a = sum dy / M`, `b = sum(dy * xhat) / M`), `dx = k * dy` in eval; `k = w * invstd`.
pub(super) fn grad_input<T: Float>(
    d: BnDims,
    x: &[T],
    g: &[T],
    mean: &[T],
    invstd: &[T],
    k: &[T],
    coefs: Option<&[(T, T)]>,
) -> Vec<T> {
    let mut dx = vec![T::ZERO; d.numel()];
    for (at, o) in dx.iter_mut().enumerate() {
        let c = at / d.s % d.c;
        *o = match coefs {
            Some(ab) => {
                let xhat = (x[at] - mean[c]) * invstd[c];
                k[c] * (g[at] - ab[c].0 - xhat * ab[c].1)
            }
            None => k[c] * g[at],
        };
    }
    dx
}

/// ReLU as the `relu` op computes it: `v` if `v > 0` or NaN (NaN propagates), else 0.
#[inline(always)]
pub(super) fn relu<T: Float>(v: T) -> T {
    if v > T::ZERO || v.is_nan() { v } else { T::ZERO }
}

/// The fused op's gradient at its pre-activation `z = bn(x) + residual`: `dz = dy` where the
/// output `y = relu(z) > 0`, else 0 (relu'(0) = 0, as the `relu` op). Elementwise.
pub(super) fn relu_grad<T: Float>(dy: &[T], y: &[T]) -> Vec<T> {
    dy.iter()
        .zip(y)
        .map(|(&g, &v)| if v > T::ZERO { g } else { T::ZERO })
        .collect()
}
