// Batch norm over [N, C, S] (S = H*W, or 1), entirely on the device: nothing per channel
// crosses to the host, so a layer never waits for the GPU. Formulas in src/ops/batchnorm/mod.rs.
//
// Each channel's M = N*S values are cut into `parts` equal ranges (the launcher picks `parts`
// from the shape alone, enough for C*parts blocks to fill a GPU), one block per (channel, part):
// two-stage reductions, deterministic (fixed tree order inside a block, fixed part order in the
// combine, no atomics), so the same input gives the same bits run to run.
//
// Forward (training): bn_stats_partial -> bn_params (combine, invstd, scale/shift, running
// statistics updated in place) -> bn_normalize. Eval: bn_params from the running statistics ->
// bn_normalize. Backward: bn_grad_partial -> bn_grad_params (dw, db, the dx coefficients) ->
// bn_grad_input.
#include "common.cuh"

// The range [lo, hi) of part p of a channel's m values.
__device__ __forceinline__ void part_range(i64 m, i64 p, i64 parts, i64* lo, i64* hi) {
    *lo = m * p / parts;
    *hi = m * (p + 1) / parts;
}

// Element j (0 <= j < n*s) of channel ch.
__device__ __forceinline__ i64 chan_at(i64 j, i64 ch, i64 c, i64 s) {
    i64 b = j / s;
    return (b * c + ch) * s + (j - b * s);
}

// Block (ch, p): part[2 (ch parts + p)] = the mean of its range and the sum of squared
// deviations from that mean (two passes over the range). blockDim a power of two.
template <typename T>
__device__ void bn_stats_partial(const T* x, T* part, i64 n, i64 c, i64 s, i64 parts) {
    i64 m = n * s;
    for (i64 blk = blockIdx.x; blk < c * parts; blk += gridDim.x) {
        i64 ch = blk / parts, lo, hi;
        part_range(m, blk - ch * parts, parts, &lo, &hi);
        T acc = T(0);
        for (i64 j = lo + threadIdx.x; j < hi; j += blockDim.x) acc += x[chan_at(j, ch, c, s)];
        T total = block_sum(acc);
        T mu = hi > lo ? total / T(hi - lo) : T(0);
        T acc2 = T(0);
        for (i64 j = lo + threadIdx.x; j < hi; j += blockDim.x) {
            T d = x[chan_at(j, ch, c, s)] - mu;
            acc2 += d * d;
        }
        T q = block_sum(acc2);
        if (threadIdx.x == 0) {
            part[2 * blk] = mu;
            part[2 * blk + 1] = q;
        }
    }
}
EXPORT(bn_stats_partial, (const T* x, T* part, i64 n, i64 c, i64 s, i64 parts), (x, part, n, c, s, parts))

// Which of bn_params' optional pointers are given (bit flags).
#define BN_TRAINING 1
#define BN_WEIGHT 2
#define BN_BIAS 4
#define BN_RUNNING_MEAN 8
#define BN_RUNNING_VAR 16

// One thread per channel. out = [mean | invstd | scale | shift], each C values.
// Training: combines the parts in order (Chan et al.'s pairwise update of count, mean and
// sum of squared deviations), normalises with the biased variance and blends the running
// statistics in place (rm = (1 - momentum) rm + momentum mean, rv likewise with the unbiased
// variance). Eval: mean = rm, var = rv. scale = w * invstd (or invstd), shift = b (or 0).
template <typename T>
__device__ void bn_params(const T* part, const T* w, const T* b, T* rm, T* rv, T* out, i64 n, i64 c, i64 s,
                          i64 parts, T eps, T momentum, i64 flags) {
    GRID_STRIDE(ch, c) {
        i64 m = n * s;
        T mean, var;
        if (flags & BN_TRAINING) {
            T cnt = T(0), sq = T(0);
            mean = T(0);
            for (i64 p = 0; p < parts; ++p) {
                i64 lo, hi;
                part_range(m, p, parts, &lo, &hi);
                if (hi == lo) continue;
                T nb = T(hi - lo), tot = cnt + nb;
                T delta = part[2 * (ch * parts + p)] - mean;
                mean += delta * (nb / tot);
                sq += part[2 * (ch * parts + p) + 1] + delta * delta * (cnt * nb / tot);
                cnt = tot;
            }
            var = sq / T(m);
            T keep = T(1) - momentum;
            if (flags & BN_RUNNING_MEAN) rm[ch] = keep * rm[ch] + momentum * mean;
            if (flags & BN_RUNNING_VAR) rv[ch] = keep * rv[ch] + momentum * (sq / T(m - 1));
        } else {
            mean = rm[ch];
            var = rv[ch];
        }
        T r = T(1) / sqrt(var + eps);
        out[ch] = mean;
        out[c + ch] = r;
        out[2 * c + ch] = (flags & BN_WEIGHT) ? w[ch] * r : r;
        out[3 * c + ch] = (flags & BN_BIAS) ? b[ch] : T(0);
    }
}
EXPORT(bn_params,
       (const T* part, const T* w, const T* b, T* rm, T* rv, T* out, i64 n, i64 c, i64 s, i64 parts, T eps,
        T momentum, i64 flags),
       (part, w, b, rm, rv, out, n, c, s, parts, eps, momentum, flags))

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

