//! CPU kernels of the pooling family. Every (image, channel) plane is independent, so planes
//! run in parallel above the size threshold; each plane is computed by one thread in a fixed
//! order.

use crate::backend::cpu::PAR_THRESHOLD;
use crate::dtype::Float;
use rayon::prelude::*;

/// Geometry of a pooling window sweep over `planes` planes of `h x w` into `oh x ow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolParams {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub oh: usize,
    pub ow: usize,
}

/// Runs `f(plane_index, out_plane)` over output planes of `len` elements.
fn per_plane<X: Send>(out: &mut [X], len: usize, work: usize, f: impl Fn(usize, &mut [X]) + Sync + Send) {
    if len == 0 {
        return;
    }
    if out.len() / len > 1 && out.len().saturating_mul(work) >= PAR_THRESHOLD {
        out.par_chunks_mut(len).enumerate().for_each(|(i, o)| f(i, o));
    } else {
        out.chunks_mut(len).enumerate().for_each(|(i, o)| f(i, o));
    }
}

/// Max pooling: values and, per output, the index within its plane of the first maximum in
/// row-major window order (padding never wins; a NaN wins and stays).
pub(crate) fn max_pool<T: Float>(x: &[T], p: &PoolParams) -> (Vec<T>, Vec<usize>) {
    let (ilen, olen) = (p.h * p.w, p.oh * p.ow);
    let mut out: Vec<(T, usize)> = vec![(T::ZERO, 0); p.planes * olen];
    per_plane(&mut out, olen, p.kh * p.kw, |pl, o| {
        let plane = &x[pl * ilen..][..ilen];
        for oy in 0..p.oh {
            for ox in 0..p.ow {
                let mut best: Option<(T, usize)> = None;
                for ki in 0..p.kh {
                    let Some(iy) = (oy * p.sh + ki).checked_sub(p.ph).filter(|&y| y < p.h) else {
                        continue;
                    };
                    for kj in 0..p.kw {
                        let Some(ix) = (ox * p.sw + kj).checked_sub(p.pw).filter(|&x| x < p.w) else {
                            continue;
                        };
                        let v = plane[iy * p.w + ix];
                        match best {
                            Some((b, _)) if b.is_nan() || !(v > b || v.is_nan()) => {}
                            _ => best = Some((v, iy * p.w + ix)),
                        }
                    }
                }
                // padding <= kernel / 2 guarantees every window holds at least one pixel
                o[oy * p.ow + ox] = best.expect("a pooling window with no pixel");
            }
        }
    });
    out.into_iter().unzip()
}

/// Scatters `g` through the saved argmax indices (summing where windows overlap).
pub(crate) fn max_pool_backward<T: Float>(g: &[T], argmax: &[usize], p: &PoolParams) -> Vec<T> {
    let (ilen, olen) = (p.h * p.w, p.oh * p.ow);
    let mut dx = crate::backend::cpu::pool::zeroed(p.planes * ilen);
    per_plane(&mut dx, ilen, 1, |pl, d| {
        for (&i, &gv) in argmax[pl * olen..][..olen].iter().zip(&g[pl * olen..][..olen]) {
            d[i] += gv;
        }
    });
    dx
}

/// One output's window along one axis: input indices `start..end` (inside the input) and the
/// count its sum is divided by along that axis.
#[derive(Clone, Copy)]
struct Window {
    start: usize,
    end: usize,
    count: usize,
}

/// Average-pool windows along one axis. With count_include_pad = true, PyTorch divides by the
/// window clipped to the *padded* input (end at most len + pad), so padding dilutes the mean.
fn avg_windows(out: usize, stride: usize, pad: usize, k: usize, len: usize) -> Vec<Window> {
    (0..out)
        .map(|o| {
            let start = o * stride; // in padded coordinates
            let end = (start + k).min(len + 2 * pad);
            Window {
                start: start.saturating_sub(pad),
                end: end.saturating_sub(pad).min(len),
                count: end - start,
            }
        })
        .collect()
}

/// PyTorch's adaptive windows along one axis: [floor(i·len/out), ceil((i+1)·len/out)).
fn adaptive_windows(out: usize, len: usize) -> Vec<Window> {
    (0..out)
        .map(|i| {
            let (start, end) = (i * len / out, ((i + 1) * len).div_ceil(out));
            Window {
                start,
                end,
                count: end - start,
            }
        })
        .collect()
}

/// The row and column windows of an average pool (`adaptive` picks PyTorch's adaptive rule).
fn windows(p: &PoolParams, adaptive: bool) -> (Vec<Window>, Vec<Window>) {
    if adaptive {
        (adaptive_windows(p.oh, p.h), adaptive_windows(p.ow, p.w))
    } else {
        (
            avg_windows(p.oh, p.sh, p.ph, p.kh, p.h),
            avg_windows(p.ow, p.sw, p.pw, p.kw, p.w),
        )
    }
}

/// Average pooling: each output is its window's sum divided by the window's count (average
/// pool with padding counted, or adaptive average pool).
pub(crate) fn avg_pool<T: Float>(x: &[T], p: &PoolParams, adaptive: bool) -> Vec<T> {
    let (ilen, olen) = (p.h * p.w, p.oh * p.ow);
    let (rows, cols) = windows(p, adaptive);
    let mut out = crate::backend::cpu::pool::zeroed(p.planes * olen);
    per_plane(&mut out, olen, ilen / olen.max(1) + p.kh * p.kw + 1, |pl, o| {
        let plane = &x[pl * ilen..][..ilen];
        for (oy, r) in rows.iter().enumerate() {
            for (ox, c) in cols.iter().enumerate() {
                let mut s = T::ZERO;
                for iy in r.start..r.end {
                    for v in &plane[iy * p.w + c.start..iy * p.w + c.end] {
                        s += *v;
                    }
                }
                o[oy * p.ow + ox] = s / T::from_usize(r.count * c.count);
            }
        }
    });
    out
}

/// Backward of [`avg_pool`]: each output's gradient, divided by the same count, added to
/// every input pixel of its window.
pub(crate) fn avg_pool_backward<T: Float>(g: &[T], p: &PoolParams, adaptive: bool) -> Vec<T> {
    let (ilen, olen) = (p.h * p.w, p.oh * p.ow);
    let (rows, cols) = windows(p, adaptive);
    let mut dx = crate::backend::cpu::pool::zeroed(p.planes * ilen);
    per_plane(&mut dx, ilen, p.kh * p.kw + 1, |pl, d| {
        let gp = &g[pl * olen..][..olen];
        for (oy, r) in rows.iter().enumerate() {
            for (ox, c) in cols.iter().enumerate() {
                let share = gp[oy * p.ow + ox] / T::from_usize(r.count * c.count);
                for iy in r.start..r.end {
                    for v in &mut d[iy * p.w + c.start..iy * p.w + c.end] {
                        *v += share;
                    }
                }
            }
        }
    });
    dx
}
