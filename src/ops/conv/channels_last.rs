//! Channels-last kernels for the fast conv2d path: one chunk of images at a time, turned into
//! channels-last (NHWC) order inside a per-thread scratch buffer, multiplied there, and turned
//! back. The tensors outside stay NCHW.
//!
//! Why: in NCHW the output positions of one image are the long dimension of every product, and
//! at 7x7 there are only 49 of them. The weight gradient's shared dimension is then 49 (63 on
//! the wide grid of `fast.rs`): each tile of C is loaded and stored for a few dozen FMAs. In
//! channels-last order the *positions of the whole chunk* form one dimension, and the receptive
//! field of a position is contiguous one kernel row at a time: pixel (y, x) holds its C channels
//! side by side, so the kernel row `ki` of position (oy, ox) is the S·C values starting at
//! pixel (oy·sh + ki, ox·sw) of the padded image. With `Xc` the padded chunk `[imgs, Hp, Wp, C]`
//! and q = (image, oy, ox) a position of the chunk:
//! - forward: `Y[q, o] = Σ_(ki, kj, c) Xc[q][(ki, kj, c)] · W[(ki, kj, c), o]`, one GEMM
//!   (positions x O, shared dimension R·S·C) whose left operand the AVX-512 kernel reads in
//!   place: row q is R contiguous runs of `Xc`, and the GEMM takes the runs' offsets
//!   (`Operand::col_offsets`), so nothing is packed but the small weight. With 64 output
//!   channels the product is exactly one 6 x 4-vector panel wide (`gemm_wide_tile`);
//! - weight gradient: for each kernel row ki, `dWᵀ_ki [o, (kj, c)] = Σ_q dY[q, o] ·
//!   Xc[q][(ki, kj, c)]`, a GEMM (O x S·C) whose shared dimension is every position of the
//!   chunk (784 at 7x7 with 16 images, 784 at 14x14 with 4), with the run of kernel row ki read in
//!   place as the right operand and dYᵀ packed;
//! - input gradient of a stride-1 conv: the forward of dY (padded by R - 1 - ph) with the flipped
//!   kernel, as in `fast.rs`;
//! - input gradient of a strided conv: `dcol[q, (ki, kj, c)] = Σ_o dY[q, o] · W[o, (ki, kj, c)]`,
//!   one GEMM (positions x R·S·C, depth O), whose rows are added back where the forward read
//!   them, one contiguous run of S·C values per kernel row (col2im in channels-last order).
//!
//! Used for the forward and the strided input gradient of convs with at least 16 input and 32
//! output channels, and for the rest of the backward of those with at least 32 and 64
//! (`Conv2dParams::channels_last_forward`, `channels_last_backward` in `fast.rs`, with the
//! measurements behind the thresholds).
//!
//! The chunks and the order of every sum are fixed by the geometry alone, so the bits do not
//! depend on the number of threads.

use super::fast::ShiftGeom;
use crate::backend::cpu::Scratch;
use crate::backend::cpu::gemm::{MatRef, Operand, gemm, gemm_wide_tile};
use crate::backend::cpu::transpose::transpose;
use crate::dtype::Float;

/// The column matrix of a chunk of channels-last images, read in place: row q (a position of
/// the chunk), column (ki, kj, c) for the kernel rows `ki0..ki0 + rows`. Its row q is `rows`
/// contiguous runs of S·C values, one per kernel row: the forward's left operand (all R kernel
/// rows) and the weight gradient's right operand (one kernel row).
struct Cols<'a, T> {
    xc: &'a [T],
    g: &'a ShiftGeom,
    /// Where each position's kernel row 0 starts in `xc` ([`position_bases`], computed once per
    /// chunk: it costs a few divisions per position).
    bases: &'a [usize],
    /// For each column (ki, kj, c), its offset from the position's base ([`column_offsets`]);
    /// only read when `rows > 1` (one kernel row is one contiguous run).
    offs: &'a [usize],
    /// First kernel row.
    ki0: usize,
    /// Kernel rows covered (each one run of S·C columns).
    rows: usize,
}

