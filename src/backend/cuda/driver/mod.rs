//! The real driver (feature `cuda`): cust's primary context, one stream, the PTX modules of
//! kernels/*.cu and a cuBLAS handle per device. Every call's status is checked and returned as
//! an `Err` naming the call.

mod ptx;

use super::blas::ColMajorGemm;
use crate::dtype::Float;
use crate::{Error, Result};
use cublas_sys::{cublasHandle_t, cublasOperation_t, cublasStatus_t};
use cust::context::{Context, CurrentContext};
use cust::function::Function;
use cust::module::Module;
use cust::stream::{Stream, StreamFlags};
use cust::sys::{
    CUresult, cuMemAlloc_v2, cuMemFree_v2, cuMemcpyDtoDAsync_v2, cuMemcpyDtoHAsync_v2, cuMemcpyHtoDAsync_v2,
    cuMemsetD8Async, cudaError_enum,
};
use std::collections::HashMap;
use std::ffi::c_void;
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

struct Handle(cublasHandle_t);
// SAFETY: only used under the mutex, with the device's context bound.
unsafe impl Send for Handle {}

pub(crate) struct Driver {
    ctx: Context,
    stream: Stream,
    modules: HashMap<&'static str, Module>,
    functions: Mutex<HashMap<String, &'static Function<'static>>>,
    /// cuBLAS calls on one handle are serialised (a handle must not be used by two threads at
    /// once).
    blas: Mutex<Handle>,
}

/// A driver error as an [`Error`] naming the call (out-of-memory gets its own variant). Uses the
/// error's `Debug` name: cust's `Display` asks the driver for a string, which can fail.
fn cu_err(call: &str, e: cust::error::CudaError) -> Error {
    match e {
        cust::error::CudaError::OutOfMemory => Error::OutOfMemory {
            msg: format!("{call}: the GPU is out of memory"),
        },
        e => Error::device(format!("{call} failed: {e:?}")),
    }
}

/// Checks a raw driver status.
fn check(call: &str, r: CUresult) -> Result<()> {
    match r {
        cudaError_enum::CUDA_SUCCESS => Ok(()),
        cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY => Err(Error::OutOfMemory {
            msg: format!("{call}: the GPU is out of memory"),
        }),
        other => Err(Error::device(format!("{call} failed: CUDA error {other:?}"))),
    }
}

fn blas_check(call: &str, s: cublasStatus_t) -> Result<()> {
    match s {
        cublasStatus_t::CUBLAS_STATUS_SUCCESS => Ok(()),
        cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED => Err(Error::OutOfMemory {
            msg: format!("{call}: cuBLAS could not allocate GPU memory"),
        }),
        other => Err(Error::device(format!("{call} failed: {other:?}"))),
    }
}

impl Driver {
    pub(crate) fn init(ordinal: usize) -> Result<Self> {
        if let Err(e) = cust::init(cust::CudaFlags::empty()) {
            return Err(Error::device(format!(
                "no CUDA device: the driver's cuInit failed: {e:?}; Device::Cuda({ordinal}) is unavailable"
            )));
        }
        let count = cust::device::Device::num_devices().map_err(|e| cu_err("cuDeviceGetCount", e))? as usize;
        if ordinal >= count {
            return Err(Error::device(format!(
                "no CUDA device {ordinal}: this machine has {count} CUDA device(s)"
            )));
        }
        let dev = cust::device::Device::get_device(ordinal as u32).map_err(|e| cu_err("cuDeviceGet", e))?;
        let ctx = Context::new(dev).map_err(|e| cu_err("cuDevicePrimaryCtxRetain", e))?;
        CurrentContext::set_current(&ctx).map_err(|e| cu_err("cuCtxSetCurrent", e))?;
        let stream = Stream::new(StreamFlags::NON_BLOCKING, None).map_err(|e| cu_err("cuStreamCreate", e))?;
        let mut modules = HashMap::new();
        for (family, text) in ptx::MODULES {
            let m = Module::from_ptx(text, &[]).map_err(|e| {
                Error::device(format!(
                    "cuModuleLoadData of kernels/{family}.cu's PTX failed ({e:?}); if the driver is older \
                     than the nvcc that built it, rebuild with nvcc 13.0.x (see docs/cuda.md)"
                ))
            })?;
            modules.insert(*family, m);
        }
        let mut h: cublasHandle_t = std::ptr::null_mut();
        // SAFETY: plain cuBLAS calls with an out-pointer; the context is current.
        blas_check("cublasCreate", unsafe { cublas_sys::cublasCreate_v2(&mut h) })?;
        // cublas-sys declares its own opaque stream type: the same driver handle, cast.
        let s = stream.as_inner() as cublas_sys::cudaStream_t;
        blas_check("cublasSetStream", unsafe { cublas_sys::cublasSetStream_v2(h, s) })?;
        Ok(Driver {
            ctx,
            stream,
            modules,
            functions: Mutex::new(HashMap::new()),
            blas: Mutex::new(Handle(h)),
        })
    }

    pub(crate) fn bind(&self) -> Result<()> {
        CurrentContext::set_current(&self.ctx).map_err(|e| cu_err("cuCtxSetCurrent", e))
    }

