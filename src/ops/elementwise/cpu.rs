//! CPU kernels of the elementwise family: broadcast binary ops, unary ops and their backward.

use super::BinaryOp;
use super::unary::UnaryOp;
use crate::backend::cpu::{PAR_THRESHOLD, map, zip_map};
use crate::dtype::Float;
use crate::shape::{broadcast_strides, numel, strides};
use crate::{Result, Tensor};
use rayon::prelude::*;

/// Fills `out` (shape `out_shape`) with `f(a, b)` where `a`, `b` are read through broadcast
/// strides. Fast paths for equal shapes and for a scalar operand; otherwise rows of the last
/// axis are processed with their own (possibly zero) strides.
pub(super) fn broadcast_zip<T: Float>(
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    out_shape: &[usize],
    f: impl Fn(T, T) -> T + Sync + Send,
) -> Vec<T> {
    if a_shape == out_shape && b_shape == out_shape {
        return zip_map(a, b, f);
    }
    if b.len() == 1 && a_shape == out_shape {
        let s = b[0];
        return map(a, |x| f(x, s));
    }
    if a.len() == 1 && b_shape == out_shape {
        let s = a[0];
        return map(b, |y| f(s, y));
    }
    let n = numel(out_shape);
    let mut out = crate::backend::cpu::pool::zeroed(n);
    if n == 0 {
        return out;
    }
    let rank = out_shape.len();
    let sa = broadcast_strides(a_shape, out_shape);
    let sb = broadcast_strides(b_shape, out_shape);
    let inner = out_shape[rank - 1];
    let (ia, ib) = (sa[rank - 1], sb[rank - 1]);
    let out_strides = strides(out_shape);
    let row = |r: usize, o: &mut [T]| {
        // offset of row r (a multi-index over all axes but the last)
        let mut rem = r * inner;
        let (mut oa, mut ob) = (0, 0);
        for d in 0..rank - 1 {
            let i = rem / out_strides[d];
            rem %= out_strides[d];
            oa += i * sa[d];
            ob += i * sb[d];
        }
        for (j, o) in o.iter_mut().enumerate() {
            *o = f(a[oa + j * ia], b[ob + j * ib]);
        }
    };
    if n >= PAR_THRESHOLD {
        out.par_chunks_mut(inner).enumerate().for_each(|(r, o)| row(r, o));
    } else {
        out.chunks_mut(inner).enumerate().for_each(|(r, o)| row(r, o));
    }
    out
}

pub(super) fn binary<T: Float>(
    op: BinaryOp,
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    out_shape: &[usize],
) -> Vec<T> {
    // One closure per op (not a match inside the loop), so each loop vectorises.
    match op {
        BinaryOp::Add => broadcast_zip(a, a_shape, b, b_shape, out_shape, |x, y| x + y),
        BinaryOp::Sub => broadcast_zip(a, a_shape, b, b_shape, out_shape, |x, y| x - y),
        BinaryOp::Mul => broadcast_zip(a, a_shape, b, b_shape, out_shape, |x, y| x * y),
        BinaryOp::Div => broadcast_zip(a, a_shape, b, b_shape, out_shape, |x, y| x / y),
    }
}

/// -g * a / b^2 over g's (broadcast) shape, for the divisor's gradient of `a / b`.
pub(super) fn div_rhs_grad<T: Float>(g: &Tensor<T>, a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    // q = a / b over the broadcast shape, then -g * q / b.
    let shape = g.shape().to_vec();
    let q = broadcast_zip(&a.values()?, a.shape(), &b.values()?, b.shape(), &shape, |x, y| x / y);
    let gq = zip_map(&g.values()?, &q, |g, q| -g * q);
    let data = broadcast_zip(&gq, &shape, &b.values()?, b.shape(), &shape, |x, y| x / y);
    Ok(Tensor::from_cpu(data, shape))
}

/// `f(x)` elementwise: one loop compiled for `O` alone (no match inside it), so it vectorises.
pub(super) fn unary<T: Float, O: UnaryOp<T>>(op: O, x: &[T]) -> Vec<T> {
    map(x, |v| op.f(v))
}

/// dL/dx from dL/dy = `g` and the value the op saved (x, y, or none: see `UnaryOp::SAVES`).
pub(super) fn unary_backward<T: Float, O: UnaryOp<T>>(op: O, v: Option<&[T]>, g: &[T]) -> Vec<T> {
    match v {
        Some(v) => zip_map(g, v, |g, v| op.grad(g, v)),
        None => map(g, |g| op.grad(g, T::ZERO)),
    }
}