/// Where position q = (image, oy, ox) of a chunk of `imgs` images starts in the padded
/// channels-last chunk: pixel (oy·sh, ox·sw) of its image, for every q.
fn position_bases(g: &ShiftGeom, imgs: usize) -> Vec<usize> {
    let (oh, ow, hp, wp) = (g.oh(), g.ow(), g.hp(), g.wp());
    let mut v = Vec::with_capacity(imgs * oh * ow);
    for img in 0..imgs {
        for oy in 0..oh {
            v.extend((0..ow).map(|ox| ((img * hp + oy * g.sh) * wp + ox * g.sw) * g.c));
        }
    }
    v
}

/// For each column (ki, kj, c) of the column matrix: its offset from a position's base in the
/// padded channels-last chunk (increasing in the column).
fn column_offsets(g: &ShiftGeom) -> Vec<usize> {
    let (seg, row_len) = (g.s * g.c, g.wp() * g.c);
    (0..g.r * seg).map(|col| col / seg * row_len + col % seg).collect()
}

impl<T> Cols<'_, T> {
    /// Where position q's first segment starts in `xc`.
    #[inline]
    fn base(&self, q: usize) -> usize {
        self.bases[q] + self.ki0 * self.g.wp() * self.g.c
    }
}

impl<T: Float> Operand<T> for Cols<'_, T> {
    fn trans(&self) -> bool {
        false
    }
    fn row<'s>(&'s self, q: usize, c0: usize, len: usize, buf: &'s mut [T]) -> &'s [T] {
        let base = self.base(q);
        if self.rows == 1 || len == 0 {
            return &self.xc[base + c0..][..len];
        }
        let offs = &self.offs[c0..c0 + len];
        // The offsets increase, so the columns are one run exactly when they span len.
        if offs[len - 1] - offs[0] == len - 1 {
            return &self.xc[base + offs[0]..][..len];
        }
        // Crosses a kernel row: gather.
        for (v, &o) in buf[..len].iter_mut().zip(offs) {
            *v = self.xc[base + o];
        }
        &buf[..len]
    }
    fn direct(&self) -> Option<&[T]> {
        Some(self.xc)
    }
    fn row_start(&self, q: usize) -> usize {
        self.base(q)
    }
    fn col_offsets(&self) -> Option<&[usize]> {
        (self.rows > 1).then_some(self.offs)
    }
}

/// Writes `imgs` NCHW images `x` (`[imgs, c, h, w]`) into `dst` as zero-padded channels-last
/// images `[imgs, h + 2 ph, w + 2 pw, c]`.
fn to_padded_nhwc<T: Float>(x: &[T], imgs: usize, g: &ShiftGeom, dst: &mut [T]) {
    to_padded_nhwc_in(x, imgs, g, g.hp(), g.wp(), dst);
}

/// [`to_padded_nhwc`] into images of `hp x wp` pixels (at least the padded size): the image
/// starts at pixel (ph, pw), and everything else is zero.
pub(super) fn to_padded_nhwc_in<T: Float>(x: &[T], imgs: usize, g: &ShiftGeom, hp: usize, wp: usize, dst: &mut [T]) {
    let (c, h, w, ph, pw) = (g.c, g.h, g.w, g.ph, g.pw);
    for (dimg, ximg) in dst
        .chunks_exact_mut(hp * wp * c)
        .zip(x.chunks_exact(c * h * w))
        .take(imgs)
    {
        dimg[..ph * wp * c].fill(T::ZERO);
        dimg[(ph + h) * wp * c..].fill(T::ZERO);
        for y in 0..h {
            let row = &mut dimg[(y + ph) * wp * c..][..wp * c];
            row[..pw * c].fill(T::ZERO);
            row[(pw + w) * c..].fill(T::ZERO);
        }
        // Channel plane ci becomes column ci; pixel (y, x) becomes the row at padded (y, x).
        let pixel = |q: usize| ((q / w + ph) * wp + q % w + pw) * c;
        transpose(ximg, |ci| ci * h * w, c, h * w, dimg, pixel);
    }
}