    pub(crate) fn synchronize(&self, after: &str) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| cu_err(&format!("cuStreamSynchronize (after {after})"), e))
    }

    fn function(&self, family: &'static str, name: &str) -> Result<&'static Function<'static>> {
        let mut cache = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = cache.get(name) {
            return Ok(*f);
        }
        let module = self
            .modules
            .get(family)
            .ok_or_else(|| Error::device(format!("no kernel module {family}")))?;
        // SAFETY of the 'static: the modules live in the leaked `Gpu`, for the whole process.
        let module: &'static Module = unsafe { &*(module as *const Module) };
        let f = module
            .get_function(name)
            .map_err(|e| cu_err(&format!("cuModuleGetFunction({name})"), e))?;
        // One handle per kernel name for the life of the process (a few dozen).
        let f: &'static Function<'static> = Box::leak(Box::new(f));
        cache.insert(name.to_string(), f);
        Ok(f)
    }

    /// # Safety
    /// `args` point at live values of the kernel's parameter types.
    pub(crate) unsafe fn launch(
        &self,
        family: &'static str,
        name: &str,
        grid: u32,
        block: u32,
        args: &[*mut c_void],
    ) -> Result<()> {
        let f = self.function(family, name)?;
        // SAFETY: as the caller promises.
        unsafe { self.stream.launch(f, grid, block, 0, args) }.map_err(|e| cu_err(&format!("launch {name}"), e))
    }

    pub(crate) fn mem_alloc(&self, bytes: usize) -> Result<u64> {
        let mut ptr = 0u64;
        // SAFETY: plain driver call with an out-pointer.
        check(&format!("cuMemAlloc({bytes} bytes)"), unsafe {
            cuMemAlloc_v2(&mut ptr, bytes)
        })?;
        Ok(ptr)
    }

    /// # Safety
    /// `ptr` came from [`mem_alloc`](Self::mem_alloc) and nothing uses it any more.
    pub(crate) unsafe fn mem_free(&self, ptr: u64, _bytes: usize) {
        // SAFETY: as the caller promises.
        let _ = unsafe { cuMemFree_v2(ptr) };
    }

    /// # Safety
    /// `src` holds `bytes` readable bytes; `dst` is a device allocation of at least `bytes`.
    pub(crate) unsafe fn htod(&self, dst: u64, src: *const u8, bytes: usize) -> Result<()> {
        // SAFETY: as the caller promises; synchronised below, so `src` outlives the copy.
        check("cuMemcpyHtoDAsync", unsafe {
            cuMemcpyHtoDAsync_v2(dst, src.cast(), bytes, self.stream.as_inner())
        })?;
        self.synchronize("cuMemcpyHtoDAsync")
    }

    /// # Safety
    /// `dst` holds `bytes` writable bytes; `src` is a device allocation of at least `bytes`.
    pub(crate) unsafe fn dtoh(&self, dst: *mut u8, src: u64, bytes: usize) -> Result<()> {
        // SAFETY: as the caller promises; synchronised below, before `dst` is read.
        check("cuMemcpyDtoHAsync", unsafe {
            cuMemcpyDtoHAsync_v2(dst.cast(), src, bytes, self.stream.as_inner())
        })?;
        self.synchronize("cuMemcpyDtoHAsync")
    }

    /// # Safety
    /// Both are device allocations of at least `bytes`.
    pub(crate) unsafe fn dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        // SAFETY: as the caller promises; queued on the device's stream.
        check("cuMemcpyDtoDAsync", unsafe {
            cuMemcpyDtoDAsync_v2(dst, src, bytes, self.stream.as_inner())
        })
    }

    /// # Safety
    /// `dst` is a device allocation of at least `bytes`.
    pub(crate) unsafe fn memset0(&self, dst: u64, bytes: usize) -> Result<()> {
        // SAFETY: as the caller promises; queued on the device's stream.
        check("cuMemsetD8Async", unsafe {
            cuMemsetD8Async(dst, 0, bytes, self.stream.as_inner())
        })
    }

    /// One column-major strided-batched GEMM, `cublas{S,D}gemmStridedBatched` with the arguments
    /// of `g` (first operand at `a`, second at `b`).
    ///
    /// # Safety
    /// The pointers are device buffers sized for `g`.
    pub(crate) unsafe fn gemm<T: Float>(&self, g: &ColMajorGemm, a: u64, b: u64, c: u64) -> Result<()> {
        use cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        let op = |t: bool| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
        let h = self.blas.lock().unwrap_or_else(|e| e.into_inner());
        let status = if T::DTYPE == "f32" {
            let (alpha, beta) = (1.0f32, g.beta as f32);
            // SAFETY: as the caller promises.
            unsafe {
                cublasSgemmStridedBatched(
                    h.0,
                    op(g.transa),
                    op(g.transb),
                    g.m,
                    g.n,
                    g.k,
                    &alpha,
                    a as *const f32,
                    g.lda,
                    g.stride_a,
                    b as *const f32,
                    g.ldb,
                    g.stride_b,
                    &beta,
                    c as *mut f32,
                    g.ldc,
                    g.stride_c,
                    g.batch,
                )
            }
        } else {
            let (alpha, beta) = (1.0f64, g.beta);
            // SAFETY: as the caller promises.
            unsafe {
                cublasDgemmStridedBatched(
                    h.0,
                    op(g.transa),
                    op(g.transb),
                    g.m,
                    g.n,
                    g.k,
                    &alpha,
                    a as *const f64,
                    g.lda,
                    g.stride_a,
                    b as *const f64,
                    g.ldb,
                    g.stride_b,
                    &beta,
                    c as *mut f64,
                    g.ldc,
                    g.stride_c,
                    g.batch,
                )
            }
        };
        drop(h);
        blas_check(
            &format!("cublas{}gemmStridedBatched", if T::DTYPE == "f32" { "S" } else { "D" }),
            status,
        )
    }
}
