// Shared helpers for smallgrad's kernels (included by every kernels/*.cu).
//
// Conventions: every kernel is a template over the element type T, instantiated twice by
// EXPORT(...) as `extern "C"` `name_f32` / `name_f64`. Sizes and indices are `long long` (i64
// on the Rust side), pointers are device pointers, scalars are T. Elementwise kernels use
// grid-stride loops, so any grid size covers any n.
#pragma once

typedef long long i64;

#define GRID_STRIDE(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

// Instantiates template kernel `name<T>` as extern "C" name_f32 and name_f64. PARAMS may use T.
// In cuda-sim's host build (cuda-sim/include/cuda_sim_device.h) each is also registered with
// the simulator under that name, with its parameter sizes.
#ifdef __CUDA_SIM__
#define REGISTER(fn) CUDA_SIM_KERNEL(fn)
#else
#define REGISTER(fn)
#endif
#define EXPORT(name, PARAMS, ARGS)                                                     \
    namespace ns_f32_##name {                                                          \
    typedef float T;                                                                   \
    extern "C" __global__ void name##_f32 PARAMS { name<T> ARGS; }                     \
    REGISTER(name##_f32)                                                               \
    }                                                                                  \
    namespace ns_f64_##name {                                                          \
    typedef double T;                                                                  \
    extern "C" __global__ void name##_f64 PARAMS { name<T> ARGS; }                     \
    REGISTER(name##_f64)                                                               \
    }

// Up to 8 dims of a strided view: element i of the (row-major) `shape` reads
// base[sum_d idx_d * stride_d]. Passed by value (fits the 4 KiB parameter space easily).
struct Strided {
    i64 rank;
    i64 shape[8];
    i64 stride[8];
};

__device__ __forceinline__ i64 strided_offset(const Strided& s, i64 i) {
    i64 off = 0;
    for (int d = (int)s.rank - 1; d >= 0; --d) {
        i64 q = i / s.shape[d];
        off += (i - q * s.shape[d]) * s.stride[d];
        i = q;
    }
    return off;
}

// Block-wide sum of one value per thread (blockDim.x a power of two <= 1024), in a fixed
// tree order: deterministic, no atomics. Every thread gets the result.
template <typename T>
__device__ T block_sum(T v) {
    __shared__ double raw[1024];  // room for 1024 values of T <= double, suitably aligned
    T* sh = reinterpret_cast<T*>(raw);
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();
    return r;
}

// Block-wide maximum (fmax: a NaN loses to any number, as the CPU kernels' max), fixed tree
// order like block_sum. Every thread gets the result.
template <typename T>
__device__ T block_max(T v) {
    __shared__ double raw_max[1024];
    T* sh = reinterpret_cast<T*>(raw_max);
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = fmax(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();
    return r;
}
