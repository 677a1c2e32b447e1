//! The reference GEMM: the textbook triple loop, `C[i][j] = Σ_p A[i][p] · B[p][j]`.
//!
//! No blocking, no packing, no SIMD: one dot product per output element, summed in k order.
//! This is the kernel to read first (the fast one in [`super`] computes the same thing with
//! cache-sized panels and a register-tiled micro-kernel), and the fast GEMM's test oracle. It
//! runs when the reference kernels are chosen ([`crate::cpu::Kernels::Reference`]).

use super::MatRef;
use crate::dtype::Float;

impl<T: Float> MatRef<'_, T> {
    /// Entry (i, j) of the operand (of the stored matrix's transpose when `trans`).
    #[inline]
    pub(crate) fn at(&self, i: usize, j: usize) -> T {
        if self.trans {
            self.data[j * self.ld + i]
        } else {
            self.data[i * self.ld + j]
        }
    }
}

/// `C (m x n) = A (m x k) · B (k x n)`, or `C += ...` when `accumulate`; C is contiguous
/// row-major.
pub(crate) fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: &MatRef<T>,
    b: &MatRef<T>,
    c: &mut [T],
    accumulate: bool,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = T::ZERO;
            for p in 0..k {
                s += a.at(i, p) * b.at(p, j);
            }
            let cij = &mut c[i * n + j];
            *cij = if accumulate { *cij + s } else { s };
        }
    }
}
