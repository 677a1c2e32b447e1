//! CUDA launchers of the reductions (kernels in kernels/reduce.cu). Sums run one block per
//! output element over a contiguous row (after moving the reduced dims last, as the CPU kernel
//! does), with a fixed tree order: deterministic. A few long rows (a full reduction, a gradient's
//! sum of squares) are summed in two stages instead, so that enough blocks fill the GPU.

use crate::backend::cuda::{DevBuf, Gpu, ROW_BLOCK_MIN, arg, float_arg, gpu_of};
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
        let parts = row_parts(rows, row);
        if parts == 1 {
            sum_rows(g, bx.ptr(), out.ptr(), rows, row, scale)?;
        } else {
            // Two stages: parts of each row side by side, then each row's parts in order.
            let part = g.alloc::<T>(rows * parts)?;
            let (px, pp, r, w, np) = (bx.ptr(), part.ptr(), rows as i64, row as i64, parts as i64);
            g.launch_grid::<T>(
                "reduce",
                "sum_parts",
                (rows * parts).min(65_535) as u32,
                &[arg(&px), arg(&pp), arg(&r), arg(&w), arg(&np)],
            )?;
            sum_rows(g, part.ptr(), out.ptr(), rows, parts, scale)?;
        }
    }
    Ok(Tensor::from_dev(out, out_shape.to_vec()))
}

/// Blocks a reduction aims for (about two waves on a 132-SM GPU), and the fewest values worth a
/// block of its own.
const TARGET_BLOCKS: usize = 512;
const MIN_PART: usize = 4096;

/// How many parts each of `rows` rows of `row` values is summed in: 1 (a block per row) unless
/// there are too few rows to fill the GPU and the rows are long. From the shape alone, so the
/// same shape always sums in the same order.
fn row_parts(rows: usize, row: usize) -> usize {
    TARGET_BLOCKS.div_ceil(rows.max(1)).min(row.div_ceil(MIN_PART)).max(1)
}

/// `out[r] = scale * sum of row r` of the `rows x row` matrix at `x`, a block per row.
fn sum_rows<T: Float>(g: &'static Gpu, x: u64, out: u64, rows: usize, row: usize, scale: T) -> Result<()> {
    let (r, w) = (rows as i64, row as i64);
    g.launch_grid::<T>(
        "reduce",
        "sum_rows",
        rows.min(65_535) as u32,
        &[arg(&x), arg(&out), arg(&r), arg(&w), float_arg(&scale)],
    )
}

/// The flat input index of each first maximum along `dim`, read back to the host (argmax's
/// answer is host data).
pub(crate) fn argmax_flat<T: Float>(x: &Tensor<T>, dim: usize) -> Result<Vec<usize>> {
    let out = [x.numel() / x.shape()[dim]];
    let (_, idx) = max_dim(x, dim, &out)?;
    Ok(idx.gpu().download(&idx)?.into_iter().map(|v| v as usize).collect())
}

/// Maximum along `dim` as a tensor of `out_shape`, and the flat input index of each first
/// maximum, on the device.
pub(crate) fn max_dim<T: Float>(x: &Tensor<T>, dim: usize, out_shape: &[usize]) -> Result<(Tensor<T>, DevBuf<i64>)> {
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
    Ok((Tensor::from_dev(vals, out_shape.to_vec()), idx))
}

/// A tensor of `shape` holding `g[j]` at flat position `idx[j]` (distinct) and 0 elsewhere.
pub(crate) fn scatter<T: Float>(gy: &Tensor<T>, idx: &DevBuf<i64>, shape: &[usize]) -> Result<Tensor<T>> {
    let g = gpu_of(gy)?;
    let numel = shape.iter().product();
    let out = g.zeros::<T>(numel)?;
    let bg = gy.dev()?;
    let (pg, pi, po, n) = (bg.ptr(), idx.ptr(), out.ptr(), idx.len() as i64);
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
    if inner == 1 && size >= ROW_BLOCK_MIN {
        // Long contiguous rows: a block per row.
        g.launch_grid::<T>(
            "reduce",
            "norm_rows",
            outer.min(65_535) as u32,
            &[arg(&px), arg(&po), arg(&o), arg(&s)],
        )?;
    } else if outer * inner > 0 {
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
