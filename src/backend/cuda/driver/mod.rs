//! The CUDA driver and cuBLAS behind one GPU: its primary context, one stream, the PTX modules of
//! kernels/*.cu with their parameter lists, a cuBLAS handle bound to the stream, a pinned staging
//! buffer for downloads, and counters of every call. Every status is checked and returned as an
//! `Err` naming the call (out of memory as [`Error::OutOfMemory`]).
//!
//! Contexts: a driver context is current per host thread. Every method here makes this GPU's
//! context current for the call only ([`Driver::enter`]: pushed if another one, or none, was
//! current, and popped again), so a call from any thread works — rayon workers included — and
//! the caller's own current context is left as it was.

mod ptx;
mod sys;

use super::blas::ColMajorGemm;
use crate::dtype::Float;
use crate::{Error, Result};
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_int, c_void};
use std::marker::PhantomData;
use std::ptr::null_mut;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use sys::*;

/// A driver error as an [`Error`] naming the call, with the driver's own name and description
/// of the code (asked at run time, so a code newer than this crate is still named).
pub(crate) fn cu_err(call: &str, code: CuResult) -> Error {
    if code == CUDA_ERROR_OUT_OF_MEMORY {
        return Error::OutOfMemory {
            msg: format!("{call}: the GPU is out of memory"),
        };
    }
    Error::device(format!("{call} failed: {}", describe(code)))
}

