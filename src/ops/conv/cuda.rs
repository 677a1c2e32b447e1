//! CUDA path of conv2d: im2col for a chunk of images (kernels/conv.cu), then one strided-batched
//! cuBLAS GEMM for the chunk; the backward uses the same column matrices with transposed
//! products and col2im. Chunks bound the scratch column buffer (at most `COL_LIMIT` elements,
//! and at least one image).
//!
//! Per image, with `col` the `[C*R*S, OH*OW]` column matrix:
//! - forward: `Y = W col` (`W` viewed as `[O, C*R*S]`);
//! - weight gradient: `dW += dY col^T`, accumulated over the images in a fixed order;
//! - input gradient: `dcol = W^T dY`, then col2im sums each pixel's entries (a gather: no
//!   atomics, deterministic).

use super::cpu::Conv2dParams;
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

fn im2col<T: Float>(
    g: &'static Gpu,
    x: u64,
    col: &DevBuf<T>,
    images: usize,
    p: &Conv2dParams,
    pl: &Plan,
) -> Result<()> {
    let (pc, ni, ge) = (col.ptr(), images as i64, geom(p));
    g.launch::<T>(
        "conv",
        "im2col",
        images * pl.k * pl.p,
        &[arg(&x), arg(&pc), arg(&ni), arg(&ge)],
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
        let col = g.alloc::<T>(pl.chunk * pl.k * pl.p)?;
        for i0 in (0..p.n).step_by(pl.chunk) {
            let cb = pl.chunk.min(p.n - i0);
            im2col(g, at::<T>(bx.ptr(), i0 * p.c * p.h * p.w), &col, cb, p, &pl)?;
            let gemm = Gemm {
                batch: cb,
                stride_a: 0,
                stride_b: pl.k * pl.p,
                stride_c: p.o * pl.p,
                ..Gemm::single(false, false, p.o, pl.p, pl.k)
            };
            g.gemm::<T>(gemm, bw.ptr(), col.ptr(), at::<T>(out.ptr(), i0 * p.o * pl.p))?;
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
    let dw = if need_dw { Some(g.zeros::<T>(p.o * pl.k)?) } else { None };
    let dx = if need_dx {
        Some(g.alloc::<T>(p.n * p.c * p.h * p.w)?)
    } else {
        None
    };
    if p.n > 0 && pl.k * pl.p > 0 {
        let col = g.alloc::<T>(pl.chunk * pl.k * pl.p)?;
        for i0 in (0..p.n).step_by(pl.chunk) {
            let cb = pl.chunk.min(p.n - i0);
            let gy_at = |i: usize| at::<T>(bg.ptr(), i * p.o * pl.p);
            if let Some(dw) = &dw {
                im2col(g, at::<T>(bx.ptr(), i0 * p.c * p.h * p.w), &col, cb, p, &pl)?;
                for b in 0..cb {
                    let gemm = Gemm {
                        accumulate: true,
                        ..Gemm::single(false, true, p.o, pl.k, pl.p)
                    };
                    g.gemm::<T>(gemm, gy_at(i0 + b), at::<T>(col.ptr(), b * pl.k * pl.p), dw.ptr())?;
                }
            }
            if let Some(dx) = &dx {
                let gemm = Gemm {
                    batch: cb,
                    stride_a: 0,
                    stride_b: p.o * pl.p,
                    stride_c: pl.k * pl.p,
                    ..Gemm::single(true, false, pl.k, pl.p, p.o)
                };
                g.gemm::<T>(gemm, bw.ptr(), gy_at(i0), col.ptr())?;
                let (pc, pd, ni, ge) = (col.ptr(), at::<T>(dx.ptr(), i0 * p.c * p.h * p.w), cb as i64, geom(p));
                g.launch::<T>(
                    "conv",
                    "col2im",
                    cb * p.c * p.h * p.w,
                    &[arg(&pc), arg(&pd), arg(&ni), arg(&ge)],
                )?;
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
