//! The CUDA backend's plumbing (feature `cuda`): one lazily created context, stream, cuBLAS
//! handle and caching allocator per device, module loading and kernel launches. Kernels are
//! launched by the op families' `cuda.rs` files; the kernels themselves are in kernels/*.cu.
//!
//! - Context: cust's primary context of the device (`Context::new`), made current at every entry
//!   point (launch, copy, allocation, free) since tensors move between threads.
//! - One stream per device carries every launch, copy and cuBLAS call, so stream order alone
//!   makes buffer reuse by the caching allocator safe; host copies synchronise that stream.
//! - Every CUDA and cuBLAS status is checked and returned as an `Err` naming the call;
//!   out-of-memory is [`Error::OutOfMemory`]. `SMALLGRAD_CUDA_SYNC=1` synchronises after every
//!   launch, so that an asynchronous fault names the kernel that caused it.

pub(crate) mod blas;
pub(crate) mod memory;
mod ptx;

use crate::dtype::Float;
use crate::{Error, Result};
use cust::context::{Context, CurrentContext};
use cust::function::Function;
use cust::module::Module;
use cust::stream::{Stream, StreamFlags};
use cust::sys::{CUresult, cudaError_enum};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

pub(crate) use memory::DevBuf;

/// Threads per block of the elementwise launches.
pub(crate) const BLOCK: u32 = 256;
/// Grid-size cap: kernels loop (grid-stride), so more blocks than this gain nothing.
const MAX_GRID: usize = 65_536;

/// Everything smallgrad keeps per GPU. Created on first use, never dropped (lives as long as
/// the process, as the primary context does).
pub(crate) struct Gpu {
    pub(crate) ordinal: usize,
    ctx: Context,
    stream: Stream,
    modules: HashMap<&'static str, Module>,
    functions: Mutex<HashMap<String, &'static Function<'static>>>,
    pub(crate) blas: blas::Blas,
    pub(crate) pool: memory::Pool,
    sync_each: bool,
}

static GPUS: OnceLock<Mutex<HashMap<usize, Result<&'static Gpu>>>> = OnceLock::new();

/// The GPU `ordinal`, initialised on first use (an `Err` saying why when there is none: no
/// driver device, ordinal out of range, PTX rejected by the driver, ...). The outcome is
/// remembered, so a missing GPU costs one probe per process.
pub(crate) fn gpu(ordinal: usize) -> Result<&'static Gpu> {
    let map = GPUS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    let entry = map.entry(ordinal).or_insert_with(|| init(ordinal));
    match entry {
        Ok(g) => {
            g.bind()?;
            Ok(*g)
        }
        Err(e) => Err(e.clone()),
    }
}

fn init(ordinal: usize) -> Result<&'static Gpu> {
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
    let blas = blas::Blas::new(stream.as_inner())?;
    let gpu = Gpu {
        ordinal,
        ctx,
        stream,
        modules,
        functions: Mutex::new(HashMap::new()),
        blas,
        pool: memory::Pool::default(),
        sync_each: std::env::var("SMALLGRAD_CUDA_SYNC").is_ok_and(|v| v == "1"),
    };
    Ok(Box::leak(Box::new(gpu)))
}

/// A driver error as an [`Error`] naming the call (out-of-memory gets its own variant). Uses the
/// error's `Debug` name: cust's `Display` asks the driver for a string, which can fail.
pub(crate) fn cu_err(call: &str, e: cust::error::CudaError) -> Error {
    match e {
        cust::error::CudaError::OutOfMemory => Error::OutOfMemory {
            msg: format!("{call}: the GPU is out of memory"),
        },
        e => Error::device(format!("{call} failed: {e:?}")),
    }
}

/// Checks a raw driver status.
pub(crate) fn check(call: &str, r: CUresult) -> Result<()> {
    match r {
        cudaError_enum::CUDA_SUCCESS => Ok(()),
        cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY => Err(Error::OutOfMemory {
            msg: format!("{call}: the GPU is out of memory"),
        }),
        other => Err(Error::device(format!("{call} failed: CUDA error {other:?}"))),
    }
}

impl Gpu {
    /// Makes this device's context current on the calling thread.
    pub(crate) fn bind(&self) -> Result<()> {
        CurrentContext::set_current(&self.ctx).map_err(|e| cu_err("cuCtxSetCurrent", e))
    }

    /// The raw stream handle (every operation of this device goes on it).
    pub(crate) fn stream(&self) -> cust::sys::CUstream {
        self.stream.as_inner()
    }

