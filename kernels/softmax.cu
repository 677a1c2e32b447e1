// Softmax and log-softmax along the middle dim of [outer, size, inner], max-subtracted as the
// CPU kernel: one thread per (outer, inner) line, or for long contiguous rows (inner = 1) one
// block per row (softmax_rows*: the max and the sums as block reductions in a fixed order).
#include "common.cuh"

template <typename T>
__device__ void softmax_forward(const T* x, T* y, i64 outer, i64 size, i64 inner, i64 log_) {
    GRID_STRIDE(j, outer * inner) {
        i64 o = j / inner, i = j - o * inner;
        const T* xl = x + o * size * inner + i;
        T* yl = y + o * size * inner + i;
        T m = -INFINITY;
        for (i64 k = 0; k < size; ++k) m = fmax(m, xl[k * inner]);
        T s = T(0);
        for (i64 k = 0; k < size; ++k) {
            T e = exp(xl[k * inner] - m);
            yl[k * inner] = e;
            s += e;
        }
        if (log_) {
            T ls = log(s);
            for (i64 k = 0; k < size; ++k) yl[k * inner] = xl[k * inner] - m - ls;
        } else {
            for (i64 k = 0; k < size; ++k) yl[k * inner] /= s;
        }
    }
}
EXPORT(softmax_forward, (const T* x, T* y, i64 outer, i64 size, i64 inner, i64 log_), (x, y, outer, size, inner, log_))

// softmax: dx = y (g - sum g y);  log-softmax: dx = g - exp(y) sum g.
template <typename T>
__device__ void softmax_backward(const T* y, const T* g, T* dx, i64 outer, i64 size, i64 inner, i64 log_) {
    GRID_STRIDE(j, outer * inner) {
        i64 o = j / inner, i = j - o * inner;
        i64 base = o * size * inner + i;
        T acc = T(0);
        for (i64 k = 0; k < size; ++k) {
            i64 q = base + k * inner;
            acc += log_ ? g[q] : g[q] * y[q];
        }
        for (i64 k = 0; k < size; ++k) {
            i64 q = base + k * inner;
            dx[q] = log_ ? g[q] - exp(y[q]) * acc : y[q] * (g[q] - acc);
        }
    }
}
EXPORT(softmax_backward, (const T* y, const T* g, T* dx, i64 outer, i64 size, i64 inner, i64 log_),
       (y, g, dx, outer, size, inner, log_))

// One block per row of [rows, size] (inner = 1).
template <typename T>
__device__ void softmax_rows_forward(const T* x, T* y, i64 rows, i64 size, i64 log_) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * size;
        T* yr = y + r * size;
        T m = -INFINITY;
        for (i64 j = threadIdx.x; j < size; j += blockDim.x) m = fmax(m, xr[j]);
        m = block_max(m);
        T s = T(0);
        for (i64 j = threadIdx.x; j < size; j += blockDim.x) s += exp(xr[j] - m);
        s = block_sum(s);
        T ls = log(s);
        for (i64 j = threadIdx.x; j < size; j += blockDim.x) yr[j] = log_ ? xr[j] - m - ls : exp(xr[j] - m) / s;
    }
}
EXPORT(softmax_rows_forward, (const T* x, T* y, i64 rows, i64 size, i64 log_), (x, y, rows, size, log_))

template <typename T>
__device__ void softmax_rows_backward(const T* y, const T* g, T* dx, i64 rows, i64 size, i64 log_) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        i64 base = r * size;
        T acc = T(0);
        for (i64 j = threadIdx.x; j < size; j += blockDim.x) acc += log_ ? g[base + j] : g[base + j] * y[base + j];
        acc = block_sum(acc);
        for (i64 j = threadIdx.x; j < size; j += blockDim.x) {
            i64 q = base + j;
            dx[q] = log_ ? g[q] - exp(y[q]) * acc : y[q] * (g[q] - acc);
        }
    }
}
EXPORT(softmax_rows_backward, (const T* y, const T* g, T* dx, i64 rows, i64 size, i64 log_),
       (y, g, dx, rows, size, log_))
