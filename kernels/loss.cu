// The losses' own pieces: picking -log p[target] per row (the NLL) and its backward.
#include "common.cuh"

template <typename T>
__device__ void nll_pick(const T* logp, const i64* targets, T* out, i64 n, i64 classes) {
    GRID_STRIDE(i, n) { out[i] = -logp[i * classes + targets[i]]; }
}
EXPORT(nll_pick, (const T* logp, const i64* targets, T* out, i64 n, i64 classes), (logp, targets, out, n, classes))

// dx zero-filled before; dx[i, t_i] = -g[i].
template <typename T>
__device__ void nll_backward(const T* g, const i64* targets, T* dx, i64 n, i64 classes) {
    GRID_STRIDE(i, n) { dx[i * classes + targets[i]] = -g[i]; }
}
EXPORT(nll_backward, (const T* g, const i64* targets, T* dx, i64 n, i64 classes), (g, targets, dx, n, classes))