/// Writes NCHW images `x` (`[imgs, c, np]`, np pixels each) as channels-last `[imgs, np, c]`.
fn to_nhwc<T: Float>(x: &[T], c: usize, np: usize, dst: &mut [T]) {
    for (dimg, ximg) in dst.chunks_exact_mut(np * c).zip(x.chunks_exact(c * np)) {
        transpose(ximg, |ci| ci * np, c, np, dimg, |q| q * c);
    }
}

/// The weight `[o, c, r, s]` as the channels-last GEMMs read it: `[r, s, c, o]` (row (ki, kj, c),
/// column o).
pub(super) fn weight_rsco<T: Float>(wt: &[T], g: &ShiftGeom) -> Vec<T> {
    let (o, c, r, s) = (g.o, g.c, g.r, g.s);
    let mut out = vec![T::ZERO; wt.len()];
    for oo in 0..o {
        for ci in 0..c {
            for ki in 0..r {
                for kj in 0..s {
                    out[((ki * s + kj) * c + ci) * o + oo] = wt[((oo * c + ci) * r + ki) * s + kj];
                }
            }
        }
    }
    out
}

/// The convolution of `imgs` NCHW images `x` by the weight `w_rsco` (from [`weight_rsco`]),
/// written NCHW into `y` (`[imgs, o, oh, ow]`).
pub(super) fn forward_chunk<T: Float>(g: &ShiftGeom, x: &[T], imgs: usize, w_rsco: &[T], y: &mut [T]) {
    let (o, np) = (g.o, g.oh() * g.ow());
    let positions = imgs * np;
    let mut xc = Scratch::<T>::new(imgs * g.hp() * g.wp() * g.c);
    to_padded_nhwc(x, imgs, g, xc.as_mut());
    let mut yc = Scratch::<T>::new(positions * o);
    let (xc, yc) = (&*xc.as_mut(), yc.as_mut());
    let bases = position_bases(g, imgs);
    let offs = column_offsets(g);
    let a = Cols {
        xc,
        g,
        bases: &bases,
        offs: &offs,
        ki0: 0,
        rows: g.r,
    };
    gemm_wide_tile(positions, o, g.r * g.s * g.c, &a, &MatRef::new(w_rsco, o), yc, false);
    // [imgs, np, o] -> [imgs, o, np]
    for (yimg, cimg) in y.chunks_exact_mut(o * np).zip(yc.chunks_exact(np * o)) {
        transpose(cimg, |q| q * o, np, o, yimg, |oo| oo * np);
    }
}

/// The weight gradient of `imgs` images, `[o, c, r, s]`: `x` the NCHW input chunk, `dy` its
/// NCHW output gradient.
pub(super) fn weight_grad_chunk<T: Float>(g: &ShiftGeom, x: &[T], dy: &[T], imgs: usize) -> Vec<T> {
    let (o, np, k) = (g.o, g.oh() * g.ow(), g.c * g.r * g.s);
    let positions = imgs * np;
    let mut xc = Scratch::<T>::new(imgs * g.hp() * g.wp() * g.c);
    to_padded_nhwc(x, imgs, g, xc.as_mut());
    let mut dyc = Scratch::<T>::new(positions * o);
    let dyc = dyc.as_mut();
    to_nhwc(dy, o, np, dyc);
    let bases = position_bases(g, imgs);
    let xc = &*xc.as_mut();
    let seg = g.s * g.c;
    let mut dw_t = Scratch::<T>::new(k * o);
    let dw_t = dw_t.as_mut();
    // dWᵀ_ki [o, (kj, c)] = dYᵀ (o x positions) · Xc_ki (positions x S·C), Xc_ki read in place.
    for (ki, part) in dw_t.chunks_exact_mut(o * seg).enumerate() {
        let b = Cols {
            xc,
            g,
            bases: &bases,
            offs: &[],
            ki0: ki,
            rows: 1,
        };
        gemm_wide_tile(o, seg, positions, &MatRef::new(dyc, o).t(), &b, part, false);
    }
    // [ki, o, (kj, c)] -> [o, c, ki, kj], written in order (no zero-fill first).
    let (c, r, s) = (g.c, g.r, g.s);
    let mut dw = Vec::with_capacity(o * k);
    for oo in 0..o {
        for ci in 0..c {
            for ki in 0..r {
                let row = &dw_t[(ki * o + oo) * seg + ci..];
                dw.extend((0..s).map(|kj| row[kj * c]));
            }
        }
    }
    dw
}

