//! Shapes: [`Pair`] (kernel / stride / padding arguments), row-major strides, NumPy
//! broadcasting, and multi-index helpers shared by the ops.

use crate::{Error, Result};

/// A (height, width) pair for kernel, stride and padding arguments.
///
/// `From<usize>` sets both axes, `From<(usize, usize)>` is (height, width):
/// `x.conv2d(&w, None, 2, 1)` and `x.conv2d(&w, None, (2, 1), (1, 0))` both work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pair {
    /// Along the height axis (dim 2 of NCHW).
    pub h: usize,
    /// Along the width axis (dim 3 of NCHW).
    pub w: usize,
}

impl From<usize> for Pair {
    fn from(v: usize) -> Self {
        Pair { h: v, w: v }
    }
}

impl From<(usize, usize)> for Pair {
    fn from((h, w): (usize, usize)) -> Self {
        Pair { h, w }
    }
}

/// Number of elements of a shape (1 for a scalar shape `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Number of elements of a shape given by a user, or `Err` naming `op` if the product
/// overflows `usize` (a shape no memory could hold).
pub fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::shape(op, format!("shape {shape:?} has more elements than usize can count")))
}

/// Row-major (C-order) strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The multi-index of flat position `flat` in `shape` (row-major).
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        if shape[d] > 0 {
            idx[d] = flat % shape[d];
            flat /= shape[d];
        }
    }
    idx
}

/// NumPy broadcasting of two shapes: align on the right, each pair of sizes equal or one of
/// them 1. `op` names the caller for the error message.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i < n - a.len() { 1 } else { a[i - (n - a.len())] };
        let db = if i < n - b.len() { 1 } else { b[i - (n - b.len())] };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(
                op,
                format!("shapes {a:?} and {b:?} cannot be broadcast (dim {i} of the aligned shapes: {da} vs {db})"),
            ));
        };
    }
    checked_numel(op, &out)?;
    Ok(out)
}

/// Strides to read a tensor of shape `src` as if it had the (broadcast) shape `dst`: stride 0
/// along broadcast axes. `src` must be broadcastable to `dst`.
pub fn broadcast_strides(src: &[usize], dst: &[usize]) -> Vec<usize> {
    let s = strides(src);
    let off = dst.len() - src.len();
    (0..dst.len())
        .map(|i| if i < off || src[i - off] == 1 { 0 } else { s[i - off] })
        .collect()
}

/// Checks that `dim` is a valid axis of a rank-`rank` tensor.
pub fn check_dim(op: &'static str, dim: usize, shape: &[usize]) -> Result<()> {
    if dim < shape.len() {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!(
                "dim {dim} is out of range for a tensor of shape {shape:?} (rank {})",
                shape.len()
            ),
        ))
    }
}

/// Splits `shape` around `dim` into (outer, size, inner): the product of the axes before it,
/// its size, and the product of the axes after it. Kernels that work "along one dim" use this.
pub fn split_at_dim(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (numel(&shape[..dim]), shape[dim], numel(&shape[dim + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes("t", &[3, 1, 5], &[4, 1]).unwrap(), vec![3, 4, 5]);
        assert_eq!(broadcast_shapes("t", &[], &[2, 2]).unwrap(), vec![2, 2]);
        assert!(broadcast_shapes("t", &[3], &[4]).is_err());
        assert_eq!(broadcast_strides(&[4, 1], &[3, 4, 5]), vec![0, 1, 0]);
    }

    #[test]
    fn unravel_inverts_strides() {
        let shape = [2, 3, 4];
        let st = strides(&shape);
        for f in 0..24 {
            let idx = unravel(f, &shape);
            assert_eq!(idx.iter().zip(&st).map(|(i, s)| i * s).sum::<usize>(), f);
        }
    }
}