/// "CUDA_ERROR_NAME (code): description", or "CUDA error code" when the driver does not know it.
fn describe(code: CuResult) -> String {
    let mut name: *const std::ffi::c_char = std::ptr::null();
    let mut text: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: out-pointers; the driver returns static strings (or null and an error).
    let (rn, rt) = unsafe { (cuGetErrorName(code, &mut name), cuGetErrorString(code, &mut text)) };
    let read = |r: CuResult, p: *const std::ffi::c_char| {
        // SAFETY: a NUL-terminated string from the driver, when it says so.
        (r == CUDA_SUCCESS && !p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    match (read(rn, name), read(rt, text)) {
        (Some(n), Some(t)) => format!("{n} ({code}): {t}"),
        (Some(n), None) => format!("{n} ({code})"),
        _ => format!("CUDA error {code} (a code this driver has no name for)"),
    }
}

fn check(call: &str, code: CuResult) -> Result<()> {
    if code == CUDA_SUCCESS {
        Ok(())
    } else {
        Err(cu_err(call, code))
    }
}

fn blas_name(s: BlasStatus) -> String {
    match s {
        1 => "CUBLAS_STATUS_NOT_INITIALIZED".into(),
        3 => "CUBLAS_STATUS_ALLOC_FAILED".into(),
        7 => "CUBLAS_STATUS_INVALID_VALUE".into(),
        8 => "CUBLAS_STATUS_ARCH_MISMATCH".into(),
        11 => "CUBLAS_STATUS_MAPPING_ERROR".into(),
        13 => "CUBLAS_STATUS_EXECUTION_FAILED".into(),
        14 => "CUBLAS_STATUS_INTERNAL_ERROR".into(),
        15 => "CUBLAS_STATUS_NOT_SUPPORTED".into(),
        16 => "CUBLAS_STATUS_LICENSE_ERROR".into(),
        other => format!("cuBLAS status {other} (unknown to smallgrad)"),
    }
}

fn blas_check(call: &str, s: BlasStatus) -> Result<()> {
    match s {
        CUBLAS_STATUS_SUCCESS => Ok(()),
        CUBLAS_STATUS_ALLOC_FAILED => Err(Error::OutOfMemory {
            msg: format!("{call}: cuBLAS could not allocate GPU memory"),
        }),
        other => Err(Error::device(format!("{call} failed: {} ({other})", blas_name(other)))),
    }
}

/// A kernel's function handle and the byte size of each parameter (from its PTX).
struct Kernel {
    func: CuFunction,
    params: Vec<usize>,
}

/// One argument of a launch of a kernel over `T`: where its value is and how many bytes it has
/// (made by `backend::cuda::{arg, float_arg}`; the `T` keeps an `f64` out of an `f32` kernel).
pub(crate) struct KernelArg<T> {
    pub(crate) ptr: *const c_void,
    pub(crate) size: usize,
    pub(crate) _t: PhantomData<T>,
}

impl<T> Clone for KernelArg<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for KernelArg<T> {}

/// Most parameters of any kernel in kernels/*.cu (checked at launch).
const MAX_PARAMS: usize = 24;

/// Counts of the driver and cuBLAS calls made on one GPU (see [`super::public::Counters`]).
#[derive(Default)]
pub(crate) struct CallCounters {
    pub(crate) launches: AtomicU64,
    pub(crate) cublas: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) h2d: AtomicU64,
    pub(crate) h2d_bytes: AtomicU64,
    pub(crate) d2h: AtomicU64,
    pub(crate) d2h_bytes: AtomicU64,
    pub(crate) d2d: AtomicU64,
    pub(crate) d2d_bytes: AtomicU64,
    pub(crate) memsets: AtomicU64,
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
}

fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

/// Pinned host memory that downloads go through (`cuMemAllocHost`), grown as needed.
struct Staging {
    ptr: *mut c_void,
    bytes: usize,
}

/// The cuBLAS handle and the math mode last set on it.
struct Blas {
    handle: BlasHandle,
    mode: c_int,
}

/// A pinned host block that small uploads go through, and the event recorded after the copy
/// out of it: the block may be refilled once the event has completed.
struct UploadSlot {
    ptr: *mut c_void,
    bytes: usize,
    event: CuEvent,
}

/// `bytes` of pinned host memory (`cuMemAllocHost`; the context must be current).
fn alloc_pinned(bytes: usize) -> Result<*mut c_void> {
    let mut ptr = null_mut();
    // SAFETY: out-pointer.
    let r = unsafe { cuMemAllocHost_v2(&mut ptr, bytes) };
    if r == CUDA_SUCCESS {
        Ok(ptr)
    } else {
        Err(cu_err(&format!("cuMemAllocHost({bytes} bytes)"), r))
    }
}

/// Uploads up to this size go through pinned slots and return at once; bigger ones (weights
/// moved to the GPU, datasets) are copied and waited for.
pub(crate) const ASYNC_UPLOAD_LIMIT: usize = 4 << 20;
/// Pinned slots kept; with all of them in flight an upload waits for the oldest.
const UPLOAD_SLOTS: usize = 8;

pub(crate) struct Driver {
    ctx: CuContext,
    stream: CuStream,
    /// By base name (`binary` for `binary_f32` / `binary_f64`): the f32 and the f64 kernel.
    kernels: HashMap<String, [Option<Kernel>; 2]>,
    /// cuBLAS calls on one handle are serialised (a handle must not be used by two threads at
    /// once).
    blas: Mutex<Blas>,
    /// Whether f32 GEMMs may use TF32 tensor cores ([`super::public::set_tf32`]).
    pub(crate) tf32: AtomicBool,
    staging: Mutex<Staging>,
    /// Slots of the asynchronous uploads, the next one to try first.
    uploads: Mutex<(Vec<UploadSlot>, usize)>,
    pub(crate) counters: CallCounters,
}

// SAFETY: the raw handles are process-wide driver objects; every use binds the context first,
// and the cuBLAS handle and the staging buffer are used under their mutexes.
unsafe impl Send for Driver {}
unsafe impl Sync for Driver {}

/// This GPU's context made current for a scope; the previous state comes back on drop.
pub(crate) struct Bound {
    pushed: bool,
}

impl Drop for Bound {
    fn drop(&mut self) {
        if self.pushed {
            let mut popped = null_mut();
            // SAFETY: pops the context `enter` pushed on this thread.
            unsafe { cuCtxPopCurrent_v2(&mut popped) };
        }
    }
}

impl Driver {
    pub(crate) fn init(ordinal: usize) -> Result<Self> {
        // SAFETY (all calls below): plain driver calls with out-pointers of the right types.
        let r = unsafe { cuInit(0) };
        if r != CUDA_SUCCESS {
            return Err(Error::device(format!(
                "no CUDA device: the driver's cuInit failed: {}; Device::Cuda({ordinal}) is unavailable",
                describe(r)
            )));
        }
        let mut count: c_int = 0;
        check("cuDeviceGetCount", unsafe { cuDeviceGetCount(&mut count) })?;
        if ordinal >= count as usize {
            return Err(Error::device(format!(
                "no CUDA device {ordinal}: this machine has {count} CUDA device(s)"
            )));
        }
        let mut device: CuDevice = 0;
        check("cuDeviceGet", unsafe { cuDeviceGet(&mut device, ordinal as c_int) })?;
        let mut ctx: CuContext = null_mut();
        check("cuDevicePrimaryCtxRetain", unsafe {
            cuDevicePrimaryCtxRetain(&mut ctx, device)
        })?;
        let mut drv = Driver {
            ctx,
            stream: null_mut(),
            kernels: HashMap::new(),
            blas: Mutex::new(Blas {
                handle: null_mut(),
                mode: CUBLAS_DEFAULT_MATH,
            }),
            tf32: AtomicBool::new(false),
            staging: Mutex::new(Staging {
                ptr: null_mut(),
                bytes: 0,
            }),
            uploads: Mutex::new((Vec::new(), 0)),
            counters: CallCounters::default(),
        };
        match drv.setup() {
            Ok(()) => Ok(drv),
            Err(e) => {
                // SAFETY: gives back the retain above; nothing else holds the context.
                unsafe { cuDevicePrimaryCtxRelease_v2(device) };
                Err(e)
            }
        }
    }

    /// Stream, modules and cuBLAS handle, with the context current.
    fn setup(&mut self) -> Result<()> {
        let _bound = self.enter()?;
        let mut stream: CuStream = null_mut();
        // SAFETY: out-pointer; the context is current.
        check("cuStreamCreate", unsafe {
            cuStreamCreate(&mut stream, CU_STREAM_NON_BLOCKING)
        })?;
        self.stream = stream;
        for (family, text) in ptx::MODULES {
            let module = load_module(family, text)?;
            for e in ptx::entries(text) {
                let name = CString::new(e.name.as_str()).expect("PTX names hold no NUL");
                let mut func: CuFunction = null_mut();
                // SAFETY: out-pointer; `module` is loaded.
                check(&format!("cuModuleGetFunction({})", e.name), unsafe {
                    cuModuleGetFunction(&mut func, module, name.as_ptr())
                })?;
                let (base, f64) = match e.name.rsplit_once('_') {
                    Some((b, "f64")) => (b.to_string(), true),
                    Some((b, "f32")) => (b.to_string(), false),
                    _ => (e.name.clone(), false),
                };
                self.kernels.entry(base).or_default()[usize::from(f64)] = Some(Kernel { func, params: e.params });
            }
        }
        let mut h: BlasHandle = null_mut();
        // SAFETY: out-pointer; the context is current.
        blas_check("cublasCreate", unsafe { cublasCreate_v2(&mut h) })?;
        // SAFETY: a live handle and this context's stream.
        blas_check("cublasSetStream", unsafe { cublasSetStream_v2(h, self.stream) })?;
        self.blas.get_mut().unwrap_or_else(|e| e.into_inner()).handle = h;
        Ok(())
    }

    /// Makes this GPU's context current on the calling thread until the guard drops.
    pub(crate) fn enter(&self) -> Result<Bound> {
        let mut current: CuContext = null_mut();
        // SAFETY: out-pointer.
        check("cuCtxGetCurrent", unsafe { cuCtxGetCurrent(&mut current) })?;
        if current == self.ctx {
            return Ok(Bound { pushed: false });
        }
        // SAFETY: our retained primary context.
        check("cuCtxPushCurrent", unsafe { cuCtxPushCurrent_v2(self.ctx) })?;
        Ok(Bound { pushed: true })
    }

    pub(crate) fn synchronize(&self, after: &str) -> Result<()> {
        let _bound = self.enter()?;
        bump(&self.counters.syncs, 1);
        // SAFETY: our stream.
        let r = unsafe { cuStreamSynchronize(self.stream) };
        if r == CUDA_SUCCESS {
            Ok(())
        } else {
            Err(cu_err(&format!("cuStreamSynchronize (after {after})"), r))
        }
    }

    /// Launches kernel `name_f32` (or `name_f64`, as `T`) of kernels/`family`.cu with `grid`
    /// blocks of `block` threads. `Err` if no such kernel, or if the arguments do not match its
    /// PTX parameter list in number and byte sizes.
    pub(crate) fn launch<T: Float>(
        &self,
        family: &str,
        name: &str,
        grid: u32,
        block: u32,
        args: &[KernelArg<T>],
    ) -> Result<()> {
        let (dtype, f64) = (T::DTYPE, T::DTYPE == "f64");
        let k = self
            .kernels
            .get(name)
            .and_then(|pair| pair[usize::from(f64)].as_ref())
            .ok_or_else(|| {
                Error::device(format!(
                    "no kernel {name}_{dtype} in the PTX of kernels/{family}.cu (rebuild: build.rs compiles it)"
                ))
            })?;
        if args.len() != k.params.len() || args.len() > MAX_PARAMS {
            return Err(Error::device(format!(
                "launch of {name}_{dtype}: the kernel takes {} parameters, the launcher passed {}",
                k.params.len(),
                args.len()
            )));
        }
        let mut ptrs = [null_mut::<c_void>(); MAX_PARAMS];
        for (i, (a, &want)) in args.iter().zip(&k.params).enumerate() {
            if a.size != want {
                return Err(Error::device(format!(
                    "launch of {name}_{dtype}: parameter {i} is {want} bytes in the PTX, the launcher passed {} bytes",
                    a.size
                )));
            }
            ptrs[i] = a.ptr as *mut c_void;
        }
        let _bound = self.enter()?;
        bump(&self.counters.launches, 1);
        // SAFETY: every pointer is a live value of the size the PTX declares (checked above);
        // the driver copies them before returning.
        let r = unsafe {
            cuLaunchKernel(
                k.func,
                grid,
                1,
                1,
                block,
                1,
                1,
                0,
                self.stream,
                ptrs.as_mut_ptr(),
                null_mut(),
            )
        };
        if r == CUDA_SUCCESS {
            Ok(())
        } else {
            // The name is formatted only on failure: a launch allocates nothing.
            Err(cu_err(&format!("cuLaunchKernel({name}_{dtype})"), r))
        }
    }

    pub(crate) fn mem_alloc(&self, bytes: usize) -> Result<u64> {
        let _bound = self.enter()?;
        let mut ptr = 0u64;
        // SAFETY: out-pointer.
        check(&format!("cuMemAlloc({bytes} bytes)"), unsafe {
            cuMemAlloc_v2(&mut ptr, bytes)
        })?;
        bump(&self.counters.allocs, 1);
        Ok(ptr)
    }

    /// Frees a device allocation after the stream has drained (so no queued work still uses
    /// it: the driver does not promise that cuMemFree waits).
    ///
    /// # Safety
    /// `ptr` came from [`mem_alloc`](Self::mem_alloc) and nothing will use it again.
    pub(crate) unsafe fn mem_free(&self, ptr: u64) -> Result<()> {
        self.synchronize("freeing device memory")?;
        let _bound = self.enter()?;
        // SAFETY: as the caller promises; the stream is idle.
        check("cuMemFree", unsafe { cuMemFree_v2(ptr) })?;
        bump(&self.counters.frees, 1);
        Ok(())
    }

    /// Copies `bytes` from host memory at `src` to device memory at `dst`. Up to
    /// [`ASYNC_UPLOAD_LIMIT`] bytes the data is first copied into a pinned slot and the copy to
    /// the device is queued on the stream, so this returns without waiting for the GPU (a
    /// training step's input batch and targets); bigger copies wait until done.
    ///
    /// # Safety
    /// `src` holds `bytes` readable bytes; `dst` is a device allocation of at least `bytes`.
    pub(crate) unsafe fn htod(&self, dst: u64, src: *const u8, bytes: usize) -> Result<()> {
        if bytes <= ASYNC_UPLOAD_LIMIT {
            // SAFETY: as the caller promises.
            return unsafe { self.htod_pinned(dst, src, bytes) };
        }
        {
            let _bound = self.enter()?;
            bump(&self.counters.h2d, 1);
            bump(&self.counters.h2d_bytes, bytes as u64);
            // SAFETY: as the caller promises.
            check("cuMemcpyHtoDAsync", unsafe {
                cuMemcpyHtoDAsync_v2(dst, src.cast(), bytes, self.stream)
            })?;
        }
        // The host buffer may be freed once we return: wait for the copy.
        self.synchronize("cuMemcpyHtoDAsync")
    }

    /// The asynchronous upload: a free (completed) pinned slot of at least `bytes` is filled
    /// from `src`, its copy to `dst` queued, and its event recorded after it. A slot is free
    /// when its event has completed; if none is and all [`UPLOAD_SLOTS`] exist, this waits for
    /// the next slot's event (counted as a synchronisation).
    ///
    /// # Safety
    /// As [`htod`](Self::htod).
    unsafe fn htod_pinned(&self, dst: u64, src: *const u8, bytes: usize) -> Result<()> {
        let mut guard = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let (slots, next) = &mut *guard;
        let _bound = self.enter()?;
        let want = bytes.next_power_of_two().max(1 << 12);
        // SAFETY (event calls): events created below, live as long as the driver.
        let done = |s: &UploadSlot| unsafe { cuEventQuery(s.event) } == CUDA_SUCCESS;
        let n = slots.len();
        let free = (0..n)
            .map(|k| (*next + k) % n.max(1))
            .find(|&i| slots[i].bytes >= want && done(&slots[i]));
        let i = match free {
            Some(i) => i,
            None if n < UPLOAD_SLOTS => {
                slots.push(self.new_upload_slot(want)?);
                n
            }
            None => {
                // Every slot is in flight or too small: take the next one, waiting for its copy
                // if it is still in flight (the one case an upload waits), and regrow it.
                let i = *next % n;
                if !done(&slots[i]) {
                    bump(&self.counters.syncs, 1);
                    check("cuEventSynchronize", unsafe { cuEventSynchronize(slots[i].event) })?;
                }
                if slots[i].bytes < want {
                    let ptr = alloc_pinned(want)?;
                    // SAFETY: its copy has completed (the event above); nothing else uses it.
                    unsafe { cuMemFreeHost(slots[i].ptr) };
                    (slots[i].ptr, slots[i].bytes) = (ptr, want);
                }
                i
            }
        };
        *next = (i + 1) % slots.len();
        let slot = &slots[i];
        bump(&self.counters.h2d, 1);
        bump(&self.counters.h2d_bytes, bytes as u64);
        // SAFETY: the slot holds >= `bytes` and no copy out of it is pending (its event has
        // completed); `src` and `dst` as the caller promises.
        unsafe { std::ptr::copy_nonoverlapping(src, slot.ptr.cast::<u8>(), bytes) };
        check("cuMemcpyHtoDAsync", unsafe {
            cuMemcpyHtoDAsync_v2(dst, slot.ptr, bytes, self.stream)
        })?;
        check("cuEventRecord", unsafe { cuEventRecord(slot.event, self.stream) })
    }

    /// A pinned block of `bytes` and its event (context current).
    fn new_upload_slot(&self, bytes: usize) -> Result<UploadSlot> {
        let mut event = null_mut();
        // SAFETY: out-pointer.
        check("cuEventCreate", unsafe {
            cuEventCreate(&mut event, CU_EVENT_DISABLE_TIMING)
        })?;
        Ok(UploadSlot {
            ptr: alloc_pinned(bytes)?,
            bytes,
            event,
        })
    }

    /// Copies `bytes` from device memory at `src` to `dst`, through the pinned staging buffer:
    /// an asynchronous copy into it, a synchronisation, then a host copy out of it.
    ///
    /// # Safety
    /// `dst` holds `bytes` writable bytes; `src` is a device allocation of at least `bytes`.
    pub(crate) unsafe fn dtoh(&self, dst: *mut u8, src: u64, bytes: usize) -> Result<()> {
        let mut staging = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        let _bound = self.enter()?;
        if staging.bytes < bytes {
            if !staging.ptr.is_null() {
                // SAFETY: our earlier cuMemAllocHost block; no copy into it is pending (every
                // use below synchronises before unlocking).
                unsafe { cuMemFreeHost(staging.ptr) };
                *staging = Staging {
                    ptr: null_mut(),
                    bytes: 0,
                };
            }
            let want = bytes.next_power_of_two().max(1 << 16);
            let mut p = null_mut();
            // SAFETY: out-pointer.
            check(&format!("cuMemAllocHost({want} bytes)"), unsafe {
                cuMemAllocHost_v2(&mut p, want)
            })?;
            *staging = Staging { ptr: p, bytes: want };
        }
        bump(&self.counters.d2h, 1);
        bump(&self.counters.d2h_bytes, bytes as u64);
        // SAFETY: the staging buffer holds `bytes`; `src` as the caller promises.
        check("cuMemcpyDtoHAsync", unsafe {
            cuMemcpyDtoHAsync_v2(staging.ptr, src, bytes, self.stream)
        })?;
        // The copy into pinned memory is asynchronous: wait before reading it.
        self.synchronize("cuMemcpyDtoHAsync")?;
        // SAFETY: both hold `bytes`; the copy is complete.
        unsafe { std::ptr::copy_nonoverlapping(staging.ptr as *const u8, dst, bytes) };
        Ok(())
    }

    /// # Safety
    /// Both are device allocations of at least `bytes`.
    pub(crate) unsafe fn dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        let _bound = self.enter()?;
        bump(&self.counters.d2d, 1);
        bump(&self.counters.d2d_bytes, bytes as u64);
        // SAFETY: as the caller promises; queued on the device's stream.
        check("cuMemcpyDtoDAsync", unsafe {
            cuMemcpyDtoDAsync_v2(dst, src, bytes, self.stream)
        })
    }

    /// # Safety
    /// `dst` is a device allocation of at least `bytes`.
    pub(crate) unsafe fn memset0(&self, dst: u64, bytes: usize) -> Result<()> {
        let _bound = self.enter()?;
        bump(&self.counters.memsets, 1);
        // SAFETY: as the caller promises; queued on the device's stream.
        check("cuMemsetD8Async", unsafe {
            cuMemsetD8Async(dst, 0, bytes, self.stream)
        })
    }

    /// One column-major strided-batched GEMM, `cublas{S,D}gemmStridedBatched` with the arguments
    /// of `g` (first operand at `a`, second at `b`).
    ///
    /// # Safety
    /// The pointers are device buffers sized for `g`.
    pub(crate) unsafe fn gemm<T: Float>(&self, g: &ColMajorGemm, a: u64, b: u64, c: u64) -> Result<()> {
        let op = |t: bool| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
        let mut blas = self.blas.lock().unwrap_or_else(|e| e.into_inner());
        let _bound = self.enter()?;
        // TF32 only ever for f32, and only when asked for.
        let mode = if T::DTYPE == "f32" && self.tf32.load(Ordering::Relaxed) {
            CUBLAS_TF32_TENSOR_OP_MATH
        } else {
            CUBLAS_DEFAULT_MATH
        };
        if blas.mode != mode {
            // SAFETY: a live handle, used under its mutex.
            blas_check("cublasSetMathMode", unsafe { cublasSetMathMode(blas.handle, mode) })?;
            blas.mode = mode;
        }
        let h = &blas.handle;
        bump(&self.counters.cublas, 1);
        let status = if T::DTYPE == "f32" {
            let (alpha, beta) = (1.0f32, g.beta as f32);
            // SAFETY: as the caller promises.
            unsafe {
                cublasSgemmStridedBatched(
                    *h,
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
                    *h,
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
        blas_check(
            &format!("cublas{}gemmStridedBatched", if T::DTYPE == "f32" { "S" } else { "D" }),
            status,
        )
    }
}

/// Loads one family's PTX, with the JIT's error and info logs in the `Err` if the driver refuses
/// it (an unsupported PTX version, a kernel too large for the device, ...).
fn load_module(family: &str, text: &str) -> Result<CuModule> {
    const LOG: usize = 8192;
    let mut error_log = vec![0u8; LOG];
    let mut info_log = vec![0u8; LOG];
    let mut options = [
        CU_JIT_ERROR_LOG_BUFFER,
        CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
        CU_JIT_INFO_LOG_BUFFER,
        CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
    ];
    let mut values = [
        error_log.as_mut_ptr() as *mut c_void,
        LOG as *mut c_void,
        info_log.as_mut_ptr() as *mut c_void,
        LOG as *mut c_void,
    ];
    let mut module: CuModule = null_mut();
    // SAFETY: `text` is NUL-terminated (ptx.rs appends one); the option values are a buffer
    // and its size, as CU_JIT_*_LOG_BUFFER(_SIZE_BYTES) expect.
    let r = unsafe {
        cuModuleLoadDataEx(
            &mut module,
            text.as_ptr().cast(),
            options.len() as u32,
            options.as_mut_ptr(),
            values.as_mut_ptr(),
        )
    };
    if r == CUDA_SUCCESS {
        return Ok(module);
    }
    let log = |buf: &[u8]| {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).trim().to_string()
    };
    let (err, info) = (log(&error_log), log(&info_log));
    let mut msg = format!(
        "cuModuleLoadDataEx of kernels/{family}.cu's PTX failed: {}",
        describe(r)
    );
    if !err.is_empty() {
        msg.push_str(&format!("; JIT error log: {err}"));
    }
    if !info.is_empty() {
        msg.push_str(&format!("; JIT info log: {info}"));
    }
    msg.push_str(
        " (a driver older than the nvcc that built the PTX rejects it: rebuild with nvcc 13.0.x, see docs/cuda.md)",
    );
    Err(Error::device(msg))
}
