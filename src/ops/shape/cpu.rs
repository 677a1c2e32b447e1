//! CPU kernels for the shape family: one strided gather serves permute and expand.

use crate::backend::cpu::for_each_row;
use crate::dtype::Float;
use crate::shape::{broadcast_strides, numel, strides};

/// `out[i] = x[sum_d idx_d(i) * src[d]]` over the row-major output shape `out_shape`: a copy
/// of `x` read through arbitrary strides (0 for broadcast axes), row by row of the last axis.
fn strided_gather<T: Float>(x: &[T], out_shape: &[usize], src: &[usize]) -> Vec<T> {
    let n = numel(out_shape);
    let mut out = crate::backend::cpu::pool::zeroed(n);
    if n == 0 {
        return out;
    }
    let rank = out_shape.len();
    if rank == 0 {
        out[0] = x[0];
        return out;
    }
    let out_strides = strides(out_shape);
    let inner = out_shape[rank - 1];
    let step = src[rank - 1];
    for_each_row(&mut out, inner, inner, |r, row| {
        let mut rem = r * inner;
        let mut off = 0;
        for d in 0..rank - 1 {
            off += rem / out_strides[d] * src[d];
            rem %= out_strides[d];
        }
        for (j, o) in row.iter_mut().enumerate() {
            *o = x[off + j * step];
        }
    });
    out
}

/// Copies `x` (shape `shape`) into the layout of `x.permute(perm)`.
pub(crate) fn permute<T: Float>(x: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let in_strides = strides(shape);
    let src: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    strided_gather(x, &out_shape, &src)
}

/// Copies `x` (shape `shape`) broadcast to `out_shape`.
pub(crate) fn expand<T: Float>(x: &[T], shape: &[usize], out_shape: &[usize]) -> Vec<T> {
    strided_gather(x, out_shape, &broadcast_strides(shape, out_shape))
}
