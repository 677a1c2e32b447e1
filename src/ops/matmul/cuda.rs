//! CUDA path of matmul: each product is one strided-batched cuBLAS GEMM (see
//! `backend/cuda/blas.rs` for the row-major trick).

use super::cpu::MatmulDims;
use crate::backend::cuda::blas::Gemm;
use crate::backend::cuda::gpu_of;
use crate::dtype::Float;
use crate::{Result, Tensor};

/// `C_i = op(A_i) op(B_i)` over the batch, into a new `[batch * m * n]` tensor of `shape`.
fn product<T: Float>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    (ta, tb): (bool, bool),
    (m, n, k): (usize, usize, usize),
    batch: usize,
    shape: &[usize],
) -> Result<Tensor<T>> {
    let g = gpu_of(a)?;
    let (da, db) = (a.dev()?, b.dev()?);
    let out = g.alloc::<T>(batch * m * n)?;
    let gemm = Gemm {
        batch,
        stride_a: m * k,
        stride_b: k * n,
        stride_c: m * n,
        ..Gemm::single(ta, tb, m, n, k)
    };
    g.gemm::<T>(gemm, da.ptr(), db.ptr(), out.ptr())?;
    Ok(Tensor::from_dev(out, shape.to_vec()))
}

pub(super) fn forward<T: Float>(d: MatmulDims, a: &Tensor<T>, b: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>> {
    product(a, b, (false, false), (d.m, d.n, d.k), d.batch, shape)
}

/// dA = G B^T.
pub(super) fn grad_a<T: Float>(d: MatmulDims, g: &Tensor<T>, b: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>> {
    product(g, b, (false, true), (d.m, d.k, d.n), d.batch, shape)
}

/// dB = A^T G.
pub(super) fn grad_b<T: Float>(d: MatmulDims, a: &Tensor<T>, g: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>> {
    product(a, g, (true, false), (d.k, d.n, d.m), d.batch, shape)
}
