// The losses' own pieces: one-hot rows from class indices, picking -log p[target] per row (the
// NLL) and its backward. Targets are one device copy of the class indices (i64), shared by all
// three within a loss call.
#include "common.cuh"

// out[i, j] = 1 if j == t_i else 0 (every element written).
template <typename T>
__device__ void one_hot(const i64* targets, T* out, i64 n, i64 classes) {
    GRID_STRIDE(i, n * classes) { out[i] = targets[i / classes] == i % classes ? T(1) : T(0); }
}
EXPORT(one_hot, (const i64* targets, T* out, i64 n, i64 classes), (targets, out, n, classes))

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
