//! cuBLAS: one handle per device, bound to the device's stream, and the one call smallgrad
//! needs, a (strided-batched) GEMM on row-major matrices.
//!
//! cuBLAS is column-major. A row-major `m x n` matrix is, read column-major, its transpose; so
//! the row-major product `C = op(A) op(B)` is computed as the column-major product
//! `C^T = op(B)^T op(A)^T`: swap the operands, swap m and n, keep each operand's transpose flag.
//! The guide's chapter 5 checks this identity on the CPU.

use super::Gpu;
use crate::dtype::Float;
use crate::{Error, Result};
use cublas_sys::{cublasHandle_t, cublasOperation_t, cublasStatus_t};
use std::os::raw::c_int;
use std::sync::Mutex;

unsafe extern "C" {
    // Present in cuBLAS >= 8 (and 13); not declared by cublas-sys 0.1.
    fn cublasSgemmStridedBatched(
        handle: cublasHandle_t,
        transa: cublasOperation_t,
        transb: cublasOperation_t,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: *const f32,
        a: *const f32,
        lda: c_int,
        stride_a: i64,
        b: *const f32,
        ldb: c_int,
        stride_b: i64,
        beta: *const f32,
        c: *mut f32,
        ldc: c_int,
        stride_c: i64,
        batch: c_int,
    ) -> cublasStatus_t;
    fn cublasDgemmStridedBatched(
        handle: cublasHandle_t,
        transa: cublasOperation_t,
        transb: cublasOperation_t,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: *const f64,
        a: *const f64,
        lda: c_int,
        stride_a: i64,
        b: *const f64,
        ldb: c_int,
        stride_b: i64,
        beta: *const f64,
        c: *mut f64,
        ldc: c_int,
        stride_c: i64,
        batch: c_int,
    ) -> cublasStatus_t;
}

/// A device's cuBLAS handle. cuBLAS calls on one handle are serialised by the mutex (a handle
/// must not be used by two threads at once).
pub(crate) struct Blas {
    handle: Mutex<Handle>,
}

struct Handle(cublasHandle_t);
// SAFETY: only used under the mutex, with the device's context bound.
unsafe impl Send for Handle {}

fn blas_check(call: &str, s: cublasStatus_t) -> Result<()> {
    match s {
        cublasStatus_t::CUBLAS_STATUS_SUCCESS => Ok(()),
        cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED => Err(Error::OutOfMemory {
            msg: format!("{call}: cuBLAS could not allocate GPU memory"),
        }),
        other => Err(Error::device(format!("{call} failed: {other:?}"))),
    }
}

impl Blas {
    pub(crate) fn new(stream: cust::sys::CUstream) -> Result<Self> {
        let mut h: cublasHandle_t = std::ptr::null_mut();
        // SAFETY: plain cuBLAS calls with an out-pointer; the context is current (init).
        blas_check("cublasCreate", unsafe { cublas_sys::cublasCreate_v2(&mut h) })?;
        // cublas-sys declares its own opaque stream type: the same driver handle, cast.
        let s = stream as cublas_sys::cudaStream_t;
        blas_check("cublasSetStream", unsafe { cublas_sys::cublasSetStream_v2(h, s) })?;
        Ok(Blas {
            handle: Mutex::new(Handle(h)),
        })
    }
}

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

impl Gpu {
    /// Runs `g` on device pointers `a`, `b`, `c` (of element type `T`).
    pub(crate) fn gemm<T: Float>(&self, g: Gemm, a: u64, b: u64, c: u64) -> Result<()> {
        if g.m == 0 || g.n == 0 || g.batch == 0 {
            return Ok(());
        }
        let int = |v: usize| {
            c_int::try_from(v).map_err(|_| Error::shape("matmul", format!("cuBLAS takes sizes below 2^31, got {v}")))
        };
        let (m, n, k, batch) = (int(g.m)?, int(g.n)?, int(g.k)?, int(g.batch)?);
        if g.k == 0 {
            // An empty sum: C = 0, or C unchanged when accumulating (cuBLAS would reject the
            // zero leading dimension).
            if !g.accumulate {
                let len = (g.batch - 1) * g.stride_c + g.m * g.n;
                self.fill_raw::<T>(c, len, T::ZERO)?;
            }
            return Ok(());
        }
        use cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        let op = |t: bool| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
        // Column-major C^T (n x m) = op(B)^T (n x k) . op(A)^T (k x m).
        let ldb = if g.tb { k } else { n };
        let lda = if g.ta { m } else { k };
        let (sa, sb, sc) = (g.stride_a as i64, g.stride_b as i64, g.stride_c as i64);
        self.bind()?;
        let h = self.blas.handle.lock().unwrap_or_else(|e| e.into_inner());
        let status = if T::DTYPE == "f32" {
            let (alpha, beta) = (1.0f32, if g.accumulate { 1.0f32 } else { 0.0 });
            // SAFETY: pointers to device buffers the caller sized for this product.
            unsafe {
                cublasSgemmStridedBatched(
                    h.0,
                    op(g.tb),
                    op(g.ta),
                    n,
                    m,
                    k,
                    &alpha,
                    b as *const f32,
                    ldb,
                    sb,
                    a as *const f32,
                    lda,
                    sa,
                    &beta,
                    c as *mut f32,
                    n,
                    sc,
                    batch,
                )
            }
        } else {
            let (alpha, beta) = (1.0f64, if g.accumulate { 1.0f64 } else { 0.0 });
            // SAFETY: as above.
            unsafe {
                cublasDgemmStridedBatched(
                    h.0,
                    op(g.tb),
                    op(g.ta),
                    n,
                    m,
                    k,
                    &alpha,
                    b as *const f64,
                    ldb,
                    sb,
                    a as *const f64,
                    lda,
                    sa,
                    &beta,
                    c as *mut f64,
                    n,
                    sc,
                    batch,
                )
            }
        };
        drop(h);
        blas_check(
            &format!("cublas{}gemmStridedBatched", if T::DTYPE == "f32" { "S" } else { "D" }),
            status,
        )?;
        if self.sync_each {
            self.synchronize("cublas gemm")?;
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
