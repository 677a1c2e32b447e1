//! CUDA launchers of batch norm (kernels in kernels/batchnorm.cu). Everything stays on the
//! device: the per-channel vectors (mean, inverse std, scale, shift, the backward's sums and
//! coefficients) are computed and consumed by kernels, and the running statistics are updated
//! in place by a kernel, so a layer performs no synchronisation and no host copy (where the CPU
//! path combines its per-channel sums on the host, in mod.rs).
//!
//! The reductions are two-stage: each channel's `M` values are cut into `parts` ranges (chosen
//! from the shape alone, so results are the same bits run to run), one block per (channel,
//! part), then one thread per channel combines its parts in order.

use super::BnArgs;
use super::reference::BnDims;
use crate::backend::cuda::{DevBuf, Gpu, arg, float_arg, gpu_of};
use crate::dtype::Float;
use crate::{Result, Tensor};

/// Blocks a reduction aims for (about two waves on a 132-SM GPU).
const TARGET_BLOCKS: usize = 512;
/// Fewest values a part is worth (below it a block would mostly idle).
const MIN_PART: usize = 2048;

// The flags of bn_params / bn_grad_params (kernels/batchnorm.cu).
const TRAINING: i64 = 1;
const WEIGHT: i64 = 2;
const BIAS: i64 = 4;
const RUNNING_MEAN: i64 = 8;
const RUNNING_VAR: i64 = 16;

/// `bit` if `on`, else 0.
fn flag(on: bool, bit: i64) -> i64 {
    if on { bit } else { 0 }
}

fn dims(d: BnDims) -> (i64, i64, i64) {
    (d.n as i64, d.c as i64, d.s as i64)
}

/// Parts per channel: enough for `C * parts` to reach [`TARGET_BLOCKS`], none smaller than
/// [`MIN_PART`] values, at least 1.
fn parts(d: BnDims) -> usize {
    let by_blocks = TARGET_BLOCKS.div_ceil(d.c.max(1));
    let by_size = d.per_channel().div_ceil(MIN_PART);
    by_blocks.min(by_size).max(1)
}

/// A device pointer, or 0 for an absent tensor (the kernel's flags say which are given).
fn ptr_of<T: Float>(t: Option<&Tensor<T>>) -> Result<u64> {
    Ok(match t {
        Some(t) => t.dev()?.ptr(),
        None => 0,
    })
}

/// The per-channel vectors a forward normalised with, kept for the backward: one buffer of
/// `4C` values, `[mean | invstd | scale | shift]`.
pub(super) struct DevStats<T: Float> {
    buf: DevBuf<T>,
}

/// The forward: `y` and the statistics it used. In training the batch statistics (the
/// running ones blended in place, unless the input is empty); in eval the running statistics.
pub(super) fn forward<T: Float>(x: &Tensor<T>, d: BnDims, a: &BnArgs<'_, T>) -> Result<(Tensor<T>, DevStats<T>)> {
    let g = gpu_of(x)?;
    let (n, c, s) = dims(d);
    let stats = g.alloc::<T>(4 * d.c)?;
    let m = d.per_channel();
    let update = a.training && m > 0;
    if d.c > 0 {
        let flags = flag(a.training, TRAINING)
            | flag(a.weight.is_some(), WEIGHT)
            | flag(a.bias.is_some(), BIAS)
            | flag(update && a.running_mean.is_some(), RUNNING_MEAN)
            | flag(update && a.running_var.is_some(), RUNNING_VAR);
        let np = if a.training && m > 0 { parts(d) } else { 0 };
        let part = g.alloc::<T>(2 * d.c * np)?;
        if np > 0 {
            let (px, pp, npi) = (x.dev()?.ptr(), part.ptr(), np as i64);
            g.launch_grid::<T>(
                "batchnorm",
                "bn_stats_partial",
                (d.c * np).min(65_535) as u32,
                &[arg(&px), arg(&pp), arg(&n), arg(&c), arg(&s), arg(&npi)],
            )?;
        }
        let (pw, pb) = (ptr_of(a.weight)?, ptr_of(a.bias)?);
        let (prm, prv) = (ptr_of(a.running_mean)?, ptr_of(a.running_var)?);
        let (pp, po, npi) = (part.ptr(), stats.ptr(), np as i64);
        let (eps, mom) = (T::from_f64(a.eps), T::from_f64(a.momentum));
        g.launch::<T>(
            "batchnorm",
            "bn_params",
            d.c,
            &[
                arg(&pp),
                arg(&pw),
                arg(&pb),
                arg(&prm),
                arg(&prv),
                arg(&po),
                arg(&n),
                arg(&c),
                arg(&s),
                arg(&npi),
                float_arg(&eps),
                float_arg(&mom),
                arg(&flags),
            ],
        )?;
        if update {
            // The kernel wrote them: bump their versions, as any in-place update does.
            for t in [a.running_mean, a.running_var].into_iter().flatten() {
                t.update_in_place_dev(|_| Ok(()))?;
            }
        }
    }
    let out = normalize(g, x, d, &stats)?;
    Ok((out, DevStats { buf: stats }))
}