/// The weight `[o, c, r, s]` as [`input_grad_chunk`] reads it: `[o, r, s, c]`.
pub(super) fn weight_orsc<T: Float>(wt: &[T], g: &ShiftGeom) -> Vec<T> {
    let (c, r, s) = (g.c, g.r, g.s);
    let mut out = vec![T::ZERO; wt.len()];
    for (dst, src) in out.chunks_exact_mut(c * r * s).zip(wt.chunks_exact(c * r * s)) {
        for ci in 0..c {
            for ki in 0..r {
                for kj in 0..s {
                    dst[(ki * s + kj) * c + ci] = src[(ci * r + ki) * s + kj];
                }
            }
        }
    }
    out
}

/// The input gradient of `imgs` images for any stride, written NCHW into `dx` (`[imgs, c, h,
/// w]`): `dcol[q, (ki, kj, c)] = Σ_o dY[q, o] · W[o, (ki, kj, c)]` (one GEMM, positions x R·S·C,
/// depth O; `w_orsc` from [`weight_orsc`]), then each position's R runs of S·C values are added
/// into the padded channels-last gradient where the forward read them (col2im, one contiguous
/// run at a time, positions and kernel rows in order), and the padding is cropped away.
pub(super) fn input_grad_chunk<T: Float>(g: &ShiftGeom, dy: &[T], imgs: usize, w_orsc: &[T], dx: &mut [T]) {
    let (o, np, k) = (g.o, g.oh() * g.ow(), g.c * g.r * g.s);
    let positions = imgs * np;
    let mut dyc = Scratch::<T>::new(positions * o);
    let dyc = dyc.as_mut();
    to_nhwc(dy, o, np, dyc);
    let mut dcol = Scratch::<T>::new(positions * k);
    let dcol = dcol.as_mut();
    gemm(
        positions,
        k,
        o,
        &MatRef::new(dyc, o),
        &MatRef::new(w_orsc, k),
        dcol,
        false,
    );
    let (c, h, w, hp, wp) = (g.c, g.h, g.w, g.hp(), g.wp());
    let mut dxc = Scratch::<T>::new(imgs * hp * wp * c);
    let dxc = dxc.as_mut();
    dxc.fill(T::ZERO);
    let seg = g.s * c;
    for (&base, col) in position_bases(g, imgs).iter().zip(dcol.chunks_exact(k)) {
        for (ki, run) in col.chunks_exact(seg).enumerate() {
            let dst = &mut dxc[base + ki * wp * c..][..seg];
            dst.iter_mut().zip(run).for_each(|(d, &v)| *d += v);
        }
    }
    let pixel = |q: usize| ((q / w + g.ph) * wp + q % w + g.pw) * c;
    for (dimg, cimg) in dx.chunks_exact_mut(c * h * w).zip(dxc.chunks_exact(hp * wp * c)) {
        transpose(cimg, pixel, h * w, c, dimg, |ci| ci * h * w);
    }
}
