//! Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016): every 2x2 block of outputs from a 4x4 block of
//! input with 16 multiplications per channel pair instead of 36.
//!
//! In one dimension, two outputs of a 3-tap correlation, `y0 = d0 g0 + d1 g1 + d2 g2` and
//! `y1 = d1 g0 + d2 g1 + d3 g2`, are `y = Aᵀ [(G g) ⊙ (Bᵀ d)]` with
//!
//! ```text
//!      | 1  0 -1  0 |        | 1    0    0  |
//! Bᵀ = | 0  1  1  0 |    G = | 1/2  1/2  1/2|    Aᵀ = | 1  1  1  0 |
//!      | 0 -1  1  0 |        | 1/2 -1/2  1/2|         | 0  1 -1 -1 |
//!      | 0  1  0 -1 |        | 0    0    1  |
//! ```
//!
//! (check: the four products are (d0 - d2) g0, (d1 + d2)(g0 + g1 + g2)/2,
//! (d2 - d1)(g0 - g1 + g2)/2 and (d1 - d3) g2; their sums by Aᵀ's rows are y0 and y1). Nesting
//! it over rows and columns gives the 2-D form `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` for one channel;
//! summed over the input channels, the element-wise product becomes, for each of the 16 elements
//! e of a transformed tile, a matrix product over channels:
//!
//! `M[e][t, o] = Σ_c V[e][t, c] · U[e][c, o]`, with `V[e] = (Bᵀ d B)[e]` of input tile t and
//! `U[e] = (G g Gᵀ)[e]` of the weight (o, c).
//!
//! So a chunk of images is: padded into channels-last order (a tile's 16 pixels are then 16
//! contiguous runs of C channels, and each transform is vector arithmetic over the channels),
//! input-transformed into V (`[16, tiles, C]`), multiplied by 16 GEMMs (tiles x O, depth C),
//! output-transformed from M (`[16, tiles, O]`) into channels-last outputs, and turned back to
//! NCHW. The weight transform is done once per convolution ([`weight_transform`]).
//!
//! Arithmetic: 16 multiply-adds per (tile, c, o) instead of 36 (2.25x fewer), plus the
//! transforms, which are additions only (O(C + O) per tile, not O(C·O)). The result differs from
//! direct convolution in rounding only (the transforms' ±1 and 1/2 coefficients are exact; the
//! sums are reassociated): `tests` bound the f32 error against an f64 direct convolution.
//! Each image's outputs depend on that image alone, and every sum runs in a fixed order, so the
//! bits do not depend on the chunking or on the thread count.

use super::fast::ShiftGeom;
use crate::backend::cpu::Scratch;
use crate::backend::cpu::gemm::{MatRef, gemm_wide_tile};
use crate::backend::cpu::transpose::transpose;
use crate::dtype::Float;

/// Tiles a batch of the products should hold (at least): a batch is the fewest whole images
/// with this many tiles, 2 images at 14x14 (49 tiles each, 98 in all), 4 at 7x7 (16 each), so V
/// and M of one batch stay in L2 (about 200 KiB each at 32 channels). 16 and 256 tiles were
/// slower, by 1-14% (docs/performance.md).
const BATCH_TILES: usize = 64;

/// Whether a convolution of this geometry runs here: a 3x3 kernel, stride 1, at least 32 input
/// and 16 output channels. With 16 input channels (ResNet-20's first stage) the products are
/// too shallow (depth 16) to repay the transforms: 16->16 at 28x28 forward took 1.6x the wide
/// grid's time.
pub(super) fn applies(g: &ShiftGeom) -> bool {
    g.r == 3 && g.s == 3 && g.sh == 1 && g.sw == 1 && g.c >= 32 && g.o >= 16
}

