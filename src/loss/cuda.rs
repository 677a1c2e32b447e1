//! CUDA launchers of the losses' own kernels (kernels/loss.cu): the NLL pick and its backward.

use crate::backend::cuda::{arg, gpu_of};
use crate::dtype::Float;
use crate::{Result, Tensor};

fn targets_i64(targets: &[usize]) -> Vec<i64> {
    targets.iter().map(|&t| t as i64).collect()
}

/// `out[i] = -logp[i, t_i]`.
pub(super) fn nll_pick<T: Float>(logp: &Tensor<T>, targets: &[usize], classes: usize) -> Result<Tensor<T>> {
    let g = gpu_of(logp)?;
    let bl = logp.dev()?;
    let dt = g.upload(&targets_i64(targets))?;
    let out = g.alloc::<T>(targets.len())?;
    let (pl, pt, po, ni, c) = (bl.ptr(), dt.ptr(), out.ptr(), targets.len() as i64, classes as i64);
    if !targets.is_empty() {
        g.launch::<T>(
            "loss",
            "nll_pick",
            targets.len(),
            &[arg(&pl), arg(&pt), arg(&po), arg(&ni), arg(&c)],
        )?;
    }
    Ok(Tensor::from_dev(out, vec![targets.len()]))
}

/// dL/dlogp: `-g[i]` at `(i, t_i)`, 0 elsewhere.
pub(super) fn nll_backward<T: Float>(gy: &Tensor<T>, targets: &[usize], shape: &[usize]) -> Result<Tensor<T>> {
    let g = gpu_of(gy)?;
    let bg = gy.dev()?;
    let dt = g.upload(&targets_i64(targets))?;
    let out = g.zeros::<T>(shape.iter().product())?;
    let classes = shape.last().copied().unwrap_or(0);
    let (pg, pt, po, ni, c) = (bg.ptr(), dt.ptr(), out.ptr(), targets.len() as i64, classes as i64);
    if !targets.is_empty() {
        g.launch::<T>(
            "loss",
            "nll_backward",
            targets.len(),
            &[arg(&pg), arg(&pt), arg(&po), arg(&ni), arg(&c)],
        )?;
    }
    Ok(Tensor::from_dev(out, shape.to_vec()))
}
