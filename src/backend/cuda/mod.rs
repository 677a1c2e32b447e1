//! The CUDA backend's plumbing: one lazily created device state per GPU (a [`driver`]: context,
//! stream, kernel modules, cuBLAS handle; plus the caching allocator of [`memory`]), kernel
//! launches and GEMMs. Kernels are launched by the op families' `cuda.rs` files; the kernels
//! themselves are in kernels/*.cu.
//!
//! - The driver's context is made current for every call (launch, copy, allocation, free) and
//!   the caller's restored after it, since tensors move between threads.
//! - One stream per device carries every launch, copy and cuBLAS call, so stream order alone
//!   makes buffer reuse by the caching allocator safe.
//! - Every status is checked and returned as an `Err` naming the call (out-of-memory is
//!   [`Error::OutOfMemory`]); `SMALLGRAD_CUDA_SYNC=1` synchronises after every launch, so that
//!   an asynchronous fault names the kernel that caused it.
//! - Without a GPU, CI runs all of this against cuda-sim (`cuda-sim/`, docs/cuda.md): simulated
//!   `libcuda.so.1` and `libcublas.so.13` that run every thread of every block and check races,
//!   bounds and contexts.

pub(crate) mod blas;
mod driver;
pub(crate) mod memory;

use driver::Driver;
pub(crate) use driver::KernelArg;
use std::marker::PhantomData;

use crate::dtype::Float;
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

pub(crate) use memory::DevBuf;

/// Threads per block of the launches (a power of two: the block reductions need it).
pub(crate) const BLOCK: u32 = 256;
/// Shortest contiguous row that softmax and norm give a block of its own (shorter rows run a
/// thread per row: for ten-class logits that is faster).
pub(crate) const ROW_BLOCK_MIN: usize = 64;
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

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

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
            pool: memory::Pool::new(!env_flag("SMALLGRAD_CUDA_NO_CACHING")),
            sync_each: env_flag("SMALLGRAD_CUDA_SYNC"),
        };
        Ok(&*Box::leak(Box::new(gpu)))
    });
    entry.clone()
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
    /// Waits for all work queued on this device; an asynchronous fault surfaces here.
    pub(crate) fn synchronize(&self, after: &str) -> Result<()> {
        self.drv.synchronize(after)
    }

    /// Launches `family`'s kernel `name_{f32|f64}` over `threads` threads (grid-stride kernels:
    /// the grid is capped), with `args` made by [`arg`] / [`float_arg`] in the kernel's
    /// parameter order (checked against its PTX).
    pub(crate) fn launch<T: Float>(
        &self,
        family: &'static str,
        name: &'static str,
        threads: usize,
        args: &[KernelArg<T>],
    ) -> Result<()> {
        let grid = threads.div_ceil(BLOCK as usize).clamp(1, MAX_GRID) as u32;
        self.launch_grid::<T>(family, name, grid, args)
    }

    /// Launches with an explicit number of blocks of [`BLOCK`] threads (the one-block-per-row
    /// reductions).
    pub(crate) fn launch_grid<T: Float>(
        &self,
        family: &'static str,
        name: &'static str,
        grid: u32,
        args: &[KernelArg<T>],
    ) -> Result<()> {
        self.drv.launch(family, name, grid, BLOCK, args)?;
        if self.sync_each {
            self.synchronize(&format!("{name}_{}", T::DTYPE))?;
        }
        Ok(())
    }
}

/// The non-float types kernels take: `long long` (i64), device pointers (u64) and the
/// `#[repr(C)]` geometry structs. Floats go through [`float_arg`] only, whose argument must be
/// the launch's `T`: an `f64` cannot reach an `f32` kernel's float parameter (nor an `i32` a
/// `long long`) — it does not compile. What types cannot see (a kernel whose parameters changed
/// in its .cu) the launch checks against the PTX.
pub(crate) trait Param: Copy {}
impl Param for i64 {}
impl Param for u64 {}

