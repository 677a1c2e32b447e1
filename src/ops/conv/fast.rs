//! The fast CPU kernels of conv2d: the three products of `reference.rs` (forward, weight
//! gradient, input gradient) without building the column matrix.
//!
//! The forward pass and the weight gradient read `col(X)` in place from the zero-padded image
//! on a *wide grid* ([`Shifted`]), with the packed SIMD GEMM of `backend/cpu/gemm/`; so does
//! the input gradient of a stride-1 conv (a conv of dY with the flipped kernel). A 1x1
//! stride-1 conv multiplies by the image itself. Only a strided conv's input gradient builds a
//! column matrix (`Wᵀ · dY`) and scatters it with the reference `col2im`.
//!
//! Convs with more channels take the channels-last kernels of `channels_last.rs` instead,
//! chunk by chunk: the forward and a strided 3x3 conv's input gradient from 16 input and 32
//! output channels, the weight gradient and stride-1 input gradient from 32 and 64. There the
//! wide grid's products are too short (49 positions per image at 7x7). A 3x3 stride-1 conv
//! runs its forward (from 32 input channels) and its input gradient (itself a 3x3 stride-1
//! conv, of dY with the flipped kernel: from 32 output channels) on Winograd F(2x2, 3x3) in
//! `winograd.rs` (16 multiplies per 2 x 2 outputs instead of 36); its weight gradient stays
//! here or in `channels_last.rs`.
//!
//! Images are processed in fixed chunks ([`Conv2dParams::chunk`] images, fixed by the
//! geometry). Chunks run in parallel; inside a chunk, images run in order. The strided input
//! gradient's column matrix lives in a reused per-thread scratch buffer (one image's, never the whole batch's). The weight gradient is summed
//! per chunk and the chunk partials are added in chunk order, so the bits do not depend on the
//! number of threads.

use super::reference::{Conv2dParams, col2im};
use super::{channels_last, winograd};
use crate::backend::cpu::gemm::{MatRef, Operand, gemm};
use crate::backend::cpu::{Scratch, with_scratch};
use crate::dtype::Float;
use rayon::prelude::*;

/// Output positions a work chunk should hold at least (see [`Conv2dParams::chunk`]).
const CHUNK_POSITIONS: usize = 768;
/// Images per work chunk, at least and at most.
const CHUNK_IMAGES: (usize, usize) = (4, 16);

/// The column matrix of a convolution, read in place from a zero-padded image.
///
/// Stride 1 first. Compute the output on a *wide grid*: output row oy, columns 0..Wp (the
/// padded width) instead of 0..OW, position q = oy * Wp + ox. Then column-matrix row
/// (ci, ki, kj) at position q is Xp[ci, oy + ki, ox + kj], which is the padded plane of channel
/// ci read from offset ki * Wp + kj: each row of the column matrix is a contiguous slice of
/// the padded image, so nothing is gathered. The Wp - OW extra columns per output row are
/// computed and thrown away (7% of the work at 28x28 with a 3x3 kernel); in the weight
/// gradient they are multiplied by zeros.
///
/// Stride (sh, sw): split the padded image into sh x sw *phase planes*,
/// P[a, b][y, x] = Xp[y sh + a, x sw + b], each Hq x Wq = ceil(Hp / sh) x ceil(Wp / sw). Then
/// Xp[oy sh + ki, ox sw + kj] = P[ki % sh, kj % sw][oy + ki / sh, ox + kj / sw]: again a plane
/// read from a fixed offset, so the same wide grid (width Wq) works for every stride. Only the
/// phases a < r, b < s are read (a 1x1 stride-2 conv needs one plane of four).
struct Shifted<'a, T> {
    xp: &'a [T],
    /// Where each row of the column matrix starts in `xp`: [`ShiftGeom::row_starts`],
    /// computed once per convolution (not per image: it costs a few divisions per row).
    starts: &'a [usize],
}

/// Sizes of a convolution on the wide grid: input `[c, h, w]` padded by (ph, pw), kernel
/// r x s, stride (sh, sw), `o` output channels.
#[derive(Clone, Copy)]
pub(super) struct ShiftGeom {
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) ph: usize,
    pub(super) pw: usize,
    pub(super) r: usize,
    pub(super) s: usize,
    pub(super) sh: usize,
    pub(super) sw: usize,
    pub(super) o: usize,
}

