//! The reference conv2d kernels: im2col + the textbook GEMM, exactly as `mod.rs` derives them.
//!
//! For each image: gather every receptive field into the column matrix `col(X)` ([`im2col`]:
//! one row per (input channel, kernel row, kernel column), one column per output position),
//! then `Y = W · col(X)`. Backward: `dW += dY · col(X)ᵀ`, `dcol = Wᵀ · dY`, and dX is
//! [`col2im`] of dcol (each column entry added back to the pixel it was read from). All three
//! products are the triple loop of `backend/cpu/gemm/reference.rs`; images run one after the
//! other on one thread. Nothing here is tuned: this is the kernel to read first, and the test
//! oracle of the fast kernels in `fast.rs` (which compute the same thing without ever building
//! `col(X)`, on a "wide grid" of the padded image, with the packed SIMD GEMM).

use crate::backend::cpu::gemm::{MatRef, reference::gemm};
use crate::dtype::Float;

/// The geometry of one conv2d: input `[n, c, h, w]`, weight `[o, c, r, s]`, output
/// `[n, o, oh, ow]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conv2dParams {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub r: usize,
    pub s: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Conv2dParams {
    /// Rows of the column matrix: one per (channel, kernel row, kernel column).
    pub(super) fn k(&self) -> usize {
        self.c * self.r * self.s
    }
    /// Columns of the column matrix: one per output position.
    pub(super) fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// A 1x1, stride-1, unpadded conv: the image itself is the column matrix.
    pub(super) fn is_pointwise(&self) -> bool {
        self.r == 1 && self.s == 1 && self.stride_h == 1 && self.stride_w == 1 && self.pad_h == 0 && self.pad_w == 0
    }
    /// Input row read by output row `oy` at kernel row `ki`, if inside the image.
    #[inline]
    pub(super) fn in_y(&self, oy: usize, ki: usize) -> Option<usize> {
        (oy * self.stride_h + ki)
            .checked_sub(self.pad_h)
            .filter(|&y| y < self.h)
    }
    /// The output columns `lo..hi` whose input column `ox * sw + kj - pw` lies inside the
    /// image (the others read padding).
    #[inline]
    pub(super) fn valid_x(&self, kj: usize) -> (usize, usize) {
        let lo = self.pad_w.saturating_sub(kj).div_ceil(self.stride_w).min(self.ow);
        let hi = if self.w + self.pad_w > kj {
            ((self.w - 1 + self.pad_w - kj) / self.stride_w + 1).min(self.ow)
        } else {
            0
        };
        (lo, hi.max(lo))
    }
}

/// The column matrix of one image `x` (`[c, h, w]`): `col[(ci, ki, kj), (oy, ox)]` is the
/// input pixel that kernel tap (ki, kj) of output position (oy, ox) reads, or 0 in the
/// padding. Shape `[c * r * s, oh * ow]`.
pub(super) fn im2col<T: Float>(x: &[T], p: &Conv2dParams) -> Vec<T> {
    let np = p.p();
    let mut col = vec![T::ZERO; p.k() * np];
    for ci in 0..p.c {
        for ki in 0..p.r {
            for kj in 0..p.s {
                let row = &mut col[((ci * p.r + ki) * p.s + kj) * np..][..np];
                for oy in 0..p.oh {
                    let Some(iy) = p.in_y(oy, ki) else { continue };
                    for ox in 0..p.ow {
                        let ix = (ox * p.stride_w + kj).checked_sub(p.pad_w).filter(|&ix| ix < p.w);
                        if let Some(ix) = ix {
                            row[oy * p.ow + ox] = x[(ci * p.h + iy) * p.w + ix];
                        }
                    }
                }
            }
        }
    }
    col
}

/// The adjoint of [`im2col`]: adds each column-matrix entry back into the image position it
/// was read from (padding entries are dropped). `dx` is one image `[c, h, w]`, accumulated.
pub(super) fn col2im<T: Float>(col: &[T], p: &Conv2dParams, dx: &mut [T]) {
    let np = p.p();
    for ci in 0..p.c {
        for ki in 0..p.r {
            for kj in 0..p.s {
                let row = &col[((ci * p.r + ki) * p.s + kj) * np..][..np];
                for oy in 0..p.oh {
                    let Some(iy) = p.in_y(oy, ki) else { continue };
                    let dst = &mut dx[(ci * p.h + iy) * p.w..][..p.w];
                    let (lo, hi) = p.valid_x(kj);
                    if lo == hi {
                        continue;
                    }
                    let first = lo * p.stride_w + kj - p.pad_w;
                    let src = &row[oy * p.ow + lo..oy * p.ow + hi];
                    for (d, &v) in dst[first..].iter_mut().step_by(p.stride_w).zip(src) {
                        *d += v;
                    }
                }
            }
        }
    }
}

/// `Y[n] = W · col(X[n])` (+ bias) for every image: `[n, o, oh, ow]`.
pub(super) fn forward<T: Float>(x: &[T], wt: &[T], bias: Option<&[T]>, p: &Conv2dParams) -> Vec<T> {
    let (k, np) = (p.k(), p.p());
    let (img_in, img_out) = (p.c * p.h * p.w, p.o * np);
    let mut y = vec![T::ZERO; p.n * img_out];
    for img in 0..p.n {
        let col = im2col(&x[img * img_in..][..img_in], p);
        let yi = &mut y[img * img_out..][..img_out];
        gemm(p.o, np, k, &MatRef::new(wt, k), &MatRef::new(&col, np), yi, false);
        if let Some(b) = bias {
            for (row, &bv) in yi.chunks_mut(np).zip(b) {
                row.iter_mut().for_each(|v| *v += bv);
            }
        }
    }
    y
}

