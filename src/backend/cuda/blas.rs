//! GEMM on the device: the one BLAS call smallgrad needs, a (strided-batched) product of
//! row-major matrices, mapped onto cuBLAS's column-major `gemmStridedBatched`.
//!
//! cuBLAS is column-major. A row-major `m x n` matrix is, read column-major, its transpose; so
//! the row-major product `C = op(A) op(B)` is computed as the column-major product
//! `C^T = op(B)^T op(A)^T`: swap the operands, swap m and n, keep each operand's transpose flag.
//! The guide's chapter 5 checks this identity on the CPU; on the simulator (cuda-sim's cuBLAS,
//! written from cuBLAS's documentation: column-major, op flags, leading dimensions, batch
//! strides, argument checks) the CUDA suite checks [`ColMajorGemm::of`] against the CPU.

use super::Gpu;
use crate::dtype::Float;
use crate::{Error, Result};
use std::os::raw::c_int;

/// One row-major (batched) product `C_i = op(A_i) op(B_i) (+ C_i if accumulate)`: op(A) is
/// `m x k`, op(B) is `k x n`, C is `m x n`, all dense row-major; stride 0 shares a matrix
/// across the batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gemm {
    pub ta: bool,
    pub tb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub accumulate: bool,
}

impl Gemm {
    /// A single product (batch 1).
    pub(crate) fn single(ta: bool, tb: bool, m: usize, n: usize, k: usize) -> Self {
        Gemm {
            ta,
            tb,
            m,
            n,
            k,
            batch: 1,
            stride_a: 0,
            stride_b: 0,
            stride_c: 0,
            accumulate: false,
        }
    }
}

/// The arguments of `cublas<t>gemmStridedBatched` (alpha = 1): column-major
/// `C_i = beta C_i + op(A_i) op(B_i)`, op(A) `m x k`, op(B) `k x n`, leading dimensions and
/// batch strides in elements. Here the first operand is the row-major B and the second the
/// row-major A.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ColMajorGemm {
    pub transa: bool,
    pub transb: bool,
    pub m: c_int,
    pub n: c_int,
    pub k: c_int,
    pub lda: c_int,
    pub ldb: c_int,
    pub ldc: c_int,
    pub stride_a: i64,
    pub stride_b: i64,
    pub stride_c: i64,
    pub batch: c_int,
    pub beta: f64,
}

impl ColMajorGemm {
    /// The column-major call computing the row-major `g` (k >= 1, m, n, batch >= 1).
    pub(crate) fn of(g: &Gemm) -> Result<Self> {
        let int = |v: usize| {
            c_int::try_from(v).map_err(|_| Error::shape("matmul", format!("cuBLAS takes sizes below 2^31, got {v}")))
        };
        let (m, n, k) = (int(g.m)?, int(g.n)?, int(g.k)?);
        // Column-major C^T (n x m) = op(B)^T (n x k) . op(A)^T (k x m). The row-major B buffer
        // read column-major is B^T (n x k, ld n) when not transposed, else (k x n, ld k).
        Ok(ColMajorGemm {
            transa: g.tb,
            transb: g.ta,
            m: n,
            n: m,
            k,
            lda: if g.tb { k } else { n },
            ldb: if g.ta { m } else { k },
            ldc: n,
            stride_a: g.stride_b as i64,
            stride_b: g.stride_a as i64,
            stride_c: g.stride_c as i64,
            batch: int(g.batch)?,
            beta: if g.accumulate { 1.0 } else { 0.0 },
        })
    }
}

impl Gpu {
    /// Runs `g` on device pointers `a`, `b`, `c` (of element type `T`).
    pub(crate) fn gemm<T: Float>(&self, g: Gemm, a: u64, b: u64, c: u64) -> Result<()> {
        if g.m == 0 || g.n == 0 || g.batch == 0 {
            return Ok(());
        }
        if g.k == 0 {
            // An empty sum: C = 0, or C unchanged when accumulating (cuBLAS would reject the
            // zero leading dimension).
            if !g.accumulate {
                let len = (g.batch - 1) * g.stride_c + g.m * g.n;
                self.fill_raw::<T>(c, len, T::ZERO)?;
            }
            return Ok(());
        }
        let cm = ColMajorGemm::of(&g)?;
        // SAFETY: the callers size the buffers for this product; the operands swap (see above).
        unsafe { self.drv.gemm::<T>(&cm, b, a, c) }?;
        if self.sync_each {
            self.synchronize("gemm")?;
        }
        Ok(())
    }

    /// Fills `len` elements at `ptr` with `v`.
    pub(crate) fn fill_raw<T: Float>(&self, ptr: u64, len: usize, v: T) -> Result<()> {
        let n = len as i64;
        self.launch::<T>(
            "elementwise",
            "fill",
            len,
            &[super::arg(&ptr), super::arg(&n), super::float_arg(&v)],
        )
    }
}
