// Pooling over [planes, H, W] planes: max (argmax saved, plane-local index iy*W + ix, first
// maximum wins, NaN wins), average (count_include_pad, as PyTorch's default) and adaptive
// average. The backward passes gather per input pixel over the windows that contain it, in
// ascending output order (the CPU order): deterministic, no atomics.
#include "common.cuh"

struct PoolGeom {
    i64 planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow, adaptive;
};

// The window of output o along one axis, clipped to the input: [start, end), and the divisor.
__device__ __forceinline__ void window(i64 o, i64 out, i64 len, i64 k, i64 stride, i64 pad, i64 adaptive, i64* start,
                                       i64* end, i64* count) {
    if (adaptive) {
        *start = o * len / out;
        *end = ((o + 1) * len + out - 1) / out;
        *count = *end - *start;
    } else {
        i64 s = o * stride, e = s + k;
        if (e > len + 2 * pad) e = len + 2 * pad;
        *count = e - s;
        s -= pad;
        e -= pad;
        *start = s < 0 ? 0 : s;
        *end = e < 0 ? 0 : (e > len ? len : e);
    }
}

// The outputs along one axis whose window may contain input position i: [lo, hi].
__device__ __forceinline__ void candidates(i64 i, i64 out, i64 k, i64 stride, i64 pad, i64 adaptive, i64* lo,
                                           i64* hi) {
    if (adaptive) {
        *lo = 0;
        *hi = out - 1;
    } else {
        i64 t = i + pad - k + 1;
        *lo = t <= 0 ? 0 : (t + stride - 1) / stride;
        *hi = (i + pad) / stride;
        if (*hi > out - 1) *hi = out - 1;
    }
}

template <typename T>
__device__ void max_pool_forward(const T* x, T* y, i64* argmax, PoolGeom g) {
    GRID_STRIDE(i, g.planes * g.oh * g.ow) {
        i64 ox = i % g.ow, oy = (i / g.ow) % g.oh, pl = i / (g.ow * g.oh);
        const T* plane = x + pl * g.h * g.w;
        bool found = false;
        T best = T(0);
        i64 bi = 0;
        for (i64 ki = 0; ki < g.kh; ++ki) {
            i64 iy = oy * g.sh + ki - g.ph;
            if (iy < 0 || iy >= g.h) continue;
            for (i64 kj = 0; kj < g.kw; ++kj) {
                i64 ix = ox * g.sw + kj - g.pw;
                if (ix < 0 || ix >= g.w) continue;
                T v = plane[iy * g.w + ix];
                if (!found || (!(best != best) && (v > best || v != v))) {
                    best = v;
                    bi = iy * g.w + ix;
                    found = true;
                }
            }
        }
        y[i] = best;
        argmax[i] = bi;
    }
}
EXPORT(max_pool_forward, (const T* x, T* y, i64* argmax, PoolGeom g), (x, y, argmax, g))

template <typename T>
__device__ void max_pool_backward(const T* gy, const i64* argmax, T* dx, PoolGeom g) {
    GRID_STRIDE(i, g.planes * g.h * g.w) {
        i64 ix = i % g.w, iy = (i / g.w) % g.h, pl = i / (g.w * g.h);
        i64 here = iy * g.w + ix, base = pl * g.oh * g.ow;
        i64 ylo, yhi, xlo, xhi;
        candidates(iy, g.oh, g.kh, g.sh, g.ph, 0, &ylo, &yhi);
        candidates(ix, g.ow, g.kw, g.sw, g.pw, 0, &xlo, &xhi);
        T acc = T(0);
        for (i64 oy = ylo; oy <= yhi; ++oy)
            for (i64 ox = xlo; ox <= xhi; ++ox) {
                i64 o = base + oy * g.ow + ox;
                if (argmax[o] == here) acc += gy[o];
            }
        dx[i] = acc;
    }
}
EXPORT(max_pool_backward, (const T* gy, const i64* argmax, T* dx, PoolGeom g), (gy, argmax, dx, g))

template <typename T>
__device__ void avg_pool_forward(const T* x, T* y, PoolGeom g) {
    GRID_STRIDE(i, g.planes * g.oh * g.ow) {
        i64 ox = i % g.ow, oy = (i / g.ow) % g.oh, pl = i / (g.ow * g.oh);
        const T* plane = x + pl * g.h * g.w;
        i64 ys, ye, yc, xs, xe, xc;
        window(oy, g.oh, g.h, g.kh, g.sh, g.ph, g.adaptive, &ys, &ye, &yc);
        window(ox, g.ow, g.w, g.kw, g.sw, g.pw, g.adaptive, &xs, &xe, &xc);
        T s = T(0);
        for (i64 iy = ys; iy < ye; ++iy)
            for (i64 ix = xs; ix < xe; ++ix) s += plane[iy * g.w + ix];
        y[i] = s / T(yc * xc);
    }
}
EXPORT(avg_pool_forward, (const T* x, T* y, PoolGeom g), (x, y, g))

template <typename T>
__device__ void avg_pool_backward(const T* gy, T* dx, PoolGeom g) {
    GRID_STRIDE(i, g.planes * g.h * g.w) {
        i64 ix = i % g.w, iy = (i / g.w) % g.h, pl = i / (g.w * g.h);
        const T* gp = gy + pl * g.oh * g.ow;
        i64 ylo, yhi, xlo, xhi;
        candidates(iy, g.oh, g.kh, g.sh, g.ph, g.adaptive, &ylo, &yhi);
        candidates(ix, g.ow, g.kw, g.sw, g.pw, g.adaptive, &xlo, &xhi);
        T acc = T(0);
        for (i64 oy = ylo; oy <= yhi; ++oy) {
            i64 ys, ye, yc;
            window(oy, g.oh, g.h, g.kh, g.sh, g.ph, g.adaptive, &ys, &ye, &yc);
            if (iy < ys || iy >= ye) continue;
            for (i64 ox = xlo; ox <= xhi; ++ox) {
                i64 xs, xe, xc;
                window(ox, g.ow, g.w, g.kw, g.sw, g.pw, g.adaptive, &xs, &xe, &xc);
                if (ix < xs || ix >= xe) continue;
                acc += gp[oy * g.ow + ox] / T(yc * xc);
            }
        }
        dx[i] = acc;
    }
}
EXPORT(avg_pool_backward, (const T* gy, T* dx, PoolGeom g), (gy, dx, g))
