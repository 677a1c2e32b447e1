//! CUDA launcher of the shape family: the strided gather of kernels/shape.cu, which serves
//! permute (permuted strides) and expand (stride 0 on broadcast dims).

use crate::backend::cuda::{Strided, arg, gpu_of};
use crate::dtype::Float;
use crate::shape::{broadcast_strides, numel, strides};
use crate::{Result, Tensor};

/// `out[i] = x[offset(i)]` over `out_shape`, reading x through `src` strides.
pub(crate) fn gather<T: Float>(x: &Tensor<T>, out_shape: &[usize], src: &[usize]) -> Result<Tensor<T>> {
    let g = gpu_of(x)?;
    let bx = x.dev()?;
    let len = numel(out_shape);
    let out = g.alloc::<T>(len)?;
    let s = Strided::new("gather", out_shape, src)?;
    let (px, po, ni) = (bx.ptr(), out.ptr(), len as i64);
    if len > 0 {
        g.launch::<T>("shape", "gather", len, &[arg(&px), arg(&po), arg(&ni), arg(&s)])?;
    }
    Ok(Tensor::from_dev(out, out_shape.to_vec()))
}

/// The permutation of `x`'s dims by `perm`.
pub(crate) fn permute<T: Float>(x: &Tensor<T>, perm: &[usize]) -> Result<Tensor<T>> {
    let st = strides(x.shape());
    let src: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    gather(x, &shape, &src)
}

/// `x` broadcast to `shape`.
pub(crate) fn expand<T: Float>(x: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>> {
    gather(x, shape, &broadcast_strides(x.shape(), shape))
}
