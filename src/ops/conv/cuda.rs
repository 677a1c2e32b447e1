//! CUDA path of conv2d: im2col for a chunk of images (kernels/conv.cu), then cuBLAS GEMMs, a
//! fixed number per chunk whatever the batch size; the backward uses transposed products and
//! col2im. Chunks bound the scratch column buffer (at most `COL_LIMIT` elements, and at least one
//! image); below that limit a whole batch is one chunk.
//!
//! Per image, with `col` the `[C*R*S, OH*OW]` column matrix:
//! - forward: `Y = W col` (`W` viewed as `[O, C*R*S]`), one strided-batched GEMM per chunk;
//! - input gradient: `dcol = W^T dY` (one strided-batched GEMM), then col2im sums each pixel's
//!   entries (a gather: no atomics, deterministic);
//! - weight gradient: `dW = sum over images of dY col^T`, as ONE GEMM per chunk over the
//!   chunk's images and positions together: the columns are laid out `[C*R*S, images*OH*OW]`
//!   (im2col's wide layout) and the output gradient folded to `[O, images*OH*OW]` to match, so
//!   the sum over images happens inside cuBLAS instead of in one call per image.
//!
//! A 1x1 convolution with stride 1 and no padding skips im2col and col2im: an image
//! `[C, H*W]` is its own column matrix.

use super::reference::Conv2dParams;
use crate::backend::cuda::blas::Gemm;
use crate::backend::cuda::{DevBuf, Gpu, Param, arg, gpu_of};
use crate::dtype::Float;
use crate::{Result, Tensor};

/// Largest column buffer of one chunk, in elements.
const COL_LIMIT: usize = 1 << 26;

/// The `ConvGeom` struct of kernels/conv.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct ConvGeom {
    c: i64,
    h: i64,
    w: i64,
    r: i64,
    s: i64,
    sh: i64,
    sw: i64,
    ph: i64,
    pw: i64,
    oh: i64,
    ow: i64,
}
impl Param for ConvGeom {}

fn geom(p: &Conv2dParams) -> ConvGeom {
    let i = |v: usize| v as i64;
    ConvGeom {
        c: i(p.c),
        h: i(p.h),
        w: i(p.w),
        r: i(p.r),
        s: i(p.s),
        sh: i(p.stride_h),
        sw: i(p.stride_w),
        ph: i(p.pad_h),
        pw: i(p.pad_w),
        oh: i(p.oh),
        ow: i(p.ow),
    }
}

struct Plan {
    /// Rows of the column matrix (C*R*S), columns (OH*OW), images per chunk.
    k: usize,
    p: usize,
    chunk: usize,
}

fn plan(p: &Conv2dParams) -> Plan {
    let (k, q) = (p.c * p.r * p.s, p.oh * p.ow);
    Plan {
        k,
        p: q,
        chunk: (COL_LIMIT / (k * q).max(1)).clamp(1, p.n.max(1)),
    }
}

/// Byte offset of element `i` of a `T` buffer.
fn at<T: Float>(ptr: u64, i: usize) -> u64 {
    ptr + (i * size_of::<T>()) as u64
}

/// Whether `p` is a 1x1, stride-1, unpadded convolution (its input is its own column matrix).
fn pointwise(p: &Conv2dParams) -> bool {
    (p.r, p.s, p.stride_h, p.stride_w, p.pad_h, p.pad_w) == (1, 1, 1, 1, 0, 0)
}

/// The column matrices of `images` images at `x`, per image (`wide = false`) or side by side
/// (`wide = true`, the weight gradient's layout).
#[allow(clippy::too_many_arguments)]
fn im2col<T: Float>(
    g: &'static Gpu,
    x: u64,
    col: &DevBuf<T>,
    images: usize,
    p: &Conv2dParams,
    pl: &Plan,
    wide: bool,
) -> Result<()> {
    let (pc, ni, ge, wi) = (col.ptr(), images as i64, geom(p), i64::from(wide));
    g.launch::<T>(
        "conv",
        "im2col",
        images * pl.k * pl.p,
        &[arg(&x), arg(&pc), arg(&ni), arg(&ge), arg(&wi)],
    )
}

/// `[images, rows, q]` at `src` -> `[rows, images*q]` at `dst`.
fn fold_batch<T: Float>(g: &'static Gpu, src: u64, dst: u64, images: usize, rows: usize, q: usize) -> Result<()> {
    let (ni, nr, nq) = (images as i64, rows as i64, q as i64);
    g.launch::<T>(
        "conv",
        "fold_batch",
        images * rows * q,
        &[arg(&src), arg(&dst), arg(&ni), arg(&nr), arg(&nq)],
    )
}

