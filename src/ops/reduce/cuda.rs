//! CUDA launchers of the reductions (kernels in kernels/reduce.cu). Sums run one block per
//! output element over a contiguous row (after moving the reduced dims last, as the CPU kernel
//! does), with a fixed tree order: deterministic.

use crate::backend::cuda::{arg, float_arg, gpu_of};
use crate::dtype::Float;
use crate::shape::split_at_dim;
use crate::{Result, Tensor};

/// `scale` times the sum over the dims where `mask` is true, as a tensor of `out_shape` (the
/// kept dims, in order).
pub(crate) fn sum_dims<T: Float>(x: &Tensor<T>, mask: &[bool], scale: T, out_shape: &[usize]) -> Result<Tensor<T>> {
    let shape = x.shape();
    let kept: Vec<usize> = (0..shape.len()).filter(|&d| !mask[d]).collect();
    let reduced: Vec<usize> = (0..shape.len()).filter(|&d| mask[d]).collect();
    let row: usize = reduced.iter().map(|&d| shape[d]).product();
    let rows: usize = kept.iter().map(|&d| shape[d]).product();
    let already_last = kept.iter().enumerate().all(|(i, &d)| i == d);
    let moved = if already_last {
        x.clone()
    } else {
        let perm: Vec<usize> = kept.iter().chain(&reduced).copied().collect();
        crate::ops::shape::cuda::permute(x, &perm)?
    };
    let g = gpu_of(x)?;
    let out = g.alloc::<T>(rows)?;
    if rows > 0 {
        // Launched for empty rows too: they give 0 * scale.
        let bx = moved.dev()?;
        let (px, po, r, w) = (bx.ptr(), out.ptr(), rows as i64, row as i64);
        let grid = rows.min(65_535) as u32;
        g.launch_grid::<T>(
            "reduce",
            "sum_rows",
            grid,
            &[arg(&px), arg(&po), arg(&r), arg(&w), float_arg(&scale)],
        )?;
    }
    Ok(Tensor::from_dev(out, out_shape.to_vec()))
}

/// Maximum along `dim` as a tensor of `out_shape`, and the flat input index of each first
/// maximum.
pub(crate) fn max_dim<T: Float>(x: &Tensor<T>, dim: usize, out_shape: &[usize]) -> Result<(Tensor<T>, Vec<usize>)> {
    let (outer, size, inner) = split_at_dim(x.shape(), dim);
    let g = gpu_of(x)?;
    let bx = x.dev()?;
    let vals = g.alloc::<T>(outer * inner)?;
    let idx = g.alloc::<i64>(outer * inner)?;
    let (px, pv, pi) = (bx.ptr(), vals.ptr(), idx.ptr());
    let (o, s, i) = (outer as i64, size as i64, inner as i64);
    if outer * inner > 0 {
        g.launch::<T>(
            "reduce",
            "max_dim",
            outer * inner,
            &[arg(&px), arg(&pv), arg(&pi), arg(&o), arg(&s), arg(&i)],
        )?;
    }
    let flat = g.download(&idx)?.into_iter().map(|v| v as usize).collect();
    Ok((Tensor::from_dev(vals, out_shape.to_vec()), flat))
}

/// A tensor of `shape` holding `g[j]` at flat position `idx[j]` (distinct) and 0 elsewhere.
pub(crate) fn scatter<T: Float>(gy: &Tensor<T>, idx: &[usize], shape: &[usize]) -> Result<Tensor<T>> {
    let g = gpu_of(gy)?;
    let numel = shape.iter().product();
    let out = g.zeros::<T>(numel)?;
    let idx: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    let di = g.upload(&idx)?;
    let bg = gy.dev()?;
    let (pg, pi, po, n) = (bg.ptr(), di.ptr(), out.ptr(), idx.len() as i64);
    if n > 0 {
        g.launch::<T>("reduce", "scatter", idx.len(), &[arg(&pg), arg(&pi), arg(&po), arg(&n)])?;
    }
    Ok(Tensor::from_dev(out, shape.to_vec()))
}

/// L2 norm along `dim`, as a tensor of `out_shape`.
pub(crate) fn norm_dim<T: Float>(x: &Tensor<T>, dim: usize, out_shape: &[usize]) -> Result<Tensor<T>> {
    let (outer, size, inner) = split_at_dim(x.shape(), dim);
    let g = gpu_of(x)?;
    let bx = x.dev()?;
    let out = g.alloc::<T>(outer * inner)?;
    let (px, po) = (bx.ptr(), out.ptr());
    let (o, s, i) = (outer as i64, size as i64, inner as i64);
    if outer * inner > 0 {
        g.launch::<T>(
            "reduce",
            "norm_dim",
            outer * inner,
            &[arg(&px), arg(&po), arg(&o), arg(&s), arg(&i)],
        )?;
    }
    Ok(Tensor::from_dev(out, out_shape.to_vec()))
}

/// dL/dx of the L2 norm along `dim`: g x / n (0 where n = 0).
pub(crate) fn norm_backward<T: Float>(x: &Tensor<T>, dim: usize, nrm: &Tensor<T>, gy: &Tensor<T>) -> Result<Tensor<T>> {
    let (outer, size, inner) = split_at_dim(x.shape(), dim);
    let g = gpu_of(x)?;
    let (bx, bn, bg) = (x.dev()?, nrm.dev()?, gy.dev()?);
    let out = g.alloc::<T>(x.numel())?;
    let (px, pn, pg, po) = (bx.ptr(), bn.ptr(), bg.ptr(), out.ptr());
    let (o, s, i) = (outer as i64, size as i64, inner as i64);
    if x.numel() > 0 {
        g.launch::<T>(
            "reduce",
            "norm_backward",
            x.numel(),
            &[arg(&px), arg(&pn), arg(&pg), arg(&po), arg(&o), arg(&s), arg(&i)],
        )?;
    }
    Ok(Tensor::from_dev(out, x.shape().to_vec()))
}
