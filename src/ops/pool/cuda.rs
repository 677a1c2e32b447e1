//! CUDA launchers of the pooling family (kernels in kernels/pool.cu). Max pooling keeps its
//! argmax (plane-local indices) on the GPU for the backward pass.

use super::cpu::PoolParams;
use crate::backend::cuda::{DevBuf, arg, gpu_of};
use crate::dtype::Float;
use crate::{Result, Tensor};

/// The `PoolGeom` struct of kernels/pool.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct PoolGeom {
    planes: i64,
    h: i64,
    w: i64,
    kh: i64,
    kw: i64,
    sh: i64,
    sw: i64,
    ph: i64,
    pw: i64,
    oh: i64,
    ow: i64,
    adaptive: i64,
}
impl crate::backend::cuda::Param for PoolGeom {}

fn geom(p: &PoolParams, adaptive: bool) -> PoolGeom {
    let i = |v: usize| v as i64;
    PoolGeom {
        planes: i(p.planes),
        h: i(p.h),
        w: i(p.w),
        kh: i(p.kh),
        kw: i(p.kw),
        sh: i(p.sh),
        sw: i(p.sw),
        ph: i(p.ph),
        pw: i(p.pw),
        oh: i(p.oh),
        ow: i(p.ow),
        adaptive: i64::from(adaptive),
    }
}

/// Max pooling: the output (`[planes * oh * ow]`, flat) and the argmax on the GPU.
pub(super) fn max_pool<T: Float>(x: &Tensor<T>, p: &PoolParams) -> Result<(DevBuf<T>, DevBuf<i64>)> {
    let g = gpu_of(x)?;
    let bx = x.dev()?;
    let n = p.planes * p.oh * p.ow;
    let (out, idx) = (g.alloc::<T>(n)?, g.alloc::<i64>(n)?);
    let (px, po, pi, ge) = (bx.ptr(), out.ptr(), idx.ptr(), geom(p, false));
    if n > 0 {
        g.launch::<T>("pool", "max_pool_forward", n, &[arg(&px), arg(&po), arg(&pi), arg(&ge)])?;
    }
    Ok((out, idx))
}

pub(super) fn max_pool_backward<T: Float>(gy: &Tensor<T>, argmax: &DevBuf<i64>, p: &PoolParams) -> Result<DevBuf<T>> {
    let g = gpu_of(gy)?;
    let bg = gy.dev()?;
    let n = p.planes * p.h * p.w;
    let out = g.alloc::<T>(n)?;
    let (pg, pi, po, ge) = (bg.ptr(), argmax.ptr(), out.ptr(), geom(p, false));
    if n > 0 {
        g.launch::<T>(
            "pool",
            "max_pool_backward",
            n,
            &[arg(&pg), arg(&pi), arg(&po), arg(&ge)],
        )?;
    }
    Ok(out)
}

pub(super) fn avg_pool<T: Float>(x: &Tensor<T>, p: &PoolParams, adaptive: bool) -> Result<DevBuf<T>> {
    let g = gpu_of(x)?;
    let bx = x.dev()?;
    let n = p.planes * p.oh * p.ow;
    let out = g.alloc::<T>(n)?;
    let (px, po, ge) = (bx.ptr(), out.ptr(), geom(p, adaptive));
    if n > 0 {
        g.launch::<T>("pool", "avg_pool_forward", n, &[arg(&px), arg(&po), arg(&ge)])?;
    }
    Ok(out)
}

pub(super) fn avg_pool_backward<T: Float>(gy: &Tensor<T>, p: &PoolParams, adaptive: bool) -> Result<DevBuf<T>> {
    let g = gpu_of(gy)?;
    let bg = gy.dev()?;
    let n = p.planes * p.h * p.w;
    let out = g.alloc::<T>(n)?;
    let (pg, po, ge) = (bg.ptr(), out.ptr(), geom(p, adaptive));
    if n > 0 {
        g.launch::<T>("pool", "avg_pool_backward", n, &[arg(&pg), arg(&po), arg(&ge)])?;
    }
    Ok(out)
}