pub(super) fn forward<T: Float>(
    x: &Tensor<T>,
    w: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    p: &Conv2dParams,
) -> Result<Tensor<T>> {
    let g = gpu_of(x)?;
    let (bx, bw) = (x.dev()?, w.dev()?);
    let pl = plan(p);
    let out = g.alloc::<T>(p.n * p.o * pl.p)?;
    if p.n * p.o * pl.p > 0 {
        let direct = pointwise(p);
        let col = g.alloc::<T>(if direct { 0 } else { pl.chunk * pl.k * pl.p })?;
        for i0 in (0..p.n).step_by(pl.chunk) {
            let cb = pl.chunk.min(p.n - i0);
            let x_at = at::<T>(bx.ptr(), i0 * p.c * p.h * p.w);
            let cols = if direct {
                x_at
            } else {
                im2col(g, x_at, &col, cb, p, &pl, false)?;
                col.ptr()
            };
            let gemm = Gemm {
                batch: cb,
                stride_a: 0,
                stride_b: pl.k * pl.p,
                stride_c: p.o * pl.p,
                ..Gemm::single(false, false, p.o, pl.p, pl.k)
            };
            g.gemm::<T>(gemm, bw.ptr(), cols, at::<T>(out.ptr(), i0 * p.o * pl.p))?;
        }
        if let Some(b) = bias {
            let bb = b.dev()?;
            let (po, pb, n, o, hw) = (out.ptr(), bb.ptr(), p.n as i64, p.o as i64, pl.p as i64);
            g.launch::<T>(
                "conv",
                "add_bias",
                p.n * p.o * pl.p,
                &[arg(&po), arg(&pb), arg(&n), arg(&o), arg(&hw)],
            )?;
        }
    }
    Ok(Tensor::from_dev(out, vec![p.n, p.o, p.oh, p.ow]))
}

/// (dx, dw), each only if asked for.
type InputWeightGrads<T> = (Option<Tensor<T>>, Option<Tensor<T>>);

/// The input and weight gradients (each only if asked for).
pub(super) fn backward<T: Float>(
    x: &Tensor<T>,
    w: &Tensor<T>,
    gy: &Tensor<T>,
    p: &Conv2dParams,
    need_dx: bool,
    need_dw: bool,
) -> Result<InputWeightGrads<T>> {
    let g = gpu_of(x)?;
    let (bx, bw, bg) = (x.dev()?, w.dev()?, gy.dev()?);
    let pl = plan(p);
    let work = p.n > 0 && pl.k * pl.p > 0;
    let direct = pointwise(p);
    let dw = match (need_dw, work) {
        (true, true) => Some(g.alloc::<T>(p.o * pl.k)?), // written by the first chunk's GEMM
        (true, false) => Some(g.zeros::<T>(p.o * pl.k)?),
        (false, _) => None,
    };
    let dx = if need_dx {
        Some(g.alloc::<T>(p.n * p.c * p.h * p.w)?)
    } else {
        None
    };
    if work {
        // The column buffer serves the weight gradient (wide layout) and then dcol.
        let col = g.alloc::<T>(if direct && !need_dw { 0 } else { pl.chunk * pl.k * pl.p })?;
        let gy_folded = g.alloc::<T>(if need_dw { pl.chunk * p.o * pl.p } else { 0 })?;
        for i0 in (0..p.n).step_by(pl.chunk) {
            let cb = pl.chunk.min(p.n - i0);
            let gy_at = at::<T>(bg.ptr(), i0 * p.o * pl.p);
            let x_at = at::<T>(bx.ptr(), i0 * p.c * p.h * p.w);
            if let Some(dw) = &dw {
                if direct {
                    fold_batch::<T>(g, x_at, col.ptr(), cb, p.c, pl.p)?;
                } else {
                    im2col(g, x_at, &col, cb, p, &pl, true)?;
                }
                fold_batch::<T>(g, gy_at, gy_folded.ptr(), cb, p.o, pl.p)?;
                // dW [O, K] (+)= dY' [O, cb*P] . col'^T [cb*P, K]: all images in one product.
                let gemm = Gemm {
                    accumulate: i0 > 0,
                    ..Gemm::single(false, true, p.o, pl.k, cb * pl.p)
                };
                g.gemm::<T>(gemm, gy_folded.ptr(), col.ptr(), dw.ptr())?;
            }
            if let Some(dx) = &dx {
                let dx_at = at::<T>(dx.ptr(), i0 * p.c * p.h * p.w);
                // dcol_b [K, P] = W^T [K, O] . dY_b [O, P]; for a 1x1 conv that is dx_b itself.
                let gemm = Gemm {
                    batch: cb,
                    stride_a: 0,
                    stride_b: p.o * pl.p,
                    stride_c: pl.k * pl.p,
                    ..Gemm::single(true, false, pl.k, pl.p, p.o)
                };
                if direct {
                    g.gemm::<T>(gemm, bw.ptr(), gy_at, dx_at)?;
                } else {
                    g.gemm::<T>(gemm, bw.ptr(), gy_at, col.ptr())?;
                    let (pc, ni, ge) = (col.ptr(), cb as i64, geom(p));
                    g.launch::<T>(
                        "conv",
                        "col2im",
                        cb * p.c * p.h * p.w,
                        &[arg(&pc), arg(&dx_at), arg(&ni), arg(&ge)],
                    )?;
                }
            }
        }
    } else if let Some(dx) = &dx {
        // No output positions (or an empty batch): the input gradient is zero.
        g.fill_raw::<T>(dx.ptr(), dx.len(), T::ZERO)?;
    }
    Ok((
        dx.map(|d| Tensor::from_dev(d, x.shape().to_vec())),
        dw.map(|d| Tensor::from_dev(d, w.shape().to_vec())),
    ))
}
