//! General matrix multiply on the CPU: `C = op(A) · op(B)` (or `C += ...`), row-major.
//!
//! This is the straightforward, cache-aware version: transposed operands are first copied into
//! row-major form, then each block of four rows of C is computed as a sum of scaled rows of B
//! ("i-k-j" order), which the compiler vectorises along the rows of B and C, with the k loop
//! blocked so a panel of B stays in cache while it is reused by every row block. Row blocks run
//! in parallel above a size threshold; each element of C is always computed by the same
//! sequence of operations, so results do not depend on the thread count.

use super::PAR_THRESHOLD;
use crate::dtype::Float;
use rayon::prelude::*;

/// Rows of C computed together (each loaded row of B is reused this many times).
const MR: usize = 4;
/// Depth of one k block.
const KC: usize = 256;

/// A matrix operand: row-major data, its leading dimension (row stride) and whether it is to be
/// used transposed.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a, T> {
    /// Row-major data.
    pub data: &'a [T],
    /// Row stride of `data` (number of columns as stored).
    pub ld: usize,
    /// Use the transpose of the stored matrix.
    pub trans: bool,
}

impl<'a, T: Float> MatRef<'a, T> {
    /// A row-major matrix used as stored, `cols` columns wide.
    pub(crate) fn new(data: &'a [T], cols: usize) -> Self {
        MatRef {
            data,
            ld: cols,
            trans: false,
        }
    }
    /// The same matrix used transposed.
    pub(crate) fn t(self) -> Self {
        MatRef {
            trans: !self.trans,
            ..self
        }
    }
}

/// Copies op(X) (rows x cols after the op) into a contiguous row-major buffer, or borrows it
/// when it already is one.
fn materialise<'a, T: Float>(x: MatRef<'a, T>, rows: usize, cols: usize, buf: &'a mut Vec<T>) -> &'a [T] {
    if !x.trans && x.ld == cols {
        return &x.data[..rows * cols];
    }
    buf.clear();
    buf.resize(rows * cols, T::ZERO);
    for i in 0..rows {
        for j in 0..cols {
            buf[i * cols + j] = if x.trans {
                x.data[j * x.ld + i]
            } else {
                x.data[i * x.ld + j]
            };
        }
    }
    buf
}

/// `C (m x n) = op(A) (m x k) · op(B) (k x n)`, or `C += ...` when `accumulate`. C is
/// contiguous row-major. Runs in parallel over row blocks when the product is large.
pub(crate) fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [T],
    accumulate: bool,
) {
    debug_assert!(c.len() >= m * n);
    let c = &mut c[..m * n];
    if !accumulate {
        c.iter_mut().for_each(|v| *v = T::ZERO);
    }
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let (mut abuf, mut bbuf) = (Vec::new(), Vec::new());
    let a = materialise(a, m, k, &mut abuf);
    let b = materialise(b, k, n, &mut bbuf);
    let block = |bi: usize, cblk: &mut [T]| {
        let r0 = bi * MR;
        let rows = cblk.len() / n;
        for p0 in (0..k).step_by(KC) {
            let p1 = (p0 + KC).min(k);
            if rows == MR {
                let (c0, rest) = cblk.split_at_mut(n);
                let (c1, rest) = rest.split_at_mut(n);
                let (c2, c3) = rest.split_at_mut(n);
                for p in p0..p1 {
                    let brow = &b[p * n..(p + 1) * n];
                    let (a0, a1, a2, a3) = (
                        a[r0 * k + p],
                        a[(r0 + 1) * k + p],
                        a[(r0 + 2) * k + p],
                        a[(r0 + 3) * k + p],
                    );
                    for j in 0..n {
                        let bv = brow[j];
                        c0[j] += a0 * bv;
                        c1[j] += a1 * bv;
                        c2[j] += a2 * bv;
                        c3[j] += a3 * bv;
                    }
                }
            } else {
                for r in 0..rows {
                    let crow = &mut cblk[r * n..(r + 1) * n];
                    for p in p0..p1 {
                        let av = a[(r0 + r) * k + p];
                        for (cv, &bv) in crow.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                            *cv += av * bv;
                        }
                    }
                }
            }
        }
    };
    if m > MR && m.saturating_mul(n).saturating_mul(k) >= 4 * PAR_THRESHOLD {
        c.par_chunks_mut(MR * n)
            .enumerate()
            .for_each(|(bi, blk)| block(bi, blk));
    } else {
        c.chunks_mut(MR * n).enumerate().for_each(|(bi, blk)| block(bi, blk));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_with_transposes() {
        let mut rng = crate::Rng::new(1);
        for &(m, n, k) in &[(1, 1, 1), (5, 7, 3), (9, 4, 300), (33, 65, 17), (64, 64, 600)] {
            let a: Vec<f64> = (0..m * k).map(|_| rng.normal()).collect();
            let b: Vec<f64> = (0..k * n).map(|_| rng.normal()).collect();
            let want = naive(m, n, k, &a, &b);
            let mut at = vec![0.0; m * k];
            for i in 0..m {
                for p in 0..k {
                    at[p * m + i] = a[i * k + p];
                }
            }
            let mut bt = vec![0.0; k * n];
            for p in 0..k {
                for j in 0..n {
                    bt[j * k + p] = b[p * n + j];
                }
            }
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let ar = if ta {
                    MatRef::new(&at, m).t()
                } else {
                    MatRef::new(&a, k)
                };
                let br = if tb {
                    MatRef::new(&bt, k).t()
                } else {
                    MatRef::new(&b, n)
                };
                let mut c = vec![1.0; m * n];
                gemm(m, n, k, ar, br, &mut c, false);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-10 * (1.0 + y.abs()), "{m}x{n}x{k} {ta} {tb}");
                }
                gemm(m, n, k, ar, br, &mut c, true);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - 2.0 * y).abs() < 1e-9 * (1.0 + y.abs()));
                }
            }
        }
    }
}
