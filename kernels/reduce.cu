// Reductions. Sums are deterministic: one block per row (or, for a few long rows, one block per
// part of a row, then one per row over the parts: two stages), a fixed per-thread stride order,
// then a fixed tree (block_sum); no atomics.
#include "common.cuh"

// out[r] = scale * (sum of row r of x) (rows x row, contiguous): scale 1 for sum, 1/count for
// mean (an empty row gives 0 * inf = NaN there, as PyTorch). Launch with blockDim 256.
template <typename T>
__device__ void sum_rows(const T* x, T* out, i64 rows, i64 row, T scale) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * row;
        T acc = T(0);
        for (i64 j = threadIdx.x; j < row; j += blockDim.x) acc += xr[j];
        T s = block_sum(acc);
        if (threadIdx.x == 0) out[r] = s * scale;
    }
}
EXPORT(sum_rows, (const T* x, T* out, i64 rows, i64 row, T scale), (x, out, rows, row, scale))

// Stage one of a long row's sum: block (r, p) writes part[r * parts + p] = the sum of the p-th of
// `parts` equal ranges of row r. Stage two is sum_rows over [rows, parts].
template <typename T>
__device__ void sum_parts(const T* x, T* part, i64 rows, i64 row, i64 parts) {
    for (i64 blk = blockIdx.x; blk < rows * parts; blk += gridDim.x) {
        i64 r = blk / parts, p = blk - r * parts;
        i64 lo = row * p / parts, hi = row * (p + 1) / parts;
        const T* xr = x + r * row;
        T acc = T(0);
        for (i64 j = lo + threadIdx.x; j < hi; j += blockDim.x) acc += xr[j];
        T s = block_sum(acc);
        if (threadIdx.x == 0) part[blk] = s;
    }
}
EXPORT(sum_parts, (const T* x, T* part, i64 rows, i64 row, i64 parts), (x, part, rows, row, parts))

// Max along the middle dim of [outer, size, inner]: value and flat index of the first maximum
// (NaN wins, as the CPU kernel and PyTorch).
template <typename T>
__device__ void max_dim(const T* x, T* vals, i64* idx, i64 outer, i64 size, i64 inner) {
    GRID_STRIDE(j, outer * inner) {
        i64 o = j / inner, i = j - o * inner;
        i64 base = o * size * inner + i;
        T best = x[base];
        i64 bi = base;
        for (i64 k = 1; k < size; ++k) {
            T v = x[base + k * inner];
            if (!(best != best) && (v > best || v != v)) {
                best = v;
                bi = base + k * inner;
            }
        }
        vals[j] = best;
        idx[j] = bi;
    }
}
EXPORT(max_dim, (const T* x, T* vals, i64* idx, i64 outer, i64 size, i64 inner), (x, vals, idx, outer, size, inner))

// dx[idx[j]] = g[j] for distinct indices (dx zero-filled before).
template <typename T>
__device__ void scatter(const T* g, const i64* idx, T* dx, i64 n) {
    GRID_STRIDE(j, n) { dx[idx[j]] = g[j]; }
}
EXPORT(scatter, (const T* g, const i64* idx, T* dx, i64 n), (g, idx, dx, n))

// L2 norm along the middle dim of [outer, size, inner].
template <typename T>
__device__ void norm_dim(const T* x, T* out, i64 outer, i64 size, i64 inner) {
    GRID_STRIDE(j, outer * inner) {
        i64 o = j / inner, i = j - o * inner;
        T acc = T(0);
        for (i64 k = 0; k < size; ++k) {
            T v = x[(o * size + k) * inner + i];
            acc += v * v;
        }
        out[j] = sqrt(acc);
    }
}
EXPORT(norm_dim, (const T* x, T* out, i64 outer, i64 size, i64 inner), (x, out, outer, size, inner))

// The same for long contiguous rows (inner = 1): one block per row, a fixed tree order.
template <typename T>
__device__ void norm_rows(const T* x, T* out, i64 rows, i64 size) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * size;
        T acc = T(0);
        for (i64 j = threadIdx.x; j < size; j += blockDim.x) acc += xr[j] * xr[j];
        T s = block_sum(acc);
        if (threadIdx.x == 0) out[r] = sqrt(s);
    }
}
EXPORT(norm_rows, (const T* x, T* out, i64 rows, i64 size), (x, out, rows, size))

template <typename T>
__device__ void norm_backward(const T* x, const T* nrm, const T* g, T* dx, i64 outer, i64 size, i64 inner) {
    GRID_STRIDE(p, outer * size * inner) {
        i64 i = p % inner, o = p / (size * inner);
        i64 j = o * inner + i;
        dx[p] = nrm[j] == T(0) ? T(0) : g[j] * x[p] / nrm[j];
    }
}
EXPORT(norm_backward, (const T* x, const T* nrm, const T* g, T* dx, i64 outer, i64 size, i64 inner),
       (x, nrm, g, dx, outer, size, inner))
