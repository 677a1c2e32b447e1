//! The CUDA backend's plumbing: one lazily created device state per GPU (a driver: context,
//! stream, modules, cuBLAS handle; plus the caching allocator), kernel launches and GEMMs.
//! Kernels are launched by the op families' `cuda.rs` files; the kernels themselves are in
//! kernels/*.cu.
//!
//! Two drivers sit under the same code (see docs/cuda.md):
//! - feature `cuda` ([`driver`]): the real one, cust (driver API) + cuBLAS. cust's primary
//!   context is made current at every entry point (launch, copy, allocation, free), since
//!   tensors move between threads; one stream per device carries every launch, copy and cuBLAS
//!   call, so stream order alone makes buffer reuse by the caching allocator safe; every status
//!   is checked and returned as an `Err` naming the call (out-of-memory is
//!   [`Error::OutOfMemory`]); `SMALLGRAD_CUDA_SYNC=1` synchronises after every launch.
//! - feature `cuda-emulator` ([`emulator`]): runs the same launchers on the CPU, against the
//!   kernels compiled for the host by a C++ compiler and a reference of cuBLAS's GEMM, so that
//!   the CUDA code path is executed (and tested) on machines without a GPU.

pub(crate) mod blas;
#[cfg(feature = "cuda")]
mod driver;
#[cfg(all(feature = "cuda-emulator", not(feature = "cuda")))]
mod emulator;
pub(crate) mod memory;

#[cfg(feature = "cuda")]
use driver::Driver;
#[cfg(all(feature = "cuda-emulator", not(feature = "cuda")))]
use emulator::Driver;

use crate::dtype::Float;
use crate::{Error, Result};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

pub(crate) use memory::DevBuf;

/// Threads per block of the launches (a power of two: the block reductions need it).
pub(crate) const BLOCK: u32 = 256;
/// Grid-size cap: kernels loop (grid-stride), so more blocks than this gain nothing.
const MAX_GRID: usize = 65_536;

/// Everything smallgrad keeps per GPU. Created on first use, never dropped (lives as long as
/// the process, as the primary context does).
pub(crate) struct Gpu {
    pub(crate) ordinal: usize,
    pub(crate) drv: Driver,
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
    let entry = map.entry(ordinal).or_insert_with(|| {
        let gpu = Gpu {
            ordinal,
            drv: Driver::init(ordinal)?,
            pool: memory::Pool::default(),
            sync_each: std::env::var("SMALLGRAD_CUDA_SYNC").is_ok_and(|v| v == "1"),
        };
        Ok(&*Box::leak(Box::new(gpu)))
    });
    match entry {
        Ok(g) => {
            g.bind()?;
            Ok(*g)
        }
        Err(e) => Err(e.clone()),
    }
}

/// The GPU holding `t` (an `Err` for a CPU tensor: launchers are only called for GPU tensors).
pub(crate) fn gpu_of<T: Float>(t: &crate::Tensor<T>) -> Result<&'static Gpu> {
    match t.device() {
        crate::Device::Cuda(n) => gpu(n),
        crate::Device::Cpu => Err(Error::device(format!(
            "a CUDA launcher was handed a CPU tensor of shape {:?}",
            t.shape()
        ))),
    }
}

impl Gpu {
    /// Makes this device's context current on the calling thread.
    pub(crate) fn bind(&self) -> Result<()> {
        self.drv.bind()
    }

    /// Waits for all work queued on this device; an asynchronous fault surfaces here.
    pub(crate) fn synchronize(&self, after: &str) -> Result<()> {
        self.drv.synchronize(after)
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
        self.bind()?;
        // SAFETY: the callers pass pointers to live values of the kernel's parameter types.
        unsafe { self.drv.launch(family, &full, grid, BLOCK, args) }?;
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

/// Public view of the CUDA backend for users and tests (features `cuda`, `cuda-emulator`).
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
