// Compiles CUDA C++ kernels (.cu) as plain C++17 for cuda-sim. The Makefile force-includes this
// header and defines __CUDA_SIM__; the kernels themselves stay ordinary CUDA.
//
// What it maps:
// - `__global__`, `__device__`, `__host__`, `__forceinline__`: plain (inline) C++ functions.
// - `threadIdx`, `blockIdx`, `blockDim`, `gridDim`: fields of the simulator's per-worker-thread
//   state, which it sets before it runs (or resumes) each GPU thread.
// - `__syncthreads()`: the simulator's block barrier (it records the call site, so threads that
//   wait at different barriers, or exit while others wait, are reported).
// - `__shared__`: thread-local statics. All threads of a block run as fibers on one worker
//   thread, so they share them; the simulator knows the kernel library's TLS block, treats it
//   as the block's shared memory, fills it with garbage (0xFF) before every block of a kernel
//   that declares shared memory, and checks races on it.
// - Every global and shared memory access is checked: the kernels are compiled with gcc's
//   -fsanitize=thread instrumentation, whose __tsan_read/__tsan_write callbacks the simulator
//   implements itself (no TSan runtime is linked).
// - CUDA_SIM_KERNEL(fn): registers an extern "C" kernel with its parameter sizes and kinds, so
//   that cuModuleLoadData can match it against the PTX's .entry of the same name.
#pragma once
#ifndef __CUDA_SIM__
#error "cuda_sim_device.h is for the simulator's host build of .cu files (define __CUDA_SIM__)"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

struct dim3 {
    unsigned x, y, z;
};
typedef dim3 uint3;

// The running GPU thread's coordinates, kept by the simulator (libcuda.so.1, loaded at program
// start, so its TLS is static and initial-exec access from here is valid).
struct cuda_sim_state_t {
    dim3 thread_idx, block_idx, block_dim, grid_dim;
};

extern "C" {
extern __thread cuda_sim_state_t cuda_sim_state __attribute__((tls_model("initial-exec")));
void cuda_sim_syncthreads(const char* file, int line);
// kinds[i]: 0 a value, 1 a pointer to mutable data, 2 a pointer to const data.
void cuda_sim_register_kernel(const char* name, void* fn, void (*thunk)(void*, void**), int nparams,
                              const unsigned* sizes, const unsigned char* kinds);
}

#define threadIdx (static_cast<const dim3&>(cuda_sim_state.thread_idx))
#define blockIdx (static_cast<const dim3&>(cuda_sim_state.block_idx))
#define blockDim (static_cast<const dim3&>(cuda_sim_state.block_dim))
#define gridDim (static_cast<const dim3&>(cuda_sim_state.grid_dim))
#define __syncthreads() cuda_sim_syncthreads(__FILE__, __LINE__)

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __shared__ static thread_local

// The math functions CUDA provides for float and double (std's overloads pick the precision).
using std::exp;
using std::fabs;
using std::fmax;
using std::fmin;
using std::log;
using std::pow;
using std::sqrt;
using std::tanh;

namespace cuda_sim {
template <typename T>
constexpr unsigned char kind_of() {
    if constexpr (std::is_pointer_v<T>) {
        return std::is_const_v<std::remove_pointer_t<T>> ? 2 : 1;
    } else {
        return 0;
    }
}

// Calls kernel `fn` with the CUDA launch convention (args[i] points at parameter i). Not
// instrumented: the argument block belongs to the simulator, not to device memory.
template <typename... A, std::size_t... I>
__attribute__((no_sanitize("thread"))) void call(void* fn, void** args, std::index_sequence<I...>) {
    reinterpret_cast<void (*)(A...)>(fn)(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

template <typename... A>
__attribute__((no_sanitize("thread"))) void thunk(void* fn, void** args) {
    call<A...>(fn, args, std::index_sequence_for<A...>{});
}

struct Registrar {
    template <typename... A>
    __attribute__((no_sanitize("thread"))) Registrar(const char* name, void (*fn)(A...)) {
        static const unsigned sizes[] = {static_cast<unsigned>(sizeof(A))..., 0u};
        static const unsigned char kinds[] = {kind_of<A>()..., 0};
        cuda_sim_register_kernel(name, reinterpret_cast<void*>(fn), &thunk<A...>, static_cast<int>(sizeof...(A)),
                                 sizes, kinds);
    }
};
}  // namespace cuda_sim

#define CUDA_SIM_KERNEL(fn) static cuda_sim::Registrar cuda_sim_registrar_##fn(#fn, &fn);
