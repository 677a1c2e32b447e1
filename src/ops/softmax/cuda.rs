//! CUDA launchers of softmax / log-softmax (kernels in kernels/softmax.cu): one thread per line,
//! or one block per row for long contiguous rows (`inner == 1`, at least [`ROW_BLOCK_MIN`]
//! values: a thread alone would walk the whole row three times while the GPU idles). Ten-class
//! logits stay one thread per row, which is faster for rows that short.

use super::cpu::SoftmaxParams;
use crate::backend::cuda::{ROW_BLOCK_MIN, arg, gpu_of};
use crate::dtype::Float;
use crate::{Result, Tensor};

/// Whether `p` runs one block per row.
fn by_rows(p: SoftmaxParams) -> bool {
    p.inner == 1 && p.size >= ROW_BLOCK_MIN
}

fn geometry(p: SoftmaxParams) -> (i64, i64, i64, i64) {
    (p.outer as i64, p.size as i64, p.inner as i64, i64::from(p.log))
}

pub(super) fn forward<T: Float>(x: &Tensor<T>, p: SoftmaxParams) -> Result<Tensor<T>> {
    let g = gpu_of(x)?;
    let bx = x.dev()?;
    let out = g.alloc::<T>(x.numel())?;
    let (px, po) = (bx.ptr(), out.ptr());
    let (o, s, i, l) = geometry(p);
    if by_rows(p) {
        g.launch_grid::<T>(
            "softmax",
            "softmax_rows_forward",
            p.outer.min(65_535) as u32,
            &[arg(&px), arg(&po), arg(&o), arg(&s), arg(&l)],
        )?;
    } else if p.outer * p.inner > 0 {
        g.launch::<T>(
            "softmax",
            "softmax_forward",
            p.outer * p.inner,
            &[arg(&px), arg(&po), arg(&o), arg(&s), arg(&i), arg(&l)],
        )?;
    }
    Ok(Tensor::from_dev(out, x.shape().to_vec()))
}

pub(super) fn backward<T: Float>(y: &Tensor<T>, gy: &Tensor<T>, p: SoftmaxParams) -> Result<Tensor<T>> {
    let g = gpu_of(y)?;
    let (by, bg) = (y.dev()?, gy.dev()?);
    let out = g.alloc::<T>(y.numel())?;
    let (py, pg, po) = (by.ptr(), bg.ptr(), out.ptr());
    let (o, s, i, l) = geometry(p);
    if by_rows(p) {
        g.launch_grid::<T>(
            "softmax",
            "softmax_rows_backward",
            p.outer.min(65_535) as u32,
            &[arg(&py), arg(&pg), arg(&po), arg(&o), arg(&s), arg(&l)],
        )?;
    } else if p.outer * p.inner > 0 {
        g.launch::<T>(
            "softmax",
            "softmax_backward",
            p.outer * p.inner,
            &[arg(&py), arg(&pg), arg(&po), arg(&o), arg(&s), arg(&i), arg(&l)],
        )?;
    }
    Ok(Tensor::from_dev(out, y.shape().to_vec()))
}