    /// Waits for all work queued on this device's stream; an asynchronous fault surfaces here.
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
        // SAFETY of the 'static: the modules live in this leaked `Gpu`, for the whole process.
        let module: &'static Module = unsafe { &*(module as *const Module) };
        let f = module
            .get_function(name)
            .map_err(|e| cu_err(&format!("cuModuleGetFunction({name})"), e))?;
        // One handle per kernel name for the life of the process (a few dozen).
        let f: &'static Function<'static> = Box::leak(Box::new(f));
        cache.insert(name.to_string(), f);
        Ok(f)
    }

    /// Launches `family`'s kernel `name_{f32|f64}` over `threads` threads (grid-stride kernels:
    /// the grid is capped), with `args` pointing at values whose types match the kernel's
    /// parameters exactly (use [`arg`]).
    pub(crate) fn launch<T: Float>(
        &self,
        family: &'static str,
        name: &str,
        threads: usize,
        args: &[*mut c_void],
    ) -> Result<()> {
        let grid = threads.div_ceil(BLOCK as usize).clamp(1, MAX_GRID) as u32;
        self.launch_grid::<T>(family, name, grid, args)
    }

    /// Launches with an explicit number of blocks of [`BLOCK`] threads (the one-block-per-row
    /// reductions).
    pub(crate) fn launch_grid<T: Float>(
        &self,
        family: &'static str,
        name: &str,
        grid: u32,
        args: &[*mut c_void],
    ) -> Result<()> {
        let full = format!("{name}_{}", T::DTYPE);
        let f = self.function(family, &full)?;
        self.bind()?;
        // SAFETY: the callers pass pointers to live values of the kernel's parameter types.
        unsafe { self.stream.launch(f, grid, BLOCK, 0, args) }.map_err(|e| cu_err(&format!("launch {full}"), e))?;
        if self.sync_each {
            self.synchronize(&full)?;
        }
        Ok(())
    }
}

/// A kernel argument: the types kernels take (`long long`, device pointers, `float`, `double`,
/// and the `#[repr(C)]` geometry structs). Anything else fails to compile, so an `i32` or `usize`
/// cannot slip into a `long long` slot.
pub(crate) trait KernelArg {}
impl KernelArg for i64 {}
impl KernelArg for u64 {}
impl KernelArg for f32 {}
impl KernelArg for f64 {}

/// A pointer to a kernel argument, for [`Gpu::launch`].
pub(crate) fn arg<A: KernelArg>(v: &A) -> *mut c_void {
    v as *const A as *mut c_void
}

/// A pointer to a float kernel argument (`T` is `f32` or `f64`, the kernels' `T`).
pub(crate) fn float_arg<T: Float>(v: &T) -> *mut c_void {
    v as *const T as *mut c_void
}

/// The `Strided` struct of kernels/common.cuh: up to 8 dims of a strided read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Strided {
    rank: i64,
    shape: [i64; 8],
    stride: [i64; 8],
}
impl KernelArg for Strided {}

impl Strided {
    /// `Err` past 8 dims (the kernels' limit).
    pub(crate) fn new(op: &'static str, shape: &[usize], stride: &[usize]) -> Result<Self> {
        if shape.len() > 8 {
            return Err(Error::shape(
                op,
                format!("the CUDA kernels take at most 8 dims, got shape {shape:?}"),
            ));
        }
        let mut s = Strided {
            rank: shape.len() as i64,
            ..Default::default()
        };
        for d in 0..shape.len() {
            s.shape[d] = shape[d] as i64;
            s.stride[d] = stride[d] as i64;
        }
        Ok(s)
    }
}

/// Public view of the CUDA backend for users and tests (feature `cuda`).
pub mod public {
    use crate::{Device, Result};

    /// Counters of a device's caching allocator.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct MemoryStats {
        /// `cuMemAlloc` calls made so far (a warm training loop makes none).
        pub device_allocs: u64,
        /// Bytes held by live tensors (rounded up to the allocator's size classes).
        pub bytes_in_use: u64,
        /// Bytes cached in free lists, ready for reuse.
        pub bytes_cached: u64,
    }

    fn ordinal(device: Device) -> Result<usize> {
        match device {
            Device::Cuda(n) => Ok(n),
            Device::Cpu => Err(crate::Error::device(
                "a CUDA function was given Device::Cpu".to_string(),
            )),
        }
    }

    /// The allocator counters of `device` (initialising it if needed).
    pub fn memory_stats(device: Device) -> Result<MemoryStats> {
        let g = super::gpu(ordinal(device)?)?;
        Ok(g.pool.stats())
    }

    /// Waits until all queued work on `device` is done (for timing); surfaces asynchronous errors.
    pub fn synchronize(device: Device) -> Result<()> {
        super::gpu(ordinal(device)?)?.synchronize("cuda::synchronize")
    }
}
