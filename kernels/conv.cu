// Convolution's data movement: im2col (image -> column matrix) and col2im (its adjoint), for a
// chunk of images at once, plus the bias add. The products themselves are cuBLAS GEMMs
// (src/ops/conv/cuda.rs).
//
// A 1x1, stride-1, unpadded convolution needs no im2col: an image [C, H*W] is its own column
// matrix.
//
// Column matrix of one image: rows (ci, ki, kj) = C*R*S, columns (oy, ox) = OH*OW;
// col[(ci*R + ki)*S + kj][oy*OW + ox] = x[ci][oy*sh + ki - ph][ox*sw + kj - pw] (0 outside).
#include "common.cuh"

struct ConvGeom {
    i64 c, h, w, r, s, sh, sw, ph, pw, oh, ow;
};

// wide = 0: one [K, P] matrix per image, one after the other ([images, K, P]);
// wide = 1: one [K, images*P] matrix, image b's columns at b*P.. (the weight gradient's layout:
// a single GEMM then sums over all images and positions).
template <typename T>
__device__ void im2col(const T* x, T* col, i64 images, ConvGeom g, i64 wide) {
    i64 k = g.c * g.r * g.s, p = g.oh * g.ow;
    GRID_STRIDE(i, images * k * p) {
        i64 q = i % p, row = (i / p) % k, img = i / (p * k);
        i64 oy = q / g.ow, ox = q - oy * g.ow;
        i64 kj = row % g.s, ki = (row / g.s) % g.r, ci = row / (g.r * g.s);
        i64 iy = oy * g.sh + ki - g.ph, ix = ox * g.sw + kj - g.pw;
        T v = T(0);
        if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) v = x[((img * g.c + ci) * g.h + iy) * g.w + ix];
        col[wide ? (row * images + img) * p + q : i] = v;
    }
}
EXPORT(im2col, (const T* x, T* col, i64 images, ConvGeom g, i64 wide), (x, col, images, g, wide))

// dst[r][b*P + q] = src[b][r][q]: [images, rows, P] -> [rows, images*P] (a 1x1 convolution's
// input, or an output gradient, in the weight gradient's layout).
template <typename T>
__device__ void fold_batch(const T* src, T* dst, i64 images, i64 rows, i64 p) {
    GRID_STRIDE(i, images * rows * p) {
        i64 q = i % p, r = (i / p) % rows, b = i / (p * rows);
        dst[(r * images + b) * p + q] = src[i];
    }
}
EXPORT(fold_batch, (const T* src, T* dst, i64 images, i64 rows, i64 p), (src, dst, images, rows, p))

// dx[ci][iy][ix] = sum over (ki, kj) with an output (oy, ox) reading this pixel of
// dcol[(ci, ki, kj)][(oy, ox)]. One thread per input pixel, gathering: no atomics, fixed order.
template <typename T>
__device__ void col2im(const T* dcol, T* dx, i64 images, ConvGeom g) {
    i64 k = g.c * g.r * g.s, p = g.oh * g.ow;
    GRID_STRIDE(i, images * g.c * g.h * g.w) {
        i64 ix = i % g.w, iy = (i / g.w) % g.h, ci = (i / (g.w * g.h)) % g.c, img = i / (g.w * g.h * g.c);
        const T* dc = dcol + img * k * p;
        T acc = T(0);
        for (i64 ki = 0; ki < g.r; ++ki) {
            i64 ty = iy + g.ph - ki;  // = oy * sh
            if (ty < 0 || ty % g.sh != 0) continue;
            i64 oy = ty / g.sh;
            if (oy >= g.oh) continue;
            for (i64 kj = 0; kj < g.s; ++kj) {
                i64 tx = ix + g.pw - kj;
                if (tx < 0 || tx % g.sw != 0) continue;
                i64 ox = tx / g.sw;
                if (ox >= g.ow) continue;
                acc += dc[((ci * g.r + ki) * g.s + kj) * p + oy * g.ow + ox];
            }
        }
        dx[i] = acc;
    }
}
EXPORT(col2im, (const T* dcol, T* dx, i64 images, ConvGeom g), (dcol, dx, images, g))

// y[n][o][q] += bias[o] over [n, o, hw].
template <typename T>
__device__ void add_bias(T* y, const T* bias, i64 n, i64 o, i64 hw) {
    GRID_STRIDE(i, n * o * hw) { y[i] += bias[(i / hw) % o]; }
}
EXPORT(add_bias, (T * y, const T* bias, i64 n, i64 o, i64 hw), (y, bias, n, o, hw))