impl ShiftGeom {
    pub(super) fn hp(&self) -> usize {
        self.h + 2 * self.ph
    }
    pub(super) fn wp(&self) -> usize {
        self.w + 2 * self.pw
    }
    /// Rows of a phase plane.
    fn hq(&self) -> usize {
        self.hp().div_ceil(self.sh)
    }
    /// Columns of a phase plane: the wide grid's row length.
    fn wq(&self) -> usize {
        self.wp().div_ceil(self.sw)
    }
    pub(super) fn oh(&self) -> usize {
        (self.hp() - self.r) / self.sh + 1
    }
    pub(super) fn ow(&self) -> usize {
        (self.wp() - self.s) / self.sw + 1
    }
    /// Wide-grid positions: OH rows of Wq.
    fn nq(&self) -> usize {
        self.oh() * self.wq()
    }
    fn k(&self) -> usize {
        self.c * self.r * self.s
    }
    /// Length of the phase-plane buffer: the planes plus s zeros that the last wide columns of
    /// the last plane read past its end.
    fn padded_len(&self) -> usize {
        let (pa, pb) = self.phases();
        self.c * pa * pb * self.hq() * self.wq() + self.s
    }
    /// Writes the phase planes of the zero-padded image of `x` (`[c, h, w]`) into `xp`.
    fn pad<T: Float>(&self, x: &[T], xp: &mut [T]) {
        let (hq, wq) = (self.hq(), self.wq());
        let (pa, pb) = self.phases();
        let body = self.c * pa * pb * hq * wq;
        xp[body..].fill(T::ZERO);
        if self.sh == 1 && self.sw == 1 {
            // One plane per channel: zero only the border, copy the rows.
            let (ph, pw, h, w) = (self.ph, self.pw, self.h, self.w);
            for (ci, plane) in xp[..body].chunks_exact_mut(hq * wq).enumerate() {
                plane[..ph * wq].fill(T::ZERO);
                plane[(ph + h) * wq..].fill(T::ZERO);
                for y in 0..h {
                    let row = &mut plane[(y + ph) * wq..][..wq];
                    row[..pw].fill(T::ZERO);
                    row[pw + w..].fill(T::ZERO);
                    row[pw..pw + w].copy_from_slice(&x[(ci * h + y) * w..][..w]);
                }
            }
            return;
        }
        let (pa, pb) = self.phases();
        for (pi, plane) in xp[..body].chunks_exact_mut(hq * wq).enumerate() {
            let (ci, a, b) = (pi / (pa * pb), pi / pb % pa, pi % pb);
            // Plane columns xq with xq * sw + b - pw inside the image: [lo, hi).
            let lo = self.pw.saturating_sub(b).div_ceil(self.sw).min(wq);
            let hi = (self.pw + self.w).saturating_sub(b).div_ceil(self.sw).clamp(lo, wq);
            for (y, row) in plane.chunks_exact_mut(wq).enumerate() {
                // Padded row y * sh + a is image row y * sh + a - ph, if inside.
                let Some(iy) = (y * self.sh + a).checked_sub(self.ph).filter(|&iy| iy < self.h) else {
                    row.fill(T::ZERO);
                    continue;
                };
                row[..lo].fill(T::ZERO);
                row[hi..].fill(T::ZERO);
                if lo < hi {
                    let src = &x[(ci * self.h + iy) * self.w + lo * self.sw + b - self.pw..];
                    for (v, &xv) in row[lo..hi].iter_mut().zip(src.iter().step_by(self.sw)) {
                        *v = xv;
                    }
                }
            }
        }
    }

    /// The two per-image scratch buffers: the padded phase planes of `x` (filled) and the
    /// wide-grid matrix `[o, nq]` (contents unspecified).
    fn buffers<T: Float>(&self, x: &[T]) -> (Scratch<T>, Scratch<T>) {
        let mut xp = Scratch::<T>::new(self.padded_len());
        self.pad(x, xp.as_mut());
        (xp, Scratch::new(self.o * self.nq()))
    }

    /// Phase planes per channel along each axis: only phases a < r (b < s) are ever read.
    fn phases(&self) -> (usize, usize) {
        (self.sh.min(self.r), self.sw.min(self.s))
    }
}

