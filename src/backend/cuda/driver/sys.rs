//! The CUDA driver API and cuBLAS functions smallgrad calls, declared by hand.
//!
//! Every status is a plain `c_int`, never a Rust enum: a driver newer than any list of codes
//! (CUDA 12 added `CUDA_ERROR_INVALID_CLUSTER_SIZE = 912`, for one) may return a code that a
//! `#[repr(i32)] enum` does not have, and such a value in an enum is undefined behaviour before
//! any `match` can look at it. Names and meanings come from [`cu_err`](super::cu_err), which
//! asks the driver itself (`cuGetErrorName` / `cuGetErrorString`).
//!
//! Handles are opaque pointers; device addresses are `u64` (`CUdeviceptr`). The `_v2` names are
//! what cuda.h maps the plain names to; the libraries export both.

use std::ffi::{c_char, c_int, c_uint, c_void};

/// `CUresult` (0 is `CUDA_SUCCESS`).
pub(crate) type CuResult = c_int;
/// `cublasStatus_t` (0 is `CUBLAS_STATUS_SUCCESS`).
pub(crate) type BlasStatus = c_int;
pub(crate) type CuDevice = c_int;
pub(crate) type CuDevicePtr = u64;
pub(crate) type CuContext = *mut c_void;
pub(crate) type CuModule = *mut c_void;
pub(crate) type CuFunction = *mut c_void;
pub(crate) type CuStream = *mut c_void;
pub(crate) type CuEvent = *mut c_void;
pub(crate) type BlasHandle = *mut c_void;

pub(crate) const CUDA_SUCCESS: CuResult = 0;
pub(crate) const CUDA_ERROR_OUT_OF_MEMORY: CuResult = 2;
/// `cuEventCreate` flag: no timing (cheaper to record and query).
pub(crate) const CU_EVENT_DISABLE_TIMING: c_uint = 2;
/// `cuStreamCreate` flag: no implicit synchronisation with the legacy NULL stream.
pub(crate) const CU_STREAM_NON_BLOCKING: c_uint = 1;
/// `CUjit_option` values of `cuModuleLoadDataEx`.
pub(crate) const CU_JIT_INFO_LOG_BUFFER: c_int = 3;
pub(crate) const CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES: c_int = 4;
pub(crate) const CU_JIT_ERROR_LOG_BUFFER: c_int = 5;
pub(crate) const CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES: c_int = 6;
/// `cublasOperation_t`.
/// `cublasMath_t`: the default math (full f32 / f64 products).
pub(crate) const CUBLAS_DEFAULT_MATH: c_int = 0;
/// `cublasMath_t`: f32 products on tensor cores with inputs rounded to TF32.
pub(crate) const CUBLAS_TF32_TENSOR_OP_MATH: c_int = 3;
pub(crate) const CUBLAS_OP_N: c_int = 0;
pub(crate) const CUBLAS_OP_T: c_int = 1;
/// `cublasStatus_t` values smallgrad tells apart.
pub(crate) const CUBLAS_STATUS_SUCCESS: BlasStatus = 0;
pub(crate) const CUBLAS_STATUS_ALLOC_FAILED: BlasStatus = 3;

#[link(name = "cuda")]
unsafe extern "C" {
    pub(crate) fn cuInit(flags: c_uint) -> CuResult;
    pub(crate) fn cuGetErrorName(code: CuResult, name: *mut *const c_char) -> CuResult;
    pub(crate) fn cuGetErrorString(code: CuResult, text: *mut *const c_char) -> CuResult;
    pub(crate) fn cuDeviceGetCount(count: *mut c_int) -> CuResult;
    pub(crate) fn cuDeviceGet(device: *mut CuDevice, ordinal: c_int) -> CuResult;
    pub(crate) fn cuDevicePrimaryCtxRetain(ctx: *mut CuContext, device: CuDevice) -> CuResult;
    pub(crate) fn cuDevicePrimaryCtxRelease_v2(device: CuDevice) -> CuResult;
    pub(crate) fn cuCtxGetCurrent(ctx: *mut CuContext) -> CuResult;
    pub(crate) fn cuCtxPushCurrent_v2(ctx: CuContext) -> CuResult;
    pub(crate) fn cuCtxPopCurrent_v2(ctx: *mut CuContext) -> CuResult;
    pub(crate) fn cuStreamCreate(stream: *mut CuStream, flags: c_uint) -> CuResult;
    pub(crate) fn cuStreamSynchronize(stream: CuStream) -> CuResult;
    pub(crate) fn cuModuleLoadDataEx(
        module: *mut CuModule,
        image: *const c_void,
        num_options: c_uint,
        options: *mut c_int,
        values: *mut *mut c_void,
    ) -> CuResult;
    pub(crate) fn cuModuleGetFunction(function: *mut CuFunction, module: CuModule, name: *const c_char) -> CuResult;
    pub(crate) fn cuLaunchKernel(
        f: CuFunction,
        grid_x: c_uint,
        grid_y: c_uint,
        grid_z: c_uint,
        block_x: c_uint,
        block_y: c_uint,
        block_z: c_uint,
        shared_bytes: c_uint,
        stream: CuStream,
        params: *mut *mut c_void,
        extra: *mut *mut c_void,
    ) -> CuResult;
    pub(crate) fn cuMemAlloc_v2(ptr: *mut CuDevicePtr, bytes: usize) -> CuResult;
    pub(crate) fn cuMemFree_v2(ptr: CuDevicePtr) -> CuResult;
    pub(crate) fn cuMemAllocHost_v2(ptr: *mut *mut c_void, bytes: usize) -> CuResult;
    pub(crate) fn cuMemFreeHost(ptr: *mut c_void) -> CuResult;
    pub(crate) fn cuMemcpyHtoDAsync_v2(dst: CuDevicePtr, src: *const c_void, bytes: usize, s: CuStream) -> CuResult;
    pub(crate) fn cuMemcpyDtoHAsync_v2(dst: *mut c_void, src: CuDevicePtr, bytes: usize, s: CuStream) -> CuResult;
    pub(crate) fn cuMemcpyDtoDAsync_v2(dst: CuDevicePtr, src: CuDevicePtr, bytes: usize, s: CuStream) -> CuResult;
    pub(crate) fn cuMemsetD8Async(dst: CuDevicePtr, value: u8, count: usize, s: CuStream) -> CuResult;
    pub(crate) fn cuEventCreate(event: *mut CuEvent, flags: c_uint) -> CuResult;
    pub(crate) fn cuEventRecord(event: CuEvent, s: CuStream) -> CuResult;
    pub(crate) fn cuEventQuery(event: CuEvent) -> CuResult;
    pub(crate) fn cuEventSynchronize(event: CuEvent) -> CuResult;
}

#[link(name = "cublas")]
unsafe extern "C" {
    pub(crate) fn cublasCreate_v2(handle: *mut BlasHandle) -> BlasStatus;
    pub(crate) fn cublasSetStream_v2(handle: BlasHandle, stream: CuStream) -> BlasStatus;
    pub(crate) fn cublasSetMathMode(handle: BlasHandle, mode: c_int) -> BlasStatus;
    pub(crate) fn cublasSgemmStridedBatched(
        handle: BlasHandle,
        transa: c_int,
        transb: c_int,
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
    ) -> BlasStatus;
    pub(crate) fn cublasDgemmStridedBatched(
        handle: BlasHandle,
        transa: c_int,
        transb: c_int,
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
    ) -> BlasStatus;
}
