// Batch norm over [N, C, S] (S = H*W, or 1): per-channel statistics and the closed-form
// backward's per-channel sums, one block per channel (deterministic tree sums), and the two
// elementwise passes. Formulas in src/ops/batchnorm/mod.rs.
#include "common.cuh"

// mean[c] and sq[c] = sum (x - mean)^2 (two passes, as the CPU kernel). blockDim 256.
template <typename T>
__device__ void bn_stats(const T* x, T* mean, T* sq, i64 n, i64 c, i64 s) {
    for (i64 ch = blockIdx.x; ch < c; ch += gridDim.x) {
        i64 m = n * s;
        T acc = T(0);
        for (i64 j = threadIdx.x; j < m; j += blockDim.x) {
            i64 b = j / s, k = j - b * s;
            acc += x[(b * c + ch) * s + k];
        }
        T mu = block_sum(acc) / T(m);
        T acc2 = T(0);
        for (i64 j = threadIdx.x; j < m; j += blockDim.x) {
            i64 b = j / s, k = j - b * s;
            T d = x[(b * c + ch) * s + k] - mu;
            acc2 += d * d;
        }
        T q = block_sum(acc2);
        if (threadIdx.x == 0) {
            mean[ch] = mu;
            sq[ch] = q;
        }
    }
}
EXPORT(bn_stats, (const T* x, T* mean, T* sq, i64 n, i64 c, i64 s), (x, mean, sq, n, c, s))

// y = (x - mean[c]) * scale[c] + shift[c].
template <typename T>
__device__ void bn_normalize(const T* x, T* y, const T* mean, const T* scale, const T* shift, i64 n, i64 c, i64 s) {
    GRID_STRIDE(i, n * c * s) {
        i64 ch = (i / s) % c;
        y[i] = (x[i] - mean[ch]) * scale[ch] + shift[ch];
    }
}
EXPORT(bn_normalize, (const T* x, T* y, const T* mean, const T* scale, const T* shift, i64 n, i64 c, i64 s),
       (x, y, mean, scale, shift, n, c, s))

// sg[c] = sum g, sgx[c] = invstd[c] * sum g (x - mean) (= sum g * xhat).
template <typename T>
__device__ void bn_grad_sums(const T* x, const T* g, const T* mean, const T* invstd, T* sg, T* sgx, i64 n, i64 c,
                             i64 s) {
    for (i64 ch = blockIdx.x; ch < c; ch += gridDim.x) {
        i64 m = n * s;
        T mu = mean[ch];
        T a = T(0), b = T(0);
        for (i64 j = threadIdx.x; j < m; j += blockDim.x) {
            i64 bb = j / s, k = j - bb * s;
            i64 q = (bb * c + ch) * s + k;
            a += g[q];
            b += g[q] * (x[q] - mu);
        }
        T ta = block_sum(a);
        T tb = block_sum(b);
        if (threadIdx.x == 0) {
            sg[ch] = ta;
            sgx[ch] = tb * invstd[ch];
        }
    }
}
EXPORT(bn_grad_sums, (const T* x, const T* g, const T* mean, const T* invstd, T* sg, T* sgx, i64 n, i64 c, i64 s),
       (x, g, mean, invstd, sg, sgx, n, c, s))

// Training: dx = k (g - a - (x - mean) invstd b) with a = sg/m, b = sgx/m per channel;
// eval (coefs = 0): dx = k g. k = weight * invstd (or invstd).
template <typename T>
__device__ void bn_grad_input(const T* x, const T* g, const T* mean, const T* invstd, const T* k, const T* ca,
                              const T* cb, T* dx, i64 n, i64 c, i64 s, i64 coefs) {
    GRID_STRIDE(i, n * c * s) {
        i64 ch = (i / s) % c;
        dx[i] = coefs ? k[ch] * (g[i] - ca[ch] - (x[i] - mean[ch]) * invstd[ch] * cb[ch]) : k[ch] * g[i];
    }
}
EXPORT(bn_grad_input,
       (const T* x, const T* g, const T* mean, const T* invstd, const T* k, const T* ca, const T* cb, T* dx, i64 n,
        i64 c, i64 s, i64 coefs),
       (x, g, mean, invstd, k, ca, cb, dx, n, c, s, coefs))
