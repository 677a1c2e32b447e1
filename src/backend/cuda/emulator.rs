//! The host emulator (feature `cuda-emulator`): the driver interface of [`super::driver`]
//! implemented on the CPU, so that every CUDA launcher, every kernel of kernels/*.cu (compiled for
//! the host by build.rs, with kernels/host_emulation.h) and the row-major-to-cuBLAS GEMM mapping
//! run — and are tested by tests/cuda_ops.rs — on machines without a GPU.
//!
//! - Memory is host memory, "device pointers" are its addresses. Fresh allocations are filled
//!   with 0xFF bytes (NaN for floats), so a kernel that reads what nobody wrote shows up as NaN
//!   instead of a lucky zero. One emulated device (ordinal 0) with 8 GiB: larger requests are
//!   `Error::OutOfMemory`, as on a real GPU.
//! - A launch calls the kernel once as one block of one thread (grid-stride loops then cover
//!   every index, block reductions reduce one value): the index arithmetic and formulas run for
//!   real, the GPU's concurrency does not.
//! - GEMM is a plain reference of `cublas<t>gemmStridedBatched`'s column-major semantics (op
//!   flags, leading dimensions, batch strides, beta = 0 never reads C), written from cuBLAS's
//!   documentation: it checks the row-major mapping of [`super::blas::ColMajorGemm::of`].

