// Shape kernels: one strided gather serves permute (strides permuted) and expand (stride 0 on
// broadcast dims).
#include "common.cuh"

template <typename T>
__device__ void gather(const T* x, T* out, i64 n, Strided src) {
    GRID_STRIDE(i, n) { out[i] = x[strided_offset(src, i)]; }
}
EXPORT(gather, (const T* x, T* out, i64 n, Strided src), (x, out, n, src))
