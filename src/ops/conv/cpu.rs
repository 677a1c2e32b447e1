//! CPU kernels of conv2d: im2col / col2im and the three GEMMs of forward and backward.
//!
//! Images are processed in fixed chunks of [`CHUNK`] images. Chunks run in parallel; inside a
//! chunk, images run in order and reuse one column buffer (bounded scratch: one image's
//! column matrix per chunk in flight, never the whole batch's). The weight gradient is summed
//! per chunk and the chunk partials are added in chunk order, so the bits do not depend on the
//! number of threads.

use crate::backend::cpu::gemm::{MatRef, gemm};
use crate::dtype::Float;
use rayon::prelude::*;

/// Images per work chunk.
const CHUNK: usize = 4;

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
    fn k(&self) -> usize {
        self.c * self.r * self.s
    }
    /// Columns of the column matrix: one per output position.
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// A 1x1, stride-1, unpadded conv: the image itself is the column matrix.
    fn is_pointwise(&self) -> bool {
        self.r == 1 && self.s == 1 && self.stride_h == 1 && self.stride_w == 1 && self.pad_h == 0 && self.pad_w == 0
    }
    /// Input row read by output row `oy` at kernel row `ki`, if inside the image.
    #[inline]
    fn in_y(&self, oy: usize, ki: usize) -> Option<usize> {
        (oy * self.stride_h + ki)
            .checked_sub(self.pad_h)
            .filter(|&y| y < self.h)
    }
    /// The output columns `lo..hi` whose input column `ox * sw + kj - pw` lies inside the
    /// image (the others read padding).
    #[inline]
    fn valid_x(&self, kj: usize) -> (usize, usize) {
        let lo = self.pad_w.saturating_sub(kj).div_ceil(self.stride_w).min(self.ow);
        let hi = if self.w + self.pad_w > kj {
            ((self.w - 1 + self.pad_w - kj) / self.stride_w + 1).min(self.ow)
        } else {
            0
        };
        (lo, hi.max(lo))
    }
}