/// The transformed weight `U[e][c, o] = (G w[o, c] Gᵀ)[e]`, `[16, c, o]`, from `w [o, c, 3, 3]`.
pub(super) fn weight_transform<T: Float>(wt: &[T], g: &ShiftGeom) -> Vec<T> {
    let (o, c) = (g.o, g.c);
    let half = T::from_f64(0.5);
    let mut u = vec![T::ZERO; 16 * c * o];
    for (oc, k) in wt.chunks_exact(9).enumerate() {
        let (oo, ci) = (oc / c, oc % c);
        // G k (4 x 3), then (G k) Gᵀ (4 x 4).
        let mut gk = [[T::ZERO; 3]; 4];
        for j in 0..3 {
            let (k0, k1, k2) = (k[j], k[3 + j], k[6 + j]);
            gk[0][j] = k0;
            gk[1][j] = half * (k0 + k1 + k2);
            gk[2][j] = half * (k0 - k1 + k2);
            gk[3][j] = k2;
        }
        for (i, row) in gk.iter().enumerate() {
            let [t0, t1, t2] = *row;
            let e = [t0, half * (t0 + t1 + t2), half * (t0 - t1 + t2), t2];
            for (j, v) in e.into_iter().enumerate() {
                u[((i * 4 + j) * c + ci) * o + oo] = v;
            }
        }
    }
    u
}

/// Tiles of the output along each axis: ceil(OH / 2) x ceil(OW / 2).
fn tiles(g: &ShiftGeom) -> (usize, usize) {
    (g.oh().div_ceil(2), g.ow().div_ceil(2))
}

/// The convolution of `imgs` NCHW images `x` (`[imgs, c, h, w]`) by the transformed weight `u`
/// (from [`weight_transform`]), written NCHW into `y` (`[imgs, o, oh, ow]`).
pub(super) fn forward_chunk<T: Float>(g: &ShiftGeom, x: &[T], imgs: usize, u: &[T], y: &mut [T]) {
    let (th, tw) = tiles(g);
    let per_batch = BATCH_TILES.div_ceil(th * tw).max(1);
    let (img_in, img_out) = (g.c * g.h * g.w, g.o * g.oh() * g.ow());
    for first in (0..imgs).step_by(per_batch) {
        let n = per_batch.min(imgs - first);
        batch(
            g,
            &x[first * img_in..][..n * img_in],
            n,
            u,
            &mut y[first * img_out..][..n * img_out],
        );
    }
}

/// [`forward_chunk`] for one batch of `imgs` images.
fn batch<T: Float>(g: &ShiftGeom, x: &[T], imgs: usize, u: &[T], y: &mut [T]) {
    let (c, o, oh, ow) = (g.c, g.o, g.oh(), g.ow());
    let (th, tw) = tiles(g);
    let nt = imgs * th * tw;
    // The padded image covers every tile: 2 th + 2 rows, 2 tw + 2 columns (one more than the
    // padding gives when OH or OW is odd; that row and column are zeros).
    let (hp, wp) = (2 * th + 2, 2 * tw + 2);
    let mut xc = Scratch::<T>::new(imgs * hp * wp * c);
    let xc = xc.as_mut();
    super::channels_last::to_padded_nhwc_in(x, imgs, g, hp, wp, xc);
    let xc = &*xc;

    // V[e][t, c] = (Bᵀ d_t B)[e], a vector loop over c.
    let mut v = Scratch::<T>::new(16 * nt * c);
    let v = v.as_mut();
    let tl = Tiling { th, tw, hp, wp };
    dispatch!(input_pass(&tl, xc, c, v));

    // M[e] = V[e] (nt x c) · U[e] (c x o).
    let mut m = Scratch::<T>::new(16 * nt * o);
    let m = m.as_mut();
    for ((ve, ue), me) in v
        .chunks_exact(nt * c)
        .zip(u.chunks_exact(c * o))
        .zip(m.chunks_exact_mut(nt * o))
    {
        gemm_wide_tile(nt, o, c, &MatRef::new(ve, c), &MatRef::new(ue, o), me, false);
    }

    // Y tile t = Aᵀ M_t A (a vector loop over o), into channels-last outputs on the whole tile
    // grid, [imgs, 2 th, 2 tw, o]; the odd row and column past OH, OW are cropped below.
    let (gh, gw) = (2 * th, 2 * tw);
    let mut yc = Scratch::<T>::new(imgs * gh * gw * o);
    let yc = yc.as_mut();
    let m = &*m;
    dispatch!(output_pass(&tl, m, o, yc));
    let np = oh * ow;
    let pixel = |q: usize| ((q / ow) * gw + q % ow) * o;
    for (yimg, cimg) in y.chunks_exact_mut(o * np).zip(yc.chunks_exact(gh * gw * o)) {
        transpose(cimg, pixel, np, o, yimg, |oo| oo * np);
    }
}

