// Elementwise kernels: binary arithmetic with NumPy broadcasting, the unary functions and their
// backward, fill. The op codes match `BinaryOp` / `UnaryOp` in src/ops/elementwise/cuda.rs.
#include "common.cuh"

// op: 0 add, 1 sub, 2 mul, 3 div. a and b are read through broadcast strides (stride 0 on a
// broadcast dim) over the output shape; contiguous = 1 means both already have the output's
// shape (index i directly).
template <typename T>
__device__ void binary(i64 op, const T* a, const T* b, T* out, i64 n, i64 contiguous, Strided sa, Strided sb) {
    GRID_STRIDE(i, n) {
        i64 ia = i, ib = i;
        if (!contiguous) {
            ia = strided_offset(sa, i);
            ib = strided_offset(sb, i);
        }
        T x = a[ia], y = b[ib], r;
        switch (op) {
            case 0: r = x + y; break;
            case 1: r = x - y; break;
            case 2: r = x * y; break;
            default: r = x / y; break;
        }
        out[i] = r;
    }
}
EXPORT(binary, (i64 op, const T* a, const T* b, T* out, i64 n, i64 contiguous, Strided sa, Strided sb),
       (op, a, b, out, n, contiguous, sa, sb))

// op: 0 neg, 1 exp, 2 log, 3 sqrt, 4 abs, 5 relu, 6 tanh, 7 sigmoid, 8 powf(p), 9 clamp_min(p),
// 10 add_scalar(p), 11 mul_scalar(p).
template <typename T>
__device__ void unary(i64 op, const T* x, T* y, i64 n, T p) {
    GRID_STRIDE(i, n) {
        T v = x[i], r;
        switch (op) {
            case 0: r = -v; break;
            case 1: r = exp(v); break;
            case 2: r = log(v); break;
            case 3: r = sqrt(v); break;
            case 4: r = fabs(v); break;
            case 5: r = (v > T(0) || v != v) ? v : T(0); break;  // NaN stays NaN
            case 6: r = tanh(v); break;
            case 7: r = T(1) / (T(1) + exp(-v)); break;
            case 8: r = pow(v, p); break;
            case 9: r = v < p ? p : v; break;
            case 10: r = v + p; break;
            default: r = v * p; break;
        }
        y[i] = r;
    }
}
EXPORT(unary, (i64 op, const T* x, T* y, i64 n, T p), (op, x, y, n, p))

// dL/dx from dL/dy = g, the input x and the output y (derivations in src/ops/elementwise/mod.rs).
template <typename T>
__device__ void unary_backward(i64 op, const T* x, const T* y, const T* g, T* dx, i64 n, T p) {
    GRID_STRIDE(i, n) {
        T gv = g[i], r;
        switch (op) {
            case 0: r = -gv; break;
            case 1: r = gv * y[i]; break;
            case 2: r = gv / x[i]; break;
            case 3: r = gv / (T(2) * y[i]); break;
            case 4: r = x[i] > T(0) ? gv : (x[i] < T(0) ? -gv : T(0)); break;
            case 5: r = y[i] > T(0) ? gv : T(0); break;
            case 6: r = gv * (T(1) - y[i] * y[i]); break;
            case 7: r = gv * y[i] * (T(1) - y[i]); break;
            case 8: r = p == T(0) ? T(0) : gv * p * pow(x[i], p - T(1)); break;
            case 9: r = x[i] >= p ? gv : T(0); break;
            case 10: r = gv; break;
            default: r = gv * p; break;
        }
        dx[i] = r;
    }
}
EXPORT(unary_backward, (i64 op, const T* x, const T* y, const T* g, T* dx, i64 n, T p), (op, x, y, g, dx, n, p))

template <typename T>
__device__ void fill(T* out, i64 n, T v) {
    GRID_STRIDE(i, n) { out[i] = v; }
}
EXPORT(fill, (T * out, i64 n, T v), (out, n, v))
