//! CUDA launchers of batch norm (kernels in kernels/batchnorm.cu). The per-channel vectors
//! (C values: mean, inverse std, scale, shift, the backward's two sums) are small and cross
//! to the host, where mod.rs combines them exactly as on the CPU; the passes over the
//! activations run on the GPU.

use super::cpu::BnDims;
use crate::backend::cuda::{DevBuf, Gpu, arg, gpu_of};
use crate::dtype::Float;
use crate::{Result, Tensor};

fn dims(d: BnDims) -> (i64, i64, i64) {
    (d.n as i64, d.c as i64, d.s as i64)
}

/// One block per channel (capped; the kernels loop over channels).
fn channel_grid(d: BnDims) -> u32 {
    d.c.clamp(1, 65_535) as u32
}

fn pairs<T: Float>(g: &'static Gpu, a: &DevBuf<T>, b: &DevBuf<T>) -> Result<Vec<(T, T)>> {
    Ok(g.download(a)?.into_iter().zip(g.download(b)?).collect())
}

/// Per channel: (mean, sum of squared deviations).
pub(super) fn channel_stats<T: Float>(x: &Tensor<T>, d: BnDims) -> Result<Vec<(T, T)>> {
    let g = gpu_of(x)?;
    let bx = x.dev()?;
    let (mean, sq) = (g.zeros::<T>(d.c)?, g.zeros::<T>(d.c)?);
    let (px, pm, ps) = (bx.ptr(), mean.ptr(), sq.ptr());
    let (n, c, s) = dims(d);
    if d.c > 0 && d.per_channel() > 0 {
        g.launch_grid::<T>(
            "batchnorm",
            "bn_stats",
            channel_grid(d),
            &[arg(&px), arg(&pm), arg(&ps), arg(&n), arg(&c), arg(&s)],
        )?;
    }
    pairs(g, &mean, &sq)
}

/// `(x - mean[c]) * scale[c] + shift[c]`.
pub(super) fn normalize<T: Float>(x: &Tensor<T>, d: BnDims, mean: &[T], scale: &[T], shift: &[T]) -> Result<Tensor<T>> {
    let g = gpu_of(x)?;
    let bx = x.dev()?;
    let (dm, dk, db) = (g.upload(mean)?, g.upload(scale)?, g.upload(shift)?);
    let out = g.alloc::<T>(x.numel())?;
    let (px, po, pm, pk, pb) = (bx.ptr(), out.ptr(), dm.ptr(), dk.ptr(), db.ptr());
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
    let (dm, dr) = (g.upload(mean)?, g.upload(invstd)?);
    let (sg, sgx) = (g.zeros::<T>(d.c)?, g.zeros::<T>(d.c)?);
    let (px, pg, pm, pr, pa, pb) = (bx.ptr(), bg.ptr(), dm.ptr(), dr.ptr(), sg.ptr(), sgx.ptr());
    let (n, c, s) = dims(d);
    if d.c > 0 && d.per_channel() > 0 {
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
        )?;
    }
    pairs(g, &sg, &sgx)
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
    let (dm, dr, dk, da, db) = (
        g.upload(mean)?,
        g.upload(invstd)?,
        g.upload(k)?,
        g.upload(&ca)?,
        g.upload(&cb)?,
    );
    let out = g.alloc::<T>(x.numel())?;
    let (px, pg, pm, pr, pk, pa, pb, po) = (
        bx.ptr(),
        bg.ptr(),
        dm.ptr(),
        dr.ptr(),
        dk.ptr(),
        da.ptr(),
        db.ptr(),
        out.ptr(),
    );
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