/// An integer, pointer or struct argument of a launch over `T`.
pub(crate) fn arg<A: Param, T: Float>(v: &A) -> KernelArg<T> {
    KernelArg {
        ptr: (v as *const A).cast(),
        size: size_of::<A>(),
        _t: PhantomData,
    }
}

/// A float argument: of the launch's element type `T` (`f32` or `f64`), nothing else.
pub(crate) fn float_arg<T: Float>(v: &T) -> KernelArg<T> {
    KernelArg {
        ptr: (v as *const T).cast(),
        size: size_of::<T>(),
        _t: PhantomData,
    }
}

/// The `Strided` struct of kernels/common.cuh: up to 8 dims of a strided read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Strided {
    rank: i64,
    shape: [i64; 8],
    stride: [i64; 8],
}
impl Param for Strided {}

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

#[cfg(test)]
mod tests {
    use super::{arg, float_arg, gpu};

    #[test]
    fn launches_check_their_arguments_against_the_ptx() {
        let Ok(g) = gpu(0) else {
            println!("no CUDA device: skipping launches_check_their_arguments_against_the_ptx");
            return;
        };
        let buf = g.alloc::<f32>(4).unwrap();
        let (p, n, v) = (buf.ptr(), 4i64, 2.0f32);
        let e = g
            .launch::<f32>("elementwise", "fill", 4, &[arg(&p), arg(&n)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fill_f32: the kernel takes 3 parameters, the launcher passed 2"),
            "{e}"
        );
        // an i64 where fill_f32 takes a float (4 bytes)
        let e = g
            .launch::<f32>("elementwise", "fill", 4, &[arg(&p), arg(&n), arg(&n)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("parameter 2 is 4 bytes in the PTX, the launcher passed 8 bytes"),
            "{e}"
        );
        let e = g
            .launch::<f32>("elementwise", "no_such_kernel", 4, &[arg(&p)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no kernel no_such_kernel_f32 in the PTX of kernels/elementwise.cu"),
            "{e}"
        );
        g.launch::<f32>("elementwise", "fill", 4, &[arg(&p), arg(&n), float_arg(&v)])
            .unwrap();
        assert_eq!(g.download(&buf).unwrap(), vec![2.0; 4]);
    }
}

/// Public view of the CUDA backend for users, tests and benches (feature `cuda`).
pub mod public {
    use crate::{Device, Result};
    use std::sync::atomic::Ordering;

    /// Counters of a device's caching allocator.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct MemoryStats {
        /// `cuMemAlloc` calls made so far (a warm training loop makes none).
        pub device_allocs: u64,
        /// `cuMemFree` calls made so far (after an out-of-memory retry, or with
        /// `SMALLGRAD_CUDA_NO_CACHING=1`).
        pub device_frees: u64,
        /// Bytes held by live tensors (rounded up to the allocator's size classes).
        pub bytes_in_use: u64,
        /// Bytes cached in free lists, ready for reuse.
        pub bytes_cached: u64,
        /// The most `bytes_in_use` ever reached.
        pub peak_bytes_in_use: u64,
    }

    /// How many driver and cuBLAS calls of each kind smallgrad has made on a device, counted
    /// where it makes them (so they are the same on a GPU and on the simulator). For counting
    /// what a training step costs; see docs/cuda.md.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Counters {
        /// Kernel launches (`cuLaunchKernel`).
        pub launches: u64,
        /// cuBLAS GEMM calls.
        pub cublas_calls: u64,
        /// Stream synchronisations (`cuStreamSynchronize`), the waits of uploads and downloads
        /// included.
        pub synchronizations: u64,
        /// Host-to-device copies, and their bytes.
        pub h2d_copies: u64,
        /// Bytes of those copies.
        pub h2d_bytes: u64,
        /// Device-to-host copies (every `to_vec`, `item`, ...).
        pub d2h_copies: u64,
        /// Bytes of those copies.
        pub d2h_bytes: u64,
        /// Device-to-device copies.
        pub d2d_copies: u64,
        /// Bytes of those copies.
        pub d2d_bytes: u64,
        /// Memsets (zero-filled buffers).
        pub memsets: u64,
        /// `cuMemAlloc` calls.
        pub device_allocs: u64,
        /// `cuMemFree` calls.
        pub device_frees: u64,
    }

    impl Counters {
        /// The calls made between `earlier` and `self` (two readings of [`counters`] on one
        /// device, `earlier` first): what a piece of work asked of the driver.
        ///
        /// ```no_run
        /// # use smallgrad::{Device, Tensor};
        /// let dev = Device::Cuda(0);
        /// let before = smallgrad::cuda::counters(dev)?;
        /// let _y = Tensor::<f32>::ones(&[1000], dev)?.exp()?;
        /// let step = smallgrad::cuda::counters(dev)?.since(&before);
        /// assert_eq!(step.synchronizations, 0); // nothing waited for the GPU
        /// # Ok::<(), smallgrad::Error>(())
        /// ```
        pub fn since(&self, earlier: &Counters) -> Counters {
            Counters {
                launches: self.launches - earlier.launches,
                cublas_calls: self.cublas_calls - earlier.cublas_calls,
                synchronizations: self.synchronizations - earlier.synchronizations,
                h2d_copies: self.h2d_copies - earlier.h2d_copies,
                h2d_bytes: self.h2d_bytes - earlier.h2d_bytes,
                d2h_copies: self.d2h_copies - earlier.d2h_copies,
                d2h_bytes: self.d2h_bytes - earlier.d2h_bytes,
                d2d_copies: self.d2d_copies - earlier.d2d_copies,
                d2d_bytes: self.d2d_bytes - earlier.d2d_bytes,
                memsets: self.memsets - earlier.memsets,
                device_allocs: self.device_allocs - earlier.device_allocs,
                device_frees: self.device_frees - earlier.device_frees,
            }
        }
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
        Ok(g.pool.stats(&g.drv.counters))
    }

    /// The call counters of `device` since its first use (initialising it if needed).
    pub fn counters(device: Device) -> Result<Counters> {
        let c = &super::gpu(ordinal(device)?)?.drv.counters;
        let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Ok(Counters {
            launches: r(&c.launches),
            cublas_calls: r(&c.cublas),
            synchronizations: r(&c.syncs),
            h2d_copies: r(&c.h2d),
            h2d_bytes: r(&c.h2d_bytes),
            d2h_copies: r(&c.d2h),
            d2h_bytes: r(&c.d2h_bytes),
            d2d_copies: r(&c.d2d),
            d2d_bytes: r(&c.d2d_bytes),
            memsets: r(&c.memsets),
            device_allocs: r(&c.allocs),
            device_frees: r(&c.frees),
        })
    }

    /// Lets f32 matrix products on `device` (matmul, convolutions, linear layers) use TF32
    /// tensor cores (`CUBLAS_TF32_TENSOR_OP_MATH`), or turns that off again. Off by default.
    ///
    /// Precision: TF32 rounds each f32 input of a product to a 10-bit mantissa (relative error
    /// up to about 5e-4 per input, against 6e-8 for f32) and accumulates in f32, so results
    /// differ from the CPU's at the 1e-3 level; worth it for training speed on Ampere and
    /// later GPUs (PyTorch's `torch.backends.cuda.matmul.allow_tf32`), never for checking
    /// gradients. f64 products are never affected.
    pub fn set_tf32(device: Device, on: bool) -> Result<()> {
        let g = super::gpu(ordinal(device)?)?;
        g.drv.tf32.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// Whether f32 products on `device` may use TF32 ([`set_tf32`]).
    pub fn tf32(device: Device) -> Result<bool> {
        Ok(super::gpu(ordinal(device)?)?.drv.tf32.load(Ordering::Relaxed))
    }

    /// Waits until all queued work on `device` is done (for timing); surfaces asynchronous errors.
    pub fn synchronize(device: Device) -> Result<()> {
        super::gpu(ordinal(device)?)?.synchronize("cuda::synchronize")
    }
}