impl ShiftGeom {
    /// Where row (ci, ki, kj) of the column matrix starts in the phase-plane buffer: plane
    /// (ci, ki % sh, kj % sw), row ki / sh, column kj / sw; for every row r < c * r * s.
    fn row_starts(&self) -> Vec<usize> {
        let (pa, pb) = self.phases();
        (0..self.k())
            .map(|r| {
                let (ci, ki, kj) = (r / (self.r * self.s), r / self.s % self.r, r % self.s);
                let plane = (ci * pa + ki % self.sh) * pb + kj % self.sw;
                plane * self.hq() * self.wq() + (ki / self.sh) * self.wq() + kj / self.sw
            })
            .collect()
    }
}

impl<T: Float> Operand<T> for Shifted<'_, T> {
    fn trans(&self) -> bool {
        false
    }
    fn row<'s>(&'s self, r: usize, c0: usize, len: usize, _buf: &'s mut [T]) -> &'s [T] {
        &self.xp[self.starts[r] + c0..][..len]
    }
    fn direct(&self) -> Option<&[T]> {
        Some(self.xp)
    }
    fn row_start(&self, r: usize) -> usize {
        self.starts[r]
    }
}

/// One image of a convolution: `y [o, oh, ow] = W [o, c*r*s] ⋆ x [c, h, w]`; `starts` is
/// `g.row_starts()`.
fn shift_forward<T: Float>(g: &ShiftGeom, starts: &[usize], x: &[T], wt: &[T], y: &mut [T]) {
    let (nq, wq, oh, ow) = (g.nq(), g.wq(), g.oh(), g.ow());
    let (mut xp, mut wide) = g.buffers(x);
    let wide = wide.as_mut();
    let b = Shifted {
        xp: xp.as_mut(),
        starts,
    };
    gemm(g.o, nq, g.k(), &MatRef::new(wt, g.k()), &b, wide, false);
    for (yo, wo) in y.chunks_exact_mut(oh * ow).zip(wide.chunks_exact(nq)) {
        for (yr, wr) in yo.chunks_exact_mut(ow).zip(wo.chunks_exact(wq)) {
            yr.copy_from_slice(&wr[..ow]);
        }
    }
}

/// One image's weight gradient of a convolution, transposed: `dwt [c*r*s, o] +=
/// col(X) · dYᵀ`, on the wide grid with zeros in dY's extra columns. In this orientation the
/// column matrix is the *left* operand, which the AVX-512 kernel reads in place from the padded
/// image (no packing of the large operand); only dY (o x nq) is packed. `starts` is
/// `g.row_starts()`.
fn shift_weight_grad_t<T: Float>(g: &ShiftGeom, starts: &[usize], x: &[T], dy: &[T], dwt: &mut [T]) {
    let (nq, wq, oh, ow) = (g.nq(), g.wq(), g.oh(), g.ow());
    let (mut xp, mut wide) = g.buffers(x);
    let wide = wide.as_mut();
    for (wo, yo) in wide.chunks_exact_mut(nq).zip(dy.chunks_exact(oh * ow)) {
        for (wr, yr) in wo.chunks_exact_mut(wq).zip(yo.chunks_exact(ow)) {
            wr[..ow].copy_from_slice(yr);
            wr[ow..].fill(T::ZERO);
        }
    }
    let a = Shifted {
        xp: xp.as_mut(),
        starts,
    };
    gemm(g.k(), g.o, nq, &a, &MatRef::new(wide, nq).t(), dwt, true);
}

/// The weight of the input-gradient convolution: `wf[ci, o, ki, kj] = w[o, ci, r-1-ki, s-1-kj]`.
/// With stride 1, dX = dY ⋆ wf with padding (r - 1 - ph, s - 1 - pw): the adjoint of a
/// correlation is the correlation with the flipped, channel-transposed kernel.
fn flipped_weight<T: Float>(wt: &[T], p: &Conv2dParams) -> Vec<T> {
    let (rs, crs) = (p.r * p.s, p.c * p.r * p.s);
    let mut wf = vec![T::ZERO; wt.len()];
    for o in 0..p.o {
        for ci in 0..p.c {
            for ki in 0..p.r {
                for kj in 0..p.s {
                    wf[(ci * p.o + o) * rs + ki * p.s + kj] =
                        wt[o * crs + ci * rs + (p.r - 1 - ki) * p.s + (p.s - 1 - kj)];
                }
            }
        }
    }
    wf
}

