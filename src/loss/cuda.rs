//! CUDA launchers of the losses' own kernels (kernels/loss.cu): one-hot rows, the NLL pick and
//! its backward. The class indices cross to the GPU once per loss call ([`DevTargets`]), with
//! an upload that does not wait for the GPU.

use crate::backend::cuda::{DevBuf, arg, gpu, gpu_of};
use crate::dtype::Float;
use crate::{Device, Error, Result, Tensor};
use std::sync::Arc;

/// One device copy of a batch's class indices (as i64), shared by the forward kernels and the
/// backward that needs them.
#[derive(Clone)]
pub(super) struct DevTargets {
    buf: Arc<DevBuf<i64>>,
}

impl DevTargets {
    /// Uploads `targets` to `device` (a GPU).
    pub(super) fn upload(targets: &[usize], device: Device) -> Result<Self> {
        let Device::Cuda(n) = device else {
            return Err(Error::device("DevTargets::upload for a CPU tensor".to_string()));
        };
        let host: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
        Ok(DevTargets {
            buf: Arc::new(gpu(n)?.upload(&host)?),
        })
    }

    fn len(&self) -> usize {
        self.buf.len()
    }
}

/// `[N, classes]` rows with 1 at each target's class.
pub(super) fn one_hot<T: Float>(t: &DevTargets, classes: usize) -> Result<Tensor<T>> {
    let g = t.buf.gpu();
    let out = g.alloc::<T>(t.len() * classes)?;
    let (pt, po, n, c) = (t.buf.ptr(), out.ptr(), t.len() as i64, classes as i64);
    if t.len() * classes > 0 {
        g.launch::<T>(
            "loss",
            "one_hot",
            t.len() * classes,
            &[arg(&pt), arg(&po), arg(&n), arg(&c)],
        )?;
    }
    Ok(Tensor::from_dev(out, vec![t.len(), classes]))
}

/// `out[i] = -logp[i, t_i]`.
pub(super) fn nll_pick<T: Float>(logp: &Tensor<T>, t: &DevTargets, classes: usize) -> Result<Tensor<T>> {
    let g = gpu_of(logp)?;
    let bl = logp.dev()?;
    let out = g.alloc::<T>(t.len())?;
    let (pl, pt, po, ni, c) = (bl.ptr(), t.buf.ptr(), out.ptr(), t.len() as i64, classes as i64);
    if t.len() > 0 {
        g.launch::<T>(
            "loss",
            "nll_pick",
            t.len(),
            &[arg(&pl), arg(&pt), arg(&po), arg(&ni), arg(&c)],
        )?;
    }
    Ok(Tensor::from_dev(out, vec![t.len()]))
}

/// dL/dlogp: `-g[i]` at `(i, t_i)`, 0 elsewhere.
pub(super) fn nll_backward<T: Float>(gy: &Tensor<T>, t: &DevTargets, shape: &[usize]) -> Result<Tensor<T>> {
    let g = gpu_of(gy)?;
    let bg = gy.dev()?;
    let out = g.zeros::<T>(shape.iter().product())?;
    let classes = shape.last().copied().unwrap_or(0);
    let (pg, pt, po, ni, c) = (bg.ptr(), t.buf.ptr(), out.ptr(), t.len() as i64, classes as i64);
    if t.len() > 0 {
        g.launch::<T>(
            "loss",
            "nll_backward",
            t.len(),
            &[arg(&pg), arg(&pt), arg(&po), arg(&ni), arg(&c)],
        )?;
    }
    Ok(Tensor::from_dev(out, shape.to_vec()))
}