/// Column matrix `[c*r*s, oh*ow]` of one image `[c, h, w]`: entry (row (ci, ki, kj), col
/// (oy, ox)) is x[ci, oy*sh + ki - ph, ox*sw + kj - pw], 0 in the padding.
fn im2col<T: Float>(x: &[T], p: &Conv2dParams, col: &mut [T]) {
    let np = p.p();
    for ci in 0..p.c {
        for ki in 0..p.r {
            for kj in 0..p.s {
                let row = &mut col[((ci * p.r + ki) * p.s + kj) * np..][..np];
                for oy in 0..p.oh {
                    let dst = &mut row[oy * p.ow..(oy + 1) * p.ow];
                    match p.in_y(oy, ki) {
                        None => dst.iter_mut().for_each(|v| *v = T::ZERO),
                        Some(iy) => {
                            let src = &x[(ci * p.h + iy) * p.w..][..p.w];
                            let (lo, hi) = p.valid_x(kj);
                            dst[..lo].iter_mut().for_each(|v| *v = T::ZERO);
                            dst[hi..].iter_mut().for_each(|v| *v = T::ZERO);
                            if lo == hi {
                                continue;
                            }
                            let first = lo * p.stride_w + kj - p.pad_w;
                            if p.stride_w == 1 {
                                dst[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
                            } else {
                                for (d, s) in dst[lo..hi].iter_mut().zip(src[first..].iter().step_by(p.stride_w)) {
                                    *d = *s;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each column-matrix entry back into the image position it
/// was read from (padding entries are dropped). `dx` is one image `[c, h, w]`, accumulated.
fn col2im<T: Float>(col: &[T], p: &Conv2dParams, dx: &mut [T]) {
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

/// Y[n] = W · col(X[n]) (+ bias), for every image.
pub(crate) fn forward<T: Float>(x: &[T], wt: &[T], bias: Option<&[T]>, p: &Conv2dParams) -> Vec<T> {
    let (k, np) = (p.k(), p.p());
    let (img_in, img_out) = (p.c * p.h * p.w, p.o * np);
    let mut out = vec![T::ZERO; p.n * img_out];
    let body = |(ci, out_chunk): (usize, &mut [T])| {
        let mut col = if p.is_pointwise() {
            Vec::new()
        } else {
            vec![T::ZERO; k * np]
        };
        for (j, y) in out_chunk.chunks_mut(img_out).enumerate() {
            let xi = &x[(ci * CHUNK + j) * img_in..][..img_in];
            let cm: &[T] = if p.is_pointwise() {
                xi
            } else {
                im2col(xi, p, &mut col);
                &col
            };
            gemm(p.o, np, k, MatRef::new(wt, k), MatRef::new(cm, np), y, false);
            if let Some(b) = bias {
                for (row, &bv) in y.chunks_mut(np).zip(b) {
                    row.iter_mut().for_each(|v| *v += bv);
                }
            }
        }
    };
    if out.is_empty() {
        return out;
    }
    if p.n > 1 && p.n * img_out * k >= crate::backend::cpu::PAR_THRESHOLD {
        out.par_chunks_mut(CHUNK * img_out).enumerate().for_each(body);
    } else {
        out.chunks_mut(CHUNK * img_out).enumerate().for_each(body);
    }
    out
}

/// Gradients of conv2d: (dX if `need_dx`, dW if `need_dw`). dB is a plain sum (see mod.rs).
pub(crate) fn backward<T: Float>(
    x: &[T],
    wt: &[T],
    dy: &[T],
    p: &Conv2dParams,
    need_dx: bool,
    need_dw: bool,
) -> (Option<Vec<T>>, Option<Vec<T>>) {
    let (k, np) = (p.k(), p.p());
    let (img_in, img_out) = (p.c * p.h * p.w, p.o * np);
    let mut dx = if need_dx {
        vec![T::ZERO; p.n * img_in]
    } else {
        Vec::new()
    };
    let chunks = p.n.div_ceil(CHUNK);
    // One chunk: its images in order; returns the chunk's partial dW.
    let body = |ci: usize, dx_chunk: Option<&mut [T]>| -> Vec<T> {
        let mut dw = if need_dw { vec![T::ZERO; p.o * k] } else { Vec::new() };
        let mut col = vec![T::ZERO; if p.is_pointwise() { 0 } else { k * np }];
        let mut dcol = vec![T::ZERO; if need_dx { k * np } else { 0 }];
        let first = ci * CHUNK;
        let last = (first + CHUNK).min(p.n);
        let mut dx_chunk = dx_chunk;
        for img in first..last {
            let xi = &x[img * img_in..][..img_in];
            let dyi = &dy[img * img_out..][..img_out];
            if need_dw {
                let cm: &[T] = if p.is_pointwise() {
                    xi
                } else {
                    im2col(xi, p, &mut col);
                    &col
                };
                // dW += dY[n] (o x np) · col(X[n])ᵀ (np x k)
                gemm(p.o, k, np, MatRef::new(dyi, np), MatRef::new(cm, np).t(), &mut dw, true);
            }
            if let Some(dxc) = dx_chunk.as_deref_mut() {
                let dxi = &mut dxc[(img - first) * img_in..][..img_in];
                if p.is_pointwise() {
                    // dX[n] = Wᵀ (k x o) · dY[n] (o x np), straight into the image.
                    gemm(k, np, p.o, MatRef::new(wt, k).t(), MatRef::new(dyi, np), dxi, false);
                } else {
                    gemm(
                        k,
                        np,
                        p.o,
                        MatRef::new(wt, k).t(),
                        MatRef::new(dyi, np),
                        &mut dcol,
                        false,
                    );
                    col2im(&dcol, p, dxi);
                }
            }
        }
        dw
    };
    let parallel = p.n > 1 && p.n * img_out * k >= crate::backend::cpu::PAR_THRESHOLD;
    let partials: Vec<Vec<T>> = match (need_dx, parallel) {
        (true, true) => dx
            .par_chunks_mut(CHUNK * img_in)
            .enumerate()
            .map(|(ci, d)| body(ci, Some(d)))
            .collect(),
        (true, false) => dx
            .chunks_mut(CHUNK * img_in)
            .enumerate()
            .map(|(ci, d)| body(ci, Some(d)))
            .collect(),
        (false, true) => (0..chunks).into_par_iter().map(|ci| body(ci, None)).collect(),
        (false, false) => (0..chunks).map(|ci| body(ci, None)).collect(),
    };
    let dw = need_dw.then(|| {
        let mut total = vec![T::ZERO; p.o * k];
        // Fixed order: chunk 0, 1, 2, ...
        for part in &partials {
            total.iter_mut().zip(part).for_each(|(t, v)| *t += *v);
        }
        total
    });
    (need_dx.then_some(dx), dw)
}