/// Where a batch's tiles lie: `th x tw` tiles per image, in padded channels-last images of
/// `hp x wp` pixels.
struct Tiling {
    th: usize,
    tw: usize,
    hp: usize,
    wp: usize,
}

/// Calls `$f` compiled for AVX-512F where the CPU has it (the transforms' lane loops then use
/// zmm registers), else as compiled.
macro_rules! dispatch {
    ($f:ident($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            unsafe fn fast<T: Float>(tl: &Tiling, a: &[T], n: usize, out: &mut [T]) {
                $f(tl, a, n, out)
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F, the only requirement of `fast`.
                unsafe { fast($($arg),*) }
            } else {
                $f($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        $f($($arg),*)
    }};
}
use dispatch;

/// `v[e][t, ci] = (Bᵀ d_t B)[e]` for every tile t of the padded channels-last batch `xc` with
/// `c` channels (`v`: `[16, tiles, c]`).
#[inline(always)]
fn input_pass<T: Float>(tl: &Tiling, xc: &[T], c: usize, v: &mut [T]) {
    let nt = v.len() / (16 * c);
    let per_img = tl.th * tl.tw;
    for t in 0..nt {
        let (img, ty, tx) = (t / per_img, t / tl.tw % tl.th, t % tl.tw);
        let base = ((img * tl.hp + 2 * ty) * tl.wp + 2 * tx) * c;
        let mut d: [&[T]; 16] = [&[]; 16];
        for (k, dk) in d.iter_mut().enumerate() {
            *dk = &xc[base + ((k / 4) * tl.wp + k % 4) * c..][..c];
        }
        input_transform(&d, v, t * c, nt * c, c);
    }
}

/// `Y_t = Aᵀ M_t A` for every tile t, from `m` (`[16, tiles, o]`) into channels-last outputs on
/// the whole tile grid, `yc` = `[imgs, 2 th, 2 tw, o]`.
#[inline(always)]
fn output_pass<T: Float>(tl: &Tiling, m: &[T], o: usize, yc: &mut [T]) {
    let nt = m.len() / (16 * o);
    let per_img = tl.th * tl.tw;
    let (gh, gw) = (2 * tl.th, 2 * tl.tw);
    for t in 0..nt {
        let (img, ty, tx) = (t / per_img, t / tl.tw % tl.th, t % tl.tw);
        let top = ((img * gh + 2 * ty) * gw + 2 * tx) * o;
        let (head, tail) = yc.split_at_mut(top + gw * o);
        let (y0, y1) = (&mut head[top..][..2 * o], &mut tail[..2 * o]);
        let mut mt: [&[T]; 16] = [&[]; 16];
        for (e, me) in mt.iter_mut().enumerate() {
            *me = &m[(e * nt + t) * o..][..o];
        }
        output_transform(&mt, y0, y1, o);
    }
}

/// Channels per step of the transforms: fixed-size arrays of this many lanes compile to vector
/// arithmetic (one zmm register of f32).
const LANES: usize = 16;

/// `a - b`, `a + b` lane by lane.
#[inline(always)]
fn sub<T: Float, const N: usize>(a: &[T; N], b: &[T; N]) -> [T; N] {
    let mut r = *a;
    for (x, &y) in r.iter_mut().zip(b) {
        *x -= y;
    }
    r
}
#[inline(always)]
fn add<T: Float, const N: usize>(a: &[T; N], b: &[T; N]) -> [T; N] {
    let mut r = *a;
    for (x, &y) in r.iter_mut().zip(b) {
        *x += y;
    }
    r
}

/// `Bᵀ d B` of N channels at once: `d[k]` the channels of tile pixel (k / 4, k % 4); the result
/// indexed by element e = 4 i + j.
#[inline(always)]
fn input_tile<T: Float, const N: usize>(d: &[[T; N]; 16]) -> [[T; N]; 16] {
    // Bᵀ d: row combinations, for each column j.
    let mut t = [[T::ZERO; N]; 16];
    for j in 0..4 {
        let (a, b, c, e) = (&d[j], &d[4 + j], &d[8 + j], &d[12 + j]);
        t[j] = sub(a, c);
        t[4 + j] = add(b, c);
        t[8 + j] = sub(c, b);
        t[12 + j] = sub(b, e);
    }
    // (Bᵀ d) B: column combinations, for each row i.
    let mut v = [[T::ZERO; N]; 16];
    for i in 0..4 {
        let r = &t[4 * i..4 * i + 4];
        v[4 * i] = sub(&r[0], &r[2]);
        v[4 * i + 1] = add(&r[1], &r[2]);
        v[4 * i + 2] = sub(&r[2], &r[1]);
        v[4 * i + 3] = sub(&r[1], &r[3]);
    }
    v
}

/// `v[e * plane + at + ci] = (Bᵀ d B)[e]` for each channel ci < c, `d[k]` the channels of tile
/// pixel (k / 4, k % 4): LANES channels at a time, then one at a time.
#[inline(always)]
fn input_transform<T: Float>(d: &[&[T]; 16], v: &mut [T], at: usize, plane: usize, c: usize) {
    let mut ci = 0;
    while ci + LANES <= c {
        let mut p = [[T::ZERO; LANES]; 16];
        for (pk, dk) in p.iter_mut().zip(d) {
            pk.copy_from_slice(&dk[ci..ci + LANES]);
        }
        for (e, r) in input_tile(&p).iter().enumerate() {
            v[e * plane + at + ci..][..LANES].copy_from_slice(r);
        }
        ci += LANES;
    }
    for ci in ci..c {
        let mut p = [[T::ZERO; 1]; 16];
        for (pk, dk) in p.iter_mut().zip(d) {
            pk[0] = dk[ci];
        }
        for (e, r) in input_tile(&p).iter().enumerate() {
            v[e * plane + at + ci] = r[0];
        }
    }
}

/// `Aᵀ m A` of N channels at once: `m[e]` element e = 4 i + j; the 2 x 2 outputs in row order.
#[inline(always)]
fn output_tile<T: Float, const N: usize>(m: &[[T; N]; 16]) -> [[T; N]; 4] {
    // Aᵀ m: row 0 = m0 + m1 + m2, row 1 = m1 - m2 - m3, for each column j.
    let (mut s0, mut s1) = ([[T::ZERO; N]; 4], [[T::ZERO; N]; 4]);
    for j in 0..4 {
        s0[j] = add(&add(&m[j], &m[4 + j]), &m[8 + j]);
        s1[j] = sub(&sub(&m[4 + j], &m[8 + j]), &m[12 + j]);
    }
    // (Aᵀ m) A: the same combinations of the columns.
    [
        add(&add(&s0[0], &s0[1]), &s0[2]),
        sub(&sub(&s0[1], &s0[2]), &s0[3]),
        add(&add(&s1[0], &s1[1]), &s1[2]),
        sub(&sub(&s1[1], &s1[2]), &s1[3]),
    ]
}

/// `Aᵀ m A` of one transformed tile for each output channel: `m[e]` the channels of element
/// e = 4 i + j; output row 0 into `y0` (pixel 0's channels, then pixel 1's), row 1 into `y1`.
#[inline(always)]
fn output_transform<T: Float>(m: &[&[T]; 16], y0: &mut [T], y1: &mut [T], o: usize) {
    let (y00, y01) = y0[..2 * o].split_at_mut(o);
    let (y10, y11) = y1[..2 * o].split_at_mut(o);
    let mut outs = [y00, y01, y10, y11];
    let mut oo = 0;
    while oo + LANES <= o {
        let mut p = [[T::ZERO; LANES]; 16];
        for (pe, me) in p.iter_mut().zip(m) {
            pe.copy_from_slice(&me[oo..oo + LANES]);
        }
        for (y, v) in outs.iter_mut().zip(output_tile(&p)) {
            y[oo..oo + LANES].copy_from_slice(&v);
        }
        oo += LANES;
    }
    for oo in oo..o {
        let mut p = [[T::ZERO; 1]; 16];
        for (pe, me) in p.iter_mut().zip(m) {
            pe[0] = me[oo];
        }
        for (y, v) in outs.iter_mut().zip(output_tile(&p)) {
            y[oo] = v[0];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::reference::tests::{naive, params};

    fn geom(c: usize, h: usize, w: usize, pad: usize, o: usize) -> ShiftGeom {
        ShiftGeom {
            c,
            h,
            w,
            ph: pad,
            pw: pad,
            r: 3,
            s: 3,
            sh: 1,
            sw: 1,
            o,
        }
    }

    /// The f32 Winograd result against an f64 direct convolution, at ResNet-20's three
    /// stride-1 geometries and at odd sizes (a partial last tile row and column, no padding,
    /// padding 2): the error, relative to the largest output, stays below 1e-5 (measured here:
    /// about 2e-7, a few f32 roundings). f64 against the same reference: below 1e-13.
    #[test]
    fn f32_error_against_f64_direct_convolution() {
        let mut rng = crate::Rng::new(11);
        for (imgs, c, h, w, pad, o) in [
            (3, 16, 28, 28, 1, 16),
            (2, 32, 14, 14, 1, 32),
            (17, 64, 7, 7, 1, 64),
            (2, 17, 9, 11, 1, 20),
            (2, 16, 8, 7, 0, 33),
            (1, 16, 5, 6, 2, 16),
        ] {
            let g = geom(c, h, w, pad, o);
            let x: Vec<f64> = (0..imgs * c * h * w).map(|_| rng.normal()).collect();
            let wt: Vec<f64> = (0..o * c * 9).map(|_| rng.normal()).collect();
            // The reference's direct loops (their y; no upstream gradient needed here).
            let zeros = vec![0.0; imgs * o * g.oh() * g.ow()];
            let (want, _, _) = naive(&x, &wt, &zeros, &params(imgs, c, h, w, o, 3, 1, pad));
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let mut y32 = vec![0f32; want.len()];
            forward_chunk(&g, &f(&x), imgs, &weight_transform(&f(&wt), &g), &mut y32);
            let mut y64 = vec![0f64; want.len()];
            forward_chunk(&g, &x, imgs, &weight_transform(&wt, &g), &mut y64);
            let err32 = y32
                .iter()
                .zip(&want)
                .fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()))
                / scale;
            let err64 = y64.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / scale;
            eprintln!("WINO {imgs}x{c}x{h}x{w} pad {pad} -> {o}: f32 {err32:e} f64 {err64:e}");
            assert!(
                err32 < 1e-5,
                "f32 relative error {err32:e} at {imgs}x{c}x{h}x{w} pad {pad} -> {o}"
            );
            assert!(
                err64 < 1e-13,
                "f64 relative error {err64:e} at {imgs}x{c}x{h}x{w} pad {pad} -> {o}"
            );
        }
    }
}
