// Softmax and log-softmax along the middle dim of [outer, size, inner]: one thread per
// (outer, inner) line, max-subtracted as the CPU kernel.
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
