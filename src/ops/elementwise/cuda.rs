//! CUDA launchers of the elementwise family (kernels in kernels/elementwise.cu). The binary op
//! codes below are the `switch` cases of the `binary` kernel; the unary ops' codes are their
//! `UnaryOp::CODE` (kernels/unary_ops.h is generated from them).

use super::BinaryOp;
use super::unary::UnaryOp;
use crate::backend::cuda::{Strided, arg, float_arg, gpu_of};
use crate::dtype::Float;
use crate::shape::{broadcast_strides, numel};
use crate::{Result, Tensor};

fn binary_code(op: BinaryOp) -> i64 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
    }
}

/// `a op b` over the broadcast shape `out_shape`.
pub(crate) fn binary<T: Float>(op: BinaryOp, a: &Tensor<T>, b: &Tensor<T>, out_shape: &[usize]) -> Result<Tensor<T>> {
    let g = gpu_of(a)?;
    let (da, db) = (a.dev()?, b.dev()?);
    let n = numel(out_shape);
    let out = g.alloc::<T>(n)?;
    let contiguous = i64::from(a.shape() == out_shape && b.shape() == out_shape);
    let sa = Strided::new("binary", out_shape, &broadcast_strides(a.shape(), out_shape))?;
    let sb = Strided::new("binary", out_shape, &broadcast_strides(b.shape(), out_shape))?;
    let (code, ni, pa, pb, po) = (binary_code(op), n as i64, da.ptr(), db.ptr(), out.ptr());
    if n > 0 {
        g.launch::<T>(
            "elementwise",
            "binary",
            n,
            &[
                arg(&code),
                arg(&pa),
                arg(&pb),
                arg(&po),
                arg(&ni),
                arg(&contiguous),
                arg(&sa),
                arg(&sb),
            ],
        )?;
    }
    Ok(Tensor::from_dev(out, out_shape.to_vec()))
}

/// `f(x)` elementwise.
pub(crate) fn unary<T: Float, O: UnaryOp<T>>(op: O, x: &Tensor<T>) -> Result<Tensor<T>> {
    let g = gpu_of(x)?;
    let dx = x.dev()?;
    let n = x.numel();
    let out = g.alloc::<T>(n)?;
    let (code, p) = (O::CODE, op.param());
    let (px, po, ni) = (dx.ptr(), out.ptr(), n as i64);
    if n > 0 {
        g.launch::<T>(
            "elementwise",
            "unary",
            n,
            &[arg(&code), arg(&px), arg(&po), arg(&ni), float_arg(&p)],
        )?;
    }
    Ok(Tensor::from_dev(out, x.shape().to_vec()))
}

/// dL/dx of a unary op from dL/dy and the value it saved (x, y or none: `UnaryOp::SAVES`).
pub(crate) fn unary_backward<T: Float, O: UnaryOp<T>>(
    op: O,
    v: Option<&Tensor<T>>,
    gy: &Tensor<T>,
) -> Result<Tensor<T>> {
    let g = gpu_of(gy)?;
    let bv = match v {
        Some(v) => Some(v.dev()?),
        None => None,
    };
    let bg = gy.dev()?;
    let n = gy.numel();
    let out = g.alloc::<T>(n)?;
    let (code, p) = (O::CODE, op.param());
    let (pv, pg, po, ni) = (bv.as_ref().map_or(0, |b| b.ptr()), bg.ptr(), out.ptr(), n as i64);
    if n > 0 {
        g.launch::<T>(
            "elementwise",
            "unary_backward",
            n,
            &[arg(&code), arg(&pv), arg(&pg), arg(&po), arg(&ni), float_arg(&p)],
        )?;
    }
    Ok(Tensor::from_dev(out, gy.shape().to_vec()))
}
