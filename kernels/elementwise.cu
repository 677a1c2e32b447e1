// Elementwise kernels: binary arithmetic with NumPy broadcasting, the unary functions and their
// backward, fill. The binary op codes are `binary_code` in src/ops/elementwise/cuda.rs; the unary
// ones are the UNARY_* of unary_ops.h, generated from the ops' definitions in
// src/ops/elementwise/unary.rs (where each op's formulas and derivation are).
#include "common.cuh"
#include "unary_ops.h"

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

// y = f(x), for the unary op `op` (a UNARY_* code) with scalar p.
template <typename T>
__device__ void unary(i64 op, const T* x, T* y, i64 n, T p) {
    GRID_STRIDE(i, n) {
        T v = x[i], r;
        switch (op) {
            case UNARY_NEG: r = -v; break;
            case UNARY_EXP: r = exp(v); break;
            case UNARY_LOG: r = log(v); break;
            case UNARY_SQRT: r = sqrt(v); break;
            case UNARY_ABS: r = fabs(v); break;
            case UNARY_RELU: r = (v > T(0) || v != v) ? v : T(0); break;  // NaN stays NaN
            case UNARY_TANH: r = tanh(v); break;
            case UNARY_SIGMOID: r = T(1) / (T(1) + exp(-v)); break;
            case UNARY_POWF: r = pow(v, p); break;
            case UNARY_CLAMP_MIN: r = v < p ? p : v; break;
            case UNARY_ADD_SCALAR: r = v + p; break;
            default: r = v * p; break;  // UNARY_MUL_SCALAR
        }
        y[i] = r;
    }
}
EXPORT(unary, (i64 op, const T* x, T* y, i64 n, T p), (op, x, y, n, p))

// dL/dx from dL/dy = g and the saved value v: x or y (or nothing), as unary_ops.h says per op.
template <typename T>
__device__ void unary_backward(i64 op, const T* v, const T* g, T* dx, i64 n, T p) {
    GRID_STRIDE(i, n) {
        T gv = g[i], r;
        switch (op) {
            case UNARY_NEG: r = -gv; break;
            case UNARY_EXP: r = gv * v[i]; break;                   // v = y
            case UNARY_LOG: r = gv / v[i]; break;                   // v = x
            case UNARY_SQRT: r = gv / (T(2) * v[i]); break;         // v = y
            case UNARY_ABS: r = v[i] > T(0) ? gv : (v[i] < T(0) ? -gv : T(0)); break;  // v = x
            case UNARY_RELU: r = v[i] > T(0) ? gv : T(0); break;    // v = y
            case UNARY_TANH: r = gv * (T(1) - v[i] * v[i]); break;  // v = y
            case UNARY_SIGMOID: r = gv * v[i] * (T(1) - v[i]); break;  // v = y
            case UNARY_POWF: r = p == T(0) ? T(0) : gv * p * pow(v[i], p - T(1)); break;  // v = x
            case UNARY_CLAMP_MIN: r = v[i] >= p ? gv : T(0); break;  // v = x
            case UNARY_ADD_SCALAR: r = gv; break;
            default: r = gv * p; break;  // UNARY_MUL_SCALAR
        }
        dx[i] = r;
    }
}
EXPORT(unary_backward, (i64 op, const T* v, const T* g, T* dx, i64 n, T p), (op, v, g, dx, n, p))

template <typename T>
__device__ void fill(T* out, i64 n, T v) {
    GRID_STRIDE(i, n) { out[i] = v; }
}
EXPORT(fill, (T * out, i64 n, T v), (out, n, v))