use super::blas::ColMajorGemm;
use crate::dtype::Float;
use crate::{Error, Result};
use std::alloc::{Layout, alloc, dealloc};
use std::ffi::{CString, c_char, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

type Entry = unsafe extern "C" fn(*mut *mut c_void);

unsafe extern "C" {
    /// kernels/host_emulation.h: the host-compiled kernel registered under `name`, or null.
    fn smallgrad_host_kernel(name: *const c_char) -> Option<Entry>;
}

/// Emulated device memory.
const CAPACITY: usize = 8 << 30;
/// Alignment of every allocation (cuMemAlloc gives at least 256).
const ALIGN: usize = 256;

pub(crate) struct Driver {
    used: AtomicUsize,
}

fn layout(bytes: usize) -> Result<Layout> {
    Layout::from_size_align(bytes.max(1), ALIGN).map_err(|_| Error::OutOfMemory {
        msg: format!("cuMemAlloc({bytes} bytes): too large"),
    })
}

impl Driver {
    pub(crate) fn init(ordinal: usize) -> Result<Self> {
        if ordinal != 0 {
            return Err(Error::device(format!(
                "no CUDA device {ordinal}: the CUDA emulator has one device (0)"
            )));
        }
        Ok(Driver {
            used: AtomicUsize::new(0),
        })
    }

    pub(crate) fn bind(&self) -> Result<()> {
        Ok(())
    }

    pub(crate) fn synchronize(&self, _after: &str) -> Result<()> {
        Ok(())
    }

    /// # Safety
    /// `args` point at live values of the kernel's parameter types.
    pub(crate) unsafe fn launch(
        &self,
        _family: &'static str,
        name: &str,
        _grid: u32,
        _block: u32,
        args: &[*mut c_void],
    ) -> Result<()> {
        let c = CString::new(name).map_err(|_| Error::device(format!("bad kernel name {name:?}")))?;
        // SAFETY: a lookup in the host kernels' registry.
        let f = unsafe { smallgrad_host_kernel(c.as_ptr()) }
            .ok_or_else(|| Error::device(format!("cuModuleGetFunction({name}) failed: no such kernel")))?;
        // SAFETY: as the caller promises; the kernel reads exactly its parameters.
        unsafe { f(args.as_ptr() as *mut *mut c_void) };
        Ok(())
    }

    pub(crate) fn mem_alloc(&self, bytes: usize) -> Result<u64> {
        let oom = || Error::OutOfMemory {
            msg: format!("cuMemAlloc({bytes} bytes): the emulated GPU (8 GiB) is out of memory"),
        };
        let before = self.used.fetch_add(bytes, Ordering::SeqCst);
        if before.saturating_add(bytes) > CAPACITY {
            self.used.fetch_sub(bytes, Ordering::SeqCst);
            return Err(oom());
        }
        // SAFETY: a non-zero size with a valid alignment.
        let p = unsafe { alloc(layout(bytes)?) };
        if p.is_null() {
            self.used.fetch_sub(bytes, Ordering::SeqCst);
            return Err(oom());
        }
        // NaN-filled, so that reading what no kernel wrote is visible.
        // SAFETY: `p` holds `bytes` bytes.
        unsafe { p.write_bytes(0xFF, bytes) };
        Ok(p as u64)
    }

    /// # Safety
    /// `ptr` came from [`mem_alloc`](Self::mem_alloc) with the same `bytes`, and nothing uses it.
    pub(crate) unsafe fn mem_free(&self, ptr: u64, bytes: usize) {
        if let Ok(l) = layout(bytes) {
            // SAFETY: as the caller promises.
            unsafe { dealloc(ptr as *mut u8, l) };
            self.used.fetch_sub(bytes, Ordering::SeqCst);
        }
    }

    /// # Safety
    /// `src` holds `bytes` readable bytes; `dst` is an allocation of at least `bytes`.
    pub(crate) unsafe fn htod(&self, dst: u64, src: *const u8, bytes: usize) -> Result<()> {
        // SAFETY: as the caller promises.
        unsafe { std::ptr::copy_nonoverlapping(src, dst as *mut u8, bytes) };
        Ok(())
    }

    /// # Safety
    /// `dst` holds `bytes` writable bytes; `src` is an allocation of at least `bytes`.
    pub(crate) unsafe fn dtoh(&self, dst: *mut u8, src: u64, bytes: usize) -> Result<()> {
        // SAFETY: as the caller promises.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst, bytes) };
        Ok(())
    }

    /// # Safety
    /// Both are allocations of at least `bytes`.
    pub(crate) unsafe fn dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        // SAFETY: as the caller promises (distinct allocations).
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    /// # Safety
    /// `dst` is an allocation of at least `bytes`.
    pub(crate) unsafe fn memset0(&self, dst: u64, bytes: usize) -> Result<()> {
        // SAFETY: as the caller promises.
        unsafe { (dst as *mut u8).write_bytes(0, bytes) };
        Ok(())
    }

    /// `cublas<t>gemmStridedBatched` with alpha = 1: for each batch entry, column-major
    /// `C = beta C + op(A) op(B)` (`op(A)` m x k, `op(B)` k x n); element (r, c) of a column-major
    /// matrix with leading dimension ld is at `r + c * ld`.
    ///
    /// # Safety
    /// The pointers are allocations sized for `g`.
    pub(crate) unsafe fn gemm<T: Float>(&self, g: &ColMajorGemm, a: u64, b: u64, c: u64) -> Result<()> {
        let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
        let (lda, ldb, ldc) = (g.lda as usize, g.ldb as usize, g.ldc as usize);
        if lda < (if g.transa { k } else { m }).max(1) || ldb < (if g.transb { n } else { k }).max(1) || ldc < m.max(1)
        {
            return Err(Error::device(format!(
                "cublasGemmStridedBatched failed: CUBLAS_STATUS_INVALID_VALUE (leading dimensions of {g:?})"
            )));
        }
        let beta = T::from_f64(g.beta);
        for i in 0..g.batch as usize {
            let (a, b, c) = (
                (a as *const T).wrapping_offset(i as isize * g.stride_a as isize),
                (b as *const T).wrapping_offset(i as isize * g.stride_b as isize),
                (c as *mut T).wrapping_offset(i as isize * g.stride_c as isize),
            );
            for col in 0..n {
                for r in 0..m {
                    let mut acc = T::ZERO;
                    for p in 0..k {
                        // SAFETY: indices within the operands' extents, as cuBLAS reads them.
                        let (x, y) = unsafe {
                            (
                                *a.add(if g.transa { p + r * lda } else { r + p * lda }),
                                *b.add(if g.transb { col + p * ldb } else { p + col * ldb }),
                            )
                        };
                        acc += x * y;
                    }
                    // SAFETY: as above; beta = 0 never reads C (it may be uninitialised).
                    unsafe {
                        let dst = c.add(r + col * ldc);
                        *dst = if g.beta == 0.0 { acc } else { beta * *dst + acc };
                    }
                }
            }
        }
        Ok(())
    }
}
