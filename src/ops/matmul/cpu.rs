//! CPU kernels of matmul: a batch of independent GEMMs, each handed to the fast packed GEMM
//! ([`gemm`](crate::backend::cpu::gemm::gemm)) or, with the reference kernels, to the
//! textbook triple loop ([`reference::gemm`](crate::backend::cpu::gemm::reference::gemm)),
//! which is where to read what a matrix product computes. The batch runs in parallel when the
//! total work is large; every output matrix is computed by the same sequence of operations
//! whatever the thread count, so results are deterministic.

use crate::backend::cpu::PAR_THRESHOLD;
use crate::backend::cpu::gemm::{MatRef, gemm, reference};
use crate::backend::cpu::kernels::Kernels;
use crate::dtype::Float;
use rayon::prelude::*;

/// Sizes of a (batched) product `C[b] (m x n) = A[b] (m x k) · B[b] (k x n)`. A rank-2 product
/// is `batch = 1`; a `[b, m, k] x [k, n]` product is folded into `batch = 1, m = b * m` by the
/// caller (rows of A are independent), so here both operands always have `batch` matrices.
#[derive(Clone, Copy, Debug)]
pub(super) struct MatmulDims {
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Which GEMM runs (chosen on the thread that issued the op).
    pub kernels: Kernels,
}

impl MatmulDims {
    /// Multiply-adds in the whole batch (saturating: used only to decide on parallelism).
    fn work(&self) -> usize {
        self.batch
            .saturating_mul(self.m)
            .saturating_mul(self.k)
            .saturating_mul(self.n)
    }
}

/// `C (m x n) = A · B` with the GEMM `d.kernels` names.
fn product<T: Float>(d: MatmulDims, m: usize, n: usize, k: usize, a: &MatRef<T>, b: &MatRef<T>, c: &mut [T]) {
    match d.kernels {
        Kernels::Fast => gemm(m, n, k, a, b, c, false),
        Kernels::Reference => reference::gemm(m, n, k, a, b, c, false),
    }
}

/// Runs `f(batch_index, out_matrix)` over the `batch` output matrices of `out_len` elements,
/// in parallel over the batch when there is more than one matrix and the work is large.
fn over_batch<T: Float>(d: MatmulDims, out_len: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) -> Vec<T> {
    let mut out = crate::backend::cpu::pool::zeroed(d.batch * out_len);
    if out_len == 0 {
        return out;
    }
    if d.batch > 1 && d.work() >= PAR_THRESHOLD {
        out.par_chunks_mut(out_len).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        out.chunks_mut(out_len).enumerate().for_each(|(i, c)| f(i, c));
    }
    out
}

/// `C[b] = A[b] · B[b]`: returns `[batch, m, n]` row-major.
pub(super) fn forward<T: Float>(d: MatmulDims, a: &[T], b: &[T]) -> Vec<T> {
    let (sa, sb) = (d.m * d.k, d.k * d.n);
    over_batch(d, d.m * d.n, |i, c| {
        let a = MatRef::new(&a[i * sa..(i + 1) * sa], d.k);
        let b = MatRef::new(&b[i * sb..(i + 1) * sb], d.n);
        product(d, d.m, d.n, d.k, &a, &b, c);
    })
}

/// `dA[b] = dC[b] · B[b]^T` (m x k): returns `[batch, m, k]`.
pub(super) fn grad_a<T: Float>(d: MatmulDims, g: &[T], b: &[T]) -> Vec<T> {
    let (sg, sb) = (d.m * d.n, d.k * d.n);
    over_batch(d, d.m * d.k, |i, c| {
        let g = MatRef::new(&g[i * sg..(i + 1) * sg], d.n);
        let bt = MatRef::new(&b[i * sb..(i + 1) * sb], d.n).t();
        product(d, d.m, d.k, d.n, &g, &bt, c);
    })
}

/// `dB[b] = A[b]^T · dC[b]` (k x n): returns `[batch, k, n]`.
pub(super) fn grad_b<T: Float>(d: MatmulDims, a: &[T], g: &[T]) -> Vec<T> {
    let (sa, sg) = (d.m * d.k, d.m * d.n);
    over_batch(d, d.k * d.n, |i, c| {
        let at = MatRef::new(&a[i * sa..(i + 1) * sa], d.k).t();
        let g = MatRef::new(&g[i * sg..(i + 1) * sg], d.n);
        product(d, d.k, d.n, d.m, &at, &g, c);
    })
}
