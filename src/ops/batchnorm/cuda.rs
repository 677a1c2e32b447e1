//! CUDA launchers of batch norm (kernels in kernels/batchnorm.cu). The per-channel vectors
//! (C values: mean, inverse std, scale, shift, the backward's two sums) are small and cross
//! to the host, where mod.rs combines them exactly as on the CPU; the passes over the
//! activations run on the GPU. Each pass moves its per-channel vectors in one copy (packed into
//! one buffer), so a layer costs one synchronisation per pass.

use super::cpu::BnDims;
use crate::backend::cuda::{Gpu, arg, gpu_of};
use crate::dtype::Float;
use crate::{Result, Tensor};

fn dims(d: BnDims) -> (i64, i64, i64) {
    (d.n as i64, d.c as i64, d.s as i64)
}

/// One block per channel (capped; the kernels loop over channels).
fn channel_grid(d: BnDims) -> u32 {
    d.c.clamp(1, 65_535) as u32
}

/// Runs `launch(first, second)` with two per-channel output vectors (one buffer of 2C) and
/// brings them back in one copy as pairs.
fn pairs<T: Float>(g: &'static Gpu, c: usize, launch: impl FnOnce(u64, u64) -> Result<()>) -> Result<Vec<(T, T)>> {
    let out = g.zeros::<T>(2 * c)?;
    launch(out.ptr(), out.ptr() + (c * size_of::<T>()) as u64)?;
    let v = g.download(&out)?;
    Ok(v[..c].iter().copied().zip(v[c..].iter().copied()).collect())
}

/// Per channel: (mean, sum of squared deviations).
pub(super) fn channel_stats<T: Float>(x: &Tensor<T>, d: BnDims) -> Result<Vec<(T, T)>> {
    let g = gpu_of(x)?;
    let bx = x.dev()?;
    let px = bx.ptr();
    let (n, c, s) = dims(d);
    pairs(g, d.c, |pm, ps| {
        if d.c == 0 || d.per_channel() == 0 {
            return Ok(());
        }
        g.launch_grid::<T>(
            "batchnorm",
            "bn_stats",
            channel_grid(d),
            &[arg(&px), arg(&pm), arg(&ps), arg(&n), arg(&c), arg(&s)],
        )
    })
}

/// `(x - mean[c]) * scale[c] + shift[c]`.
pub(super) fn normalize<T: Float>(x: &Tensor<T>, d: BnDims, mean: &[T], scale: &[T], shift: &[T]) -> Result<Tensor<T>> {
    let g = gpu_of(x)?;
    let bx = x.dev()?;
    let (_params, p) = g.upload_parts(&[mean, scale, shift])?;
    let out = g.alloc::<T>(x.numel())?;
    let (px, po, pm, pk, pb) = (bx.ptr(), out.ptr(), p[0], p[1], p[2]);
    let (n, c, s) = dims(d);
    if x.numel() > 0 {
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

/// Per channel: (sum g, invstd * sum g (x - mean)).
pub(super) fn grad_sums<T: Float>(
    x: &Tensor<T>,
    gy: &Tensor<T>,
    d: BnDims,
    mean: &[T],
    invstd: &[T],
) -> Result<Vec<(T, T)>> {
    let g = gpu_of(x)?;
    let (bx, bg) = (x.dev()?, gy.dev()?);
    let (_params, p) = g.upload_parts(&[mean, invstd])?;
    let (px, pg, pm, pr) = (bx.ptr(), bg.ptr(), p[0], p[1]);
    let (n, c, s) = dims(d);
    pairs(g, d.c, |pa, pb| {
        if d.c == 0 || d.per_channel() == 0 {
            return Ok(());
        }
        g.launch_grid::<T>(
            "batchnorm",
            "bn_grad_sums",
            channel_grid(d),
            &[
                arg(&px),
                arg(&pg),
                arg(&pm),
                arg(&pr),
                arg(&pa),
                arg(&pb),
                arg(&n),
                arg(&c),
                arg(&s),
            ],
        )
    })
}

/// dx = k (g - a - (x - mean) invstd b) with per-channel (a, b) = `coefs`, or k g without.
#[allow(clippy::too_many_arguments)]
pub(super) fn grad_input<T: Float>(
    x: &Tensor<T>,
    gy: &Tensor<T>,
    d: BnDims,
    mean: &[T],
    invstd: &[T],
    k: &[T],
    coefs: Option<&[(T, T)]>,
) -> Result<Tensor<T>> {
    let g = gpu_of(x)?;
    let (bx, bg) = (x.dev()?, gy.dev()?);
    let (ca, cb): (Vec<T>, Vec<T>) = match coefs {
        Some(ab) => ab.iter().copied().unzip(),
        None => (vec![T::ZERO; d.c], vec![T::ZERO; d.c]),
    };
    let (_params, p) = g.upload_parts(&[mean, invstd, k, &ca, &cb])?;
    let out = g.alloc::<T>(x.numel())?;
    let (px, pg, po) = (bx.ptr(), bg.ptr(), out.ptr());
    let (pm, pr, pk, pa, pb) = (p[0], p[1], p[2], p[3], p[4]);
    let (n, c, s) = dims(d);
    let has = i64::from(coefs.is_some());
    if x.numel() > 0 {
        g.launch::<T>(
            "batchnorm",
            "bn_grad_input",
            x.numel(),
            &[
                arg(&px),
                arg(&pg),
                arg(&pm),
                arg(&pr),
                arg(&pk),
                arg(&pa),
                arg(&pb),
                arg(&po),
                arg(&n),
                arg(&c),
                arg(&s),
                arg(&has),
            ],
        )?;
    }
    Ok(Tensor::from_dev(out, x.shape().to_vec()))
}