// Block (ch, p): part[2 (ch parts + p)] = sum g and sum g (x - mean) over its range.
template <typename T>
__device__ void bn_grad_partial(const T* x, const T* g, const T* mean, T* part, i64 n, i64 c, i64 s, i64 parts) {
    i64 m = n * s;
    for (i64 blk = blockIdx.x; blk < c * parts; blk += gridDim.x) {
        i64 ch = blk / parts, lo, hi;
        part_range(m, blk - ch * parts, parts, &lo, &hi);
        T mu = mean[ch];
        T a = T(0), bb = T(0);
        for (i64 j = lo + threadIdx.x; j < hi; j += blockDim.x) {
            i64 q = chan_at(j, ch, c, s);
            a += g[q];
            bb += g[q] * (x[q] - mu);
        }
        T ta = block_sum(a);
        T tb = block_sum(bb);
        if (threadIdx.x == 0) {
            part[2 * blk] = ta;
            part[2 * blk + 1] = tb;
        }
    }
}
EXPORT(bn_grad_partial, (const T* x, const T* g, const T* mean, T* part, i64 n, i64 c, i64 s, i64 parts),
       (x, g, mean, part, n, c, s, parts))

// One thread per channel, after bn_grad_partial (or with parts = 0 when no sum is needed):
// sg = sum g, sgx = invstd * sum g (x - mean) (= sum g xhat), summed over the parts in order.
// db = sg and dw = sgx where asked for (0 = not); coef = [k | a | b] with k = w invstd (or
// invstd), and in training a = sg / M, b = sgx / M (else 0), for bn_grad_input.
template <typename T>
__device__ void bn_grad_params(const T* part, const T* params, const T* w, T* dw, T* db, T* coef, i64 n, i64 c,
                               i64 s, i64 parts, i64 flags) {
    GRID_STRIDE(ch, c) {
        T sg = T(0), sgx = T(0);
        for (i64 p = 0; p < parts; ++p) {
            sg += part[2 * (ch * parts + p)];
            sgx += part[2 * (ch * parts + p) + 1];
        }
        T r = params[c + ch];
        sgx = sgx * r;
        if (db) db[ch] = sg;
        if (dw) dw[ch] = sgx;
        T m = T(n * s);
        coef[ch] = (flags & BN_WEIGHT) ? w[ch] * r : r;
        coef[c + ch] = (flags & BN_TRAINING) ? sg / m : T(0);
        coef[2 * c + ch] = (flags & BN_TRAINING) ? sgx / m : T(0);
    }
}
EXPORT(bn_grad_params,
       (const T* part, const T* params, const T* w, T* dw, T* db, T* coef, i64 n, i64 c, i64 s, i64 parts,
        i64 flags),
       (part, params, w, dw, db, coef, n, c, s, parts, flags))

// Training: dx = k (g - a - (x - mean) invstd b); eval: dx = k g (a = b = 0 there, but the
// product is skipped so that an infinite x cannot turn dx into NaN).
template <typename T>
__device__ void bn_grad_input(const T* x, const T* g, const T* params, const T* coef, T* dx, i64 n, i64 c, i64 s,
                              i64 training) {
    GRID_STRIDE(i, n * c * s) {
        i64 ch = (i / s) % c;
        T k = coef[ch];
        dx[i] = training ? k * (g[i] - coef[c + ch] - (x[i] - params[ch]) * params[c + ch] * coef[2 * c + ch])
                         : k * g[i];
    }
}
EXPORT(bn_grad_input,
       (const T* x, const T* g, const T* params, const T* coef, T* dx, i64 n, i64 c, i64 s, i64 training),
       (x, g, params, coef, dx, n, c, s, training))