impl Conv2dParams {
    /// `Err` (never an abort) when the output or the per-image scratch buffers of this conv
    /// overflow `usize` or cannot be allocated: a huge padding makes a huge padded image.
    pub(crate) fn check_memory<T: Float>(&self) -> crate::Result<()> {
        let too_big = || crate::Error::OutOfMemory {
            msg: format!(
                "conv2d: input [{}, {}, {}, {}] with kernel {}x{} and padding ({}, {}) needs buffers larger than the address space",
                self.n, self.c, self.h, self.w, self.r, self.s, self.pad_h, self.pad_w
            ),
        };
        let mul = |a: usize, b: usize| a.checked_mul(b);
        let geoms = [Some(self.shift_geom()), self.shift_geom_dx()];
        let mut need = mul(mul(self.n, self.o).ok_or_else(too_big)?, self.oh * self.ow).ok_or_else(too_big)?;
        for g in geoms.into_iter().flatten() {
            let hp =
                g.h.checked_add(g.ph.checked_mul(2).ok_or_else(too_big)?)
                    .ok_or_else(too_big)?;
            let wp =
                g.w.checked_add(g.pw.checked_mul(2).ok_or_else(too_big)?)
                    .ok_or_else(too_big)?;
            let (pa, pb) = g.phases();
            let planes = mul(mul(g.c, pa * pb).ok_or_else(too_big)?, hp.div_ceil(g.sh)).ok_or_else(too_big)?;
            let padded = mul(planes, wp.div_ceil(g.sw)).ok_or_else(too_big)?;
            let wide = mul(mul(g.o, g.oh()).ok_or_else(too_big)?, wp.div_ceil(g.sw)).ok_or_else(too_big)?;
            need = need.max(padded.checked_add(g.s).ok_or_else(too_big)?).max(wide);
        }
        need = need.max(mul(self.k(), self.p()).ok_or_else(too_big)?);
        // Sizes a normal layer has are simply allocated when used; only a buffer beyond
        // 2^28 elements (1 GiB of f32) is probed with a fallible reservation first, so the
        // check costs no allocation on the hot path.
        if need < 1 << 28 {
            return Ok(());
        }
        let mut probe: Vec<T> = Vec::new();
        probe.try_reserve_exact(need).map_err(|_| crate::Error::OutOfMemory {
            msg: format!("conv2d: cannot allocate a buffer of {need} elements of {}", T::DTYPE),
        })
    }

    /// Images per work chunk: enough for [`CHUNK_POSITIONS`] output positions, within
    /// [`CHUNK_IMAGES`] (4 images at 14x14 outputs and above, 16 at 7x7). The channels-last
    /// products run over the chunk's positions, and each chunk packs the weight once: at 7x7
    /// (64->64) chunks of 16 images instead of 4 took the backward from 2.7 to 1.9 ms and the
    /// forward from 0.93 to 0.86; at 14x14 and 28x28, 8 or 16 images were no faster than 4. A
    /// function of the geometry alone, so the bits do not depend on the thread count.
    pub(super) fn chunk(&self) -> usize {
        CHUNK_POSITIONS
            .div_ceil(self.p().max(1))
            .clamp(CHUNK_IMAGES.0, CHUNK_IMAGES.1)
    }
    /// Convs whose forward takes the channels-last kernels of `channels_last.rs` instead of the
    /// wide grid: a kernel larger than 1x1, at least 16 input and 32 output channels (ResNet-20's
    /// stages 2 and 3). Measured with `cargo bench --bench conv` (docs/performance.md), forward
    /// ms wide grid -> channels-last: 16->32 s2 at 28x28 0.95 -> 0.71, 32->32 at 14x14 0.99 ->
    /// 0.97, 64->64 at 7x7 1.10 -> 0.90; but 16->16 at 28x28 1.07 -> 1.40, the 1->16 stem 0.55
    /// -> 0.78 and the 1x1 stride-2 32->64 shortcut 0.20 -> 0.27: with 16 output channels the
    /// product is one vector wide, and a 1x1 kernel's wide grid wastes nothing.
    fn channels_last_forward(&self) -> bool {
        self.is_shift() && self.r * self.s > 1 && self.c >= 16 && self.o >= 32
    }
    /// Convs whose weight gradient and stride-1 input gradient take the channels-last kernels:
    /// a kernel larger than 1x1, at least 32 input and 64 output channels (ResNet-20's stage 3).
    /// Measured, backward ms: 64->64 at 7x7 3.2 -> 2.8, 32->64 s2 at 14x14 2.45 -> 2.28; but
    /// 32->32 at 14x14 2.08 -> 2.2 and 16->16 at 28x28 2.2 -> 3.3, where the weight gradient's
    /// products are 16-32 rows and 48-96 columns and turning dY and X around costs more than the
    /// wide grid's waste.
    fn channels_last_backward(&self) -> bool {
        self.is_shift() && self.r * self.s > 1 && self.c >= 32 && self.o >= 64
    }
    /// Every conv but the pointwise one (whose image already is its column matrix) takes the
    /// wide-grid path.
    fn is_shift(&self) -> bool {
        !self.is_pointwise()
    }
    /// The forward conv on the wide grid.
    fn shift_geom(&self) -> ShiftGeom {
        ShiftGeom {
            c: self.c,
            h: self.h,
            w: self.w,
            ph: self.pad_h,
            pw: self.pad_w,
            r: self.r,
            s: self.s,
            sh: self.stride_h,
            sw: self.stride_w,
            o: self.o,
        }
    }
    /// The input-gradient conv (dY ⋆ flipped W) on the wide grid: stride 1, and its padding
    /// (r - 1 - ph) not negative. (Strided convs go through col2im.)
    fn shift_geom_dx(&self) -> Option<ShiftGeom> {
        let stride1 = self.stride_h == 1 && self.stride_w == 1;
        (stride1 && self.is_shift() && self.pad_h < self.r && self.pad_w < self.s).then(|| ShiftGeom {
            c: self.o,
            h: self.oh,
            w: self.ow,
            ph: self.r - 1 - self.pad_h,
            pw: self.s - 1 - self.pad_w,
            r: self.r,
            s: self.s,
            sh: 1,
            sw: 1,
            o: self.c,
        })
    }
}

