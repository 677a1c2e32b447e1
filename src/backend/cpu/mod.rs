//! CPU plumbing: when to go parallel, and deterministic chunked helpers.
//!
//! Determinism rule: work is split into chunks whose boundaries depend only on the problem
//! size (never on the number of threads), and any reduction combines chunk results in a fixed
//! order. So results are bit-identical with 1 thread or 64.

pub(crate) mod gemm;

use crate::dtype::Float;
use rayon::prelude::*;

/// Below this many elements (or multiply-adds) an op stays on the calling thread: handing
/// work to the pool costs more than it saves.
pub(crate) const PAR_THRESHOLD: usize = 1 << 15;

/// Fixed chunk size for elementwise parallel loops.
pub(crate) const CHUNK: usize = 1 << 13;

/// `out[i] = f(x[i])`, in parallel for large inputs.
pub(crate) fn map<T: Float>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut out = vec![T::ZERO; x.len()];
    if x.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(o, x)| {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = f(x);
            }
        });
    } else {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = f(x);
        }
    }
    out
}

/// `out[i] = f(a[i], b[i])` for equal-length slices, in parallel for large inputs.
pub(crate) fn zip_map<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    debug_assert_eq!(a.len(), b.len());
    let mut out = vec![T::ZERO; a.len()];
    if a.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| {
                for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                    *o = f(a, b);
                }
            });
    } else {
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    }
    out
}

/// Runs `f(row_index, row)` over the `rows` equal rows of `out` (length `rows * row_len`), in
/// parallel when the total work `rows * work_per_row` is large.
pub(crate) fn for_each_row<T: Float>(
    out: &mut [T],
    row_len: usize,
    work_per_row: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if row_len == 0 {
        return;
    }
    let rows = out.len() / row_len;
    if rows > 1 && rows.saturating_mul(work_per_row) >= PAR_THRESHOLD {
        out.par_chunks_mut(row_len).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        out.chunks_mut(row_len).enumerate().for_each(|(i, r)| f(i, r));
    }
}

/// Sum of a slice with 8 independent accumulators combined in a fixed order: vectorises, is
/// more accurate than one running sum, and is deterministic.
pub(crate) fn sum<T: Float>(x: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    let mut s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for &r in rest {
        s += r;
    }
    s
}

/// Dot product with the same fixed 8-accumulator order as [`sum`].
pub(crate) fn dot<T: Float>(x: &[T], y: &[T]) -> T {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = [T::ZERO; 8];
    let n8 = x.len() / 8 * 8;
    for i in (0..n8).step_by(8) {
        for k in 0..8 {
            acc[k] += x[i + k] * y[i + k];
        }
    }
    let mut s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for i in n8..x.len() {
        s += x[i] * y[i];
    }
    s
}
