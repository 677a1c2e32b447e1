//! CUDA launchers of softmax / log-softmax (kernels in kernels/softmax.cu).

use super::cpu::SoftmaxParams;
use crate::backend::cuda::{arg, gpu_of};
use crate::dtype::Float;
use crate::{Result, Tensor};

fn geometry(p: SoftmaxParams) -> (i64, i64, i64, i64) {
    (p.outer as i64, p.size as i64, p.inner as i64, i64::from(p.log))
}

pub(super) fn forward<T: Float>(x: &Tensor<T>, p: SoftmaxParams) -> Result<Tensor<T>> {
    let g = gpu_of(x)?;
    let bx = x.dev()?;
    let out = g.alloc::<T>(x.numel())?;
    let (px, po) = (bx.ptr(), out.ptr());
    let (o, s, i, l) = geometry(p);
    if p.outer * p.inner > 0 {
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
    if p.outer * p.inner > 0 {
        g.launch::<T>(
            "softmax",
            "softmax_backward",
            p.outer * p.inner,
            &[arg(&py), arg(&pg), arg(&po), arg(&o), arg(&s), arg(&i), arg(&l)],
        )?;
    }
    Ok(Tensor::from_dev(out, y.shape().to_vec()))
}