/// `y = (x - mean[c]) * scale[c] + shift[c]` with the vectors of `stats`.
fn normalize<T: Float>(g: &'static Gpu, x: &Tensor<T>, d: BnDims, stats: &DevBuf<T>) -> Result<Tensor<T>> {
    let out = g.alloc::<T>(x.numel())?;
    if x.numel() > 0 {
        let px = x.dev()?.ptr();
        let at = |i: usize| stats.ptr() + (i * d.c * size_of::<T>()) as u64;
        let (po, pm, pk, pb) = (out.ptr(), at(0), at(2), at(3));
        let (n, c, s) = dims(d);
        g.launch::<T>(
            "batchnorm",
            "bn_normalize",
            x.numel(),
            &[
                arg(&px),
                arg(&po),
                arg(&pm),
                arg(&pk),
                arg(&pb),
                arg(&n),
                arg(&c),
                arg(&s),
            ],
        )?;
    }
    Ok(Tensor::from_dev(out, x.shape().to_vec()))
}

/// What the backward should produce.
pub(super) struct Wanted {
    pub dx: bool,
    pub dw: bool,
    pub db: bool,
}

/// (dx, dw, db), each only if wanted.
type Grads<T> = (Option<Tensor<T>>, Option<Tensor<T>>, Option<Tensor<T>>);

/// The backward from the forward's `stats`; `weight` is the forward's weight, if any.
pub(super) fn backward<T: Float>(
    x: &Tensor<T>,
    gy: &Tensor<T>,
    weight: Option<&Tensor<T>>,
    stats: &DevStats<T>,
    d: BnDims,
    training: bool,
    want: Wanted,
) -> Result<Grads<T>> {
    let g = gpu_of(x)?;
    let (n, c, s) = dims(d);
    let vec_c =
        |wanted: bool| -> Result<Option<DevBuf<T>>> { Ok(if wanted { Some(g.alloc::<T>(d.c)?) } else { None }) };
    let (dw, db) = (vec_c(want.dw)?, vec_c(want.db)?);
    let coef = g.alloc::<T>(3 * d.c)?;
    let need_sums = want.dw || want.db || (want.dx && training);
    let np = if need_sums && d.per_channel() > 0 { parts(d) } else { 0 };
    let part = g.alloc::<T>(2 * d.c * np)?;
    if d.c > 0 {
        let (px, pg, pst) = (x.dev()?.ptr(), gy.dev()?.ptr(), stats.buf.ptr());
        let (pp, npi) = (part.ptr(), np as i64);
        if np > 0 {
            g.launch_grid::<T>(
                "batchnorm",
                "bn_grad_partial",
                (d.c * np).min(65_535) as u32,
                &[
                    arg(&px),
                    arg(&pg),
                    arg(&pst),
                    arg(&pp),
                    arg(&n),
                    arg(&c),
                    arg(&s),
                    arg(&npi),
                ],
            )?;
        }
        let pw = ptr_of(weight)?;
        let (pdw, pdb) = (dw.as_ref().map_or(0, |b| b.ptr()), db.as_ref().map_or(0, |b| b.ptr()));
        let pc = coef.ptr();
        let flags = flag(training, TRAINING) | flag(weight.is_some(), WEIGHT);
        g.launch::<T>(
            "batchnorm",
            "bn_grad_params",
            d.c,
            &[
                arg(&pp),
                arg(&pst),
                arg(&pw),
                arg(&pdw),
                arg(&pdb),
                arg(&pc),
                arg(&n),
                arg(&c),
                arg(&s),
                arg(&npi),
                arg(&flags),
            ],
        )?;
    }
    let dx = if want.dx {
        let out = g.alloc::<T>(x.numel())?;
        if x.numel() > 0 {
            let (px, pg, pst, pc, po) = (x.dev()?.ptr(), gy.dev()?.ptr(), stats.buf.ptr(), coef.ptr(), out.ptr());
            let tr = i64::from(training);
            g.launch::<T>(
                "batchnorm",
                "bn_grad_input",
                x.numel(),
                &[
                    arg(&px),
                    arg(&pg),
                    arg(&pst),
                    arg(&pc),
                    arg(&po),
                    arg(&n),
                    arg(&c),
                    arg(&s),
                    arg(&tr),
                ],
            )?;
        }
        Some(Tensor::from_dev(out, x.shape().to_vec()))
    } else {
        None
    };
    let vec_t = |b: Option<DevBuf<T>>| b.map(|b| Tensor::from_dev(b, vec![d.c]));
    Ok((dx, vec_t(dw), vec_t(db)))
}