/// Gradients of conv2d: (dX if `need_dx`, dW if `need_dw`). dB is a plain sum (see mod.rs).
pub(super) fn backward<T: Float>(
    x: &[T],
    wt: &[T],
    dy: &[T],
    p: &Conv2dParams,
    need_dx: bool,
    need_dw: bool,
) -> (Option<Vec<T>>, Option<Vec<T>>) {
    let (k, np) = (p.k(), p.p());
    let (img_in, img_out) = (p.c * p.h * p.w, p.o * np);
    let mut dx = need_dx.then(|| vec![T::ZERO; p.n * img_in]);
    let mut dw = need_dw.then(|| vec![T::ZERO; p.o * k]);
    for img in 0..p.n {
        let g = MatRef::new(&dy[img * img_out..][..img_out], np);
        if let Some(dw) = dw.as_mut() {
            // dW += dY[n] (o x np) · col(X[n])ᵀ (np x k)
            let col = im2col(&x[img * img_in..][..img_in], p);
            gemm(p.o, k, np, &g, &MatRef::new(&col, np).t(), dw, true);
        }
        if let Some(dx) = dx.as_mut() {
            // dcol = Wᵀ (k x o) · dY[n] (o x np); dX[n] = col2im(dcol)
            let mut dcol = vec![T::ZERO; k * np];
            gemm(k, np, p.o, &MatRef::new(wt, k).t(), &g, &mut dcol, false);
            col2im(&dcol, p, &mut dx[img * img_in..][..img_in]);
        }
    }
    (dx, dw)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Direct loops in f64: y, and for an upstream g, dx and dw (the definitions).
    pub(in crate::ops::conv) fn naive(
        x: &[f64],
        w: &[f64],
        g: &[f64],
        p: &Conv2dParams,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0; p.n * p.o * p.oh * p.ow];
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; w.len()];
        for n in 0..p.n {
            for o in 0..p.o {
                for oy in 0..p.oh {
                    for ox in 0..p.ow {
                        let yi = ((n * p.o + o) * p.oh + oy) * p.ow + ox;
                        for c in 0..p.c {
                            for ki in 0..p.r {
                                for kj in 0..p.s {
                                    let iy = (oy * p.stride_h + ki) as isize - p.pad_h as isize;
                                    let ix = (ox * p.stride_w + kj) as isize - p.pad_w as isize;
                                    if iy < 0 || ix < 0 || iy >= p.h as isize || ix >= p.w as isize {
                                        continue;
                                    }
                                    let xi = ((n * p.c + c) * p.h + iy as usize) * p.w + ix as usize;
                                    let wi = ((o * p.c + c) * p.r + ki) * p.s + kj;
                                    y[yi] += w[wi] * x[xi];
                                    dx[xi] += w[wi] * g[yi];
                                    dw[wi] += x[xi] * g[yi];
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, dx, dw)
    }

    #[allow(clippy::too_many_arguments)]
    pub(in crate::ops::conv) fn params(
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        o: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Conv2dParams {
        let oh = (h + 2 * pad - k) / stride + 1;
        let ow = (w + 2 * pad - k) / stride + 1;
        Conv2dParams {
            n,
            c,
            h,
            w,
            o,
            r: k,
            s: k,
            stride_h: stride,
            stride_w: stride,
            pad_h: pad,
            pad_w: pad,
            oh,
            ow,
        }
    }

    /// im2col + GEMM equals the definition of the convolution (direct loops over every output,
    /// channel and tap), forward and both gradients, with stride, padding and rectangular
    /// kernels.
    #[test]
    fn im2col_gemm_matches_the_direct_loops() {
        let mut rng = crate::Rng::new(3);
        let mut cases = vec![
            params(2, 3, 7, 6, 4, 3, 1, 1),
            params(2, 2, 9, 8, 3, 3, 2, 1),
            params(1, 4, 5, 5, 2, 1, 2, 0),
        ];
        let mut rect = params(1, 2, 6, 9, 3, 3, 1, 2);
        rect.s = 5;
        rect.stride_w = 2;
        rect.ow = (rect.w + 2 * rect.pad_w - rect.s) / rect.stride_w + 1;
        cases.push(rect);
        for p in cases {
            let x: Vec<f64> = (0..p.n * p.c * p.h * p.w).map(|_| rng.normal()).collect();
            let w: Vec<f64> = (0..p.o * p.c * p.r * p.s).map(|_| rng.normal()).collect();
            let g: Vec<f64> = (0..p.n * p.o * p.oh * p.ow).map(|_| rng.normal()).collect();
            let (y0, dx0, dw0) = naive(&x, &w, &g, &p);
            let y = forward(&x, &w, None, &p);
            let (dx, dw) = backward(&x, &w, &g, &p, true, true);
            for (name, got, want) in [("y", y, y0), ("dx", dx.unwrap(), dx0), ("dw", dw.unwrap(), dw0)] {
                assert_eq!(got.len(), want.len(), "{name}");
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{name}: {a} vs {b} in {p:?}");
                }
            }
        }
    }
}