/// Y[n] = W · col(X[n]) (+ bias), for every image.
pub(super) fn forward<T: Float>(x: &[T], wt: &[T], bias: Option<&[T]>, p: &Conv2dParams) -> Vec<T> {
    let (k, np) = (p.k(), p.p());
    let (img_in, img_out) = (p.c * p.h * p.w, p.o * np);
    let mut out = crate::backend::cpu::pool::zeroed(p.n * img_out);
    let geom = p.shift_geom();
    let wino = p.is_shift() && winograd::applies(&geom);
    let cl = p.channels_last_forward() && !wino;
    let u = if wino {
        winograd::weight_transform(wt, &geom)
    } else {
        Vec::new()
    };
    let starts = if p.is_shift() && !cl && !wino {
        geom.row_starts()
    } else {
        Vec::new()
    };
    let chunk = p.chunk();
    let w_rsco = if cl {
        channels_last::weight_rsco(wt, &geom)
    } else {
        Vec::new()
    };
    let body = |(ci, out_chunk): (usize, &mut [T])| {
        let imgs = out_chunk.len() / img_out;
        let xc = &x[ci * chunk * img_in..][..imgs * img_in];
        if wino {
            winograd::forward_chunk(&geom, xc, imgs, &u, out_chunk);
        } else if cl {
            channels_last::forward_chunk(&geom, xc, imgs, &w_rsco, out_chunk);
        } else {
            for (j, y) in out_chunk.chunks_mut(img_out).enumerate() {
                let xi = &x[(ci * chunk + j) * img_in..][..img_in];
                let w = MatRef::new(wt, k);
                if p.is_pointwise() {
                    gemm(p.o, np, k, &w, &MatRef::new(xi, np), y, false);
                } else {
                    shift_forward(&geom, &starts, xi, wt, y);
                }
            }
        }
        if let Some(b) = bias {
            for y in out_chunk.chunks_mut(img_out) {
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
        out.par_chunks_mut(chunk * img_out).enumerate().for_each(body);
    } else {
        out.chunks_mut(chunk * img_out).enumerate().for_each(body);
    }
    out
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
    let mut dx = if need_dx {
        crate::backend::cpu::pool::zeroed(p.n * img_in)
    } else {
        Vec::new()
    };
    let chunk = p.chunk();
    let chunks = p.n.div_ceil(chunk);
    let cl = p.channels_last_backward();
    let dx_geom = if need_dx { p.shift_geom_dx() } else { None };
    let wflip = dx_geom.map(|_| flipped_weight(wt, p));
    // A stride-1 3x3 conv's input gradient is a 3x3 stride-1 conv: Winograd's, like the forward.
    let wino_dx = dx_geom.as_ref().is_some_and(winograd::applies);
    let wflip_u = match (wino_dx, dx_geom.as_ref(), wflip.as_deref()) {
        (true, Some(g), Some(wf)) => winograd::weight_transform(wf, g),
        _ => Vec::new(),
    };
    let wflip_rsco = match (cl && !wino_dx, dx_geom.as_ref(), wflip.as_deref()) {
        (true, Some(g), Some(wf)) => channels_last::weight_rsco(wf, g),
        _ => Vec::new(),
    };
    let dx_starts = dx_geom
        .filter(|_| !cl && !wino_dx)
        .map(|g| g.row_starts())
        .unwrap_or_default();
    let geom = p.shift_geom();
    // A strided conv's input gradient on the channels-last kernels (dY · W, then col2im), for
    // the convs whose forward runs there: 16->32 s2 at 28x28 backward 2.55 -> 1.95 ms,
    // 32->64 s2 at 14x14 2.28 -> 1.69; the 1x1 stride-2 shortcuts were slower (0.61 -> 0.80).
    let cl_strided_dx = p.channels_last_forward() && need_dx && dx_geom.is_none();
    let w_orsc = if cl_strided_dx {
        channels_last::weight_orsc(wt, &geom)
    } else {
        Vec::new()
    };
    let starts = if need_dw && p.is_shift() && !cl {
        geom.row_starts()
    } else {
        Vec::new()
    };
    // One chunk: its images in order; returns the chunk's partial dW.
    let body = |ci: usize, dx_chunk: Option<&mut [T]>| -> Vec<T> {
        let first = ci * chunk;
        let last = (first + chunk).min(p.n);
        let imgs = last - first;
        let mut dx_chunk = dx_chunk;
        // The whole chunk at once: dW channels-last; dX on Winograd or channels-last (a stride-1
        // conv), or channels-last (a strided one whose forward is channels-last).
        let dyc = &dy[first * img_out..][..imgs * img_out];
        let cl_dw = (cl && need_dw)
            .then(|| channels_last::weight_grad_chunk(&geom, &x[first * img_in..][..imgs * img_in], dyc, imgs));
        let mut chunk_dx = false;
        if let Some(dxc) = dx_chunk.as_deref_mut() {
            if let (true, Some(g)) = (wino_dx, dx_geom.as_ref()) {
                winograd::forward_chunk(g, dyc, imgs, &wflip_u, dxc);
                chunk_dx = true;
            } else if let (true, Some(g)) = (cl, dx_geom.as_ref()) {
                channels_last::forward_chunk(g, dyc, imgs, &wflip_rsco, dxc);
                chunk_dx = true;
            } else if cl_strided_dx {
                channels_last::input_grad_chunk(&geom, dyc, imgs, &w_orsc, dxc);
                chunk_dx = true;
            }
        }
        // What is left for the image-by-image loop below.
        let (img_dw, img_dx) = (need_dw && !cl, need_dx && !chunk_dx);
        if !img_dw && !img_dx {
            return cl_dw.unwrap_or_default();
        }
        let mut dw = cl_dw.unwrap_or_else(|| if img_dw { vec![T::ZERO; p.o * k] } else { Vec::new() });
        // The wide-grid path accumulates the transpose [k, o]; turned around at the chunk's end.
        let mut dwt = if img_dw && p.is_shift() {
            vec![T::ZERO; k * p.o]
        } else {
            Vec::new()
        };
        for img in first..last {
            let xi = &x[img * img_in..][..img_in];
            let dyi = MatRef::new(&dy[img * img_out..][..img_out], np);
            if img_dw {
                // dW += dY[n] (o x np) · col(X[n])ᵀ (np x k)
                if p.is_pointwise() {
                    gemm(p.o, k, np, &dyi, &MatRef::new(xi, np).t(), &mut dw, true);
                } else {
                    shift_weight_grad_t(&geom, &starts, xi, dyi.data, &mut dwt);
                }
            }
            if let Some(dxc) = dx_chunk.as_deref_mut().filter(|_| img_dx) {
                let dxi = &mut dxc[(img - first) * img_in..][..img_in];
                let wt_t = MatRef::new(wt, k).t();
                if p.is_pointwise() {
                    // dX[n] = Wᵀ (k x o) · dY[n] (o x np), straight into the image.
                    gemm(k, np, p.o, &wt_t, &dyi, dxi, false);
                } else if let (Some(g), Some(wf)) = (dx_geom.as_ref(), wflip.as_deref()) {
                    shift_forward(g, &dx_starts, dyi.data, wf, dxi);
                } else {
                    with_scratch::<T, _>(k * np, |dcol| {
                        gemm(k, np, p.o, &wt_t, &dyi, dcol, false);
                        col2im(dcol, p, dxi);
                    });
                }
            }
        }
        for (r, row) in dwt.chunks_exact(p.o).enumerate() {
            for (o, &v) in row.iter().enumerate() {
                dw[o * k + r] = v;
            }
        }
        dw
    };
    let parallel = p.n > 1 && p.n * img_out * k >= crate::backend::cpu::PAR_THRESHOLD;
    let partials: Vec<Vec<T>> = match (need_dx, parallel) {
        (true, true) => dx
            .par_chunks_mut(chunk * img_in)
            .enumerate()
            .map(|(ci, d)| body(ci, Some(d)))
            .collect(),
        (true, false) => dx
            .chunks_mut(chunk * img_in)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::reference::tests::{naive, params};

    /// Every path (wide grid, im2col, pointwise) at sizes that fill whole register tiles and
    /// leave partial ones, in f32 (the AVX-512 intrinsics kernels where available) against
    /// direct loops in f64. (tests/semantics/kernels.rs compares them with the reference
    /// kernels over random geometries.)
    #[test]
    fn f32_paths_match_direct_loops_at_network_sizes() {
        let mut rng = crate::Rng::new(7);
        for p in [
            params(5, 16, 12, 13, 16, 3, 1, 1),
            params(2, 5, 9, 11, 33, 3, 1, 1),
            params(3, 7, 10, 9, 40, 3, 2, 1),
            params(3, 24, 6, 6, 20, 1, 1, 0),
            params(2, 9, 8, 8, 12, 1, 2, 0),
            params(2, 3, 7, 30, 9, 5, 1, 2),
            // Channels-last: a chunk of 5 images, stride 2, n = 70 (not whole 64-wide panels),
            // a 5x5 kernel, n = 128 (the column matrix packed through `Cols::row`), no padding.
            params(5, 32, 7, 7, 64, 3, 1, 1),
            params(3, 32, 9, 8, 64, 3, 2, 1),
            params(2, 40, 6, 7, 70, 3, 1, 1),
            params(2, 32, 8, 9, 64, 5, 1, 2),
            params(2, 33, 6, 6, 128, 3, 1, 0),
            // Two chunks of channels-last work (16 images, then 2).
            params(18, 32, 7, 7, 64, 3, 1, 1),
            // Winograd forward and input gradient (32 output channels: channels-last weight
            // gradient below 64, the wide grid's here), an odd size without padding.
            params(3, 32, 14, 14, 32, 3, 1, 1),
            params(2, 48, 9, 7, 16, 3, 1, 0),
            // Channels-last forward and strided input gradient, wide-grid weight gradient.
            params(3, 16, 10, 9, 32, 3, 2, 1),
            params(2, 16, 11, 9, 40, 5, 2, 2),
        ] {
            let x: Vec<f64> = (0..p.n * p.c * p.h * p.w).map(|_| rng.normal()).collect();
            let w: Vec<f64> = (0..p.o * p.c * p.r * p.s).map(|_| rng.normal()).collect();
            let g: Vec<f64> = (0..p.n * p.o * p.oh * p.ow).map(|_| rng.normal()).collect();
            let (y0, dx0, dw0) = naive(&x, &w, &g, &p);
            let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let (xf, wf, gf) = (f(&x), f(&w), f(&g));
            let y = forward(&xf, &wf, None, &p);
            let (dx, dw) = backward(&xf, &wf, &gf, &p, true, true);
            for (name, got, want) in [("y", y, y0), ("dx", dx.unwrap(), dx0), ("dw", dw.unwrap(), dw0)] {
                assert_eq!(got.len(), want.len());
                let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!((*a as f64 - b).abs() <= 1e-4 * scale, "{name}[{i}] {a} vs {b} in {p:?}");
                }
            }
        }
    }
}
