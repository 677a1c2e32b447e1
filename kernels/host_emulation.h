// Lets kernels/*.cu compile as plain C++17 for the host (feature `cuda-emulator`; build.rs
// force-includes this header). A launch runs the kernel once, as one block of one thread:
// grid-stride loops then visit every index in order and the block reductions reduce one value,
// so the kernels' index arithmetic, formulas and arguments run for real on the CPU; what the
// emulator cannot show is the GPU's concurrency (races, shared-memory use across threads).
#pragma once
#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <type_traits>
#include <utility>

using std::exp;
using std::fabs;
using std::fmax;
using std::log;
using std::pow;
using std::sqrt;
using std::tanh;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static thread_local

struct smallgrad_dim3 {
    unsigned x, y, z;
};
inline thread_local smallgrad_dim3 blockIdx{0, 0, 0}, threadIdx{0, 0, 0}, blockDim{1, 1, 1}, gridDim{1, 1, 1};
inline void __syncthreads() {}

namespace smallgrad_host {
// A kernel called with the CUDA launch convention: args[i] points at the i-th parameter.
using Entry = void (*)(void**);

inline std::map<std::string, Entry>& registry() {
    static std::map<std::string, Entry> kernels;
    return kernels;
}

struct Registrar {
    Registrar(const char* name, Entry e) { registry()[name] = e; }
};

template <typename... A, std::size_t... I>
void call_impl(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

template <typename... A>
void call(void (*f)(A...), void** args) {
    call_impl(f, args, std::index_sequence_for<A...>{});
}
}  // namespace smallgrad_host

// The emulator's lookup: the kernel registered under `name` (e.g. "binary_f32"), or null.
extern "C" smallgrad_host::Entry smallgrad_host_kernel(const char* name) {
    auto& r = smallgrad_host::registry();
    auto it = r.find(name);
    return it == r.end() ? nullptr : it->second;
}
