//! CPU plumbing: when to go parallel, and deterministic chunked helpers.
//!
//! Determinism rule: work is split into chunks whose boundaries depend only on the problem
//! size (never on the number of threads), and any reduction combines chunk results in a fixed
//! order. So results are bit-identical with 1 thread or 64.

pub(crate) mod gemm;
pub mod kernels;
pub(crate) mod pool;
pub(crate) mod transpose;

use crate::dtype::Float;
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;

thread_local! {
    /// Per-thread stack of scratch buffers (see [`with_scratch`]).
    static SCRATCH: RefCell<Vec<Vec<Line>>> = const { RefCell::new(Vec::new()) };
}

/// One cache line: the unit of [`Scratch`] storage, so every scratch buffer starts on a 64-byte
/// boundary and a packed GEMM panel's 16-float rows are whole cache lines (an unaligned 64-byte
/// load that straddles two lines costs two loads).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([u64; 8]);

/// A scratch slice of `len` elements borrowed from this thread's pool and given back on drop,
/// so hot loops (GEMM packing, convolution columns) reuse memory instead of allocating and
/// zeroing it on every call. The contents on creation are unspecified (whatever the last user
/// left): callers write before they read. Nested borrows get distinct buffers. Buffers start on
/// a 64-byte (cache-line) boundary. (A guard rather
/// than a closure-taking function, so that code inside `#[target_feature]` functions keeps its
/// features: a closure body is compiled without them.)
pub(crate) struct Scratch<T: Float> {
    buf: Vec<Line>,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: Float> Scratch<T> {
    /// Borrows a buffer of at least `len` elements.
    pub(crate) fn new(len: usize) -> Self {
        const { assert!(std::mem::size_of::<T>() <= 8 && std::mem::align_of::<T>() <= 8) };
        let mut buf = SCRATCH.with(|s| s.borrow_mut().pop()).unwrap_or_default();
        let lines = (len * std::mem::size_of::<T>()).div_ceil(64);
        if buf.len() < lines {
            buf.resize(lines, Line::default());
        }
        Scratch {
            buf,
            len,
            _t: std::marker::PhantomData,
        }
    }

    /// The `len` elements.
    #[inline(always)]
    pub(crate) fn as_mut(&mut self) -> &mut [T] {
        // SAFETY: `Float` is sealed and implemented only for f32 and f64, for which every bit
        // pattern is a valid value; the buffer holds at least `len * size_of::<T>()`
        // initialised bytes, aligned to 64 >= align_of::<T>(), and is exclusively ours.
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Float> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // During thread teardown the pool may be gone: then the buffer is simply freed.
        let _ = SCRATCH.try_with(|s| s.borrow_mut().push(buf));
    }
}

/// Runs `f` on a [`Scratch`] slice of `len` elements.
pub(crate) fn with_scratch<T: Float, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    f(Scratch::new(len).as_mut())
}

/// Below this many elements (or multiply-adds) an op stays on the calling thread: handing
/// work to the pool costs more than it saves.
pub(crate) const PAR_THRESHOLD: usize = 1 << 15;

/// Fixed chunk size for elementwise parallel loops.
pub(crate) const CHUNK: usize = 1 << 13;

/// A new vector of `len` elements, each written exactly once by `fill(offset, chunk)` over
/// fixed chunks of `chunk` elements (in parallel when `parallel`), without zero-filling it
/// first: output buffers are written in one pass instead of two.
fn new_filled<T: Float>(
    len: usize,
    chunk: usize,
    parallel: bool,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    let mut out = pool::uninit(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    if parallel {
        spare
            .par_chunks_mut(chunk.max(1))
            .enumerate()
            .for_each(|(i, o)| fill(i * chunk, o));
    } else {
        spare
            .chunks_mut(chunk.max(1))
            .enumerate()
            .for_each(|(i, o)| fill(i * chunk, o));
    }
    // SAFETY: the chunks cover 0..len and `fill` writes every element of its chunk (the
    // callers below write each element once; a panic leaves the length at 0).
    unsafe { out.set_len(len) };
    out
}

/// `out[i] = f(x[i])`, in parallel for large inputs.
pub(crate) fn map<T: Float>(x: &[T], f: impl Fn(T) -> T + Sync + Send) -> Vec<T> {
    new_filled(x.len(), CHUNK, x.len() >= PAR_THRESHOLD, |at, o| {
        for (o, &x) in o.iter_mut().zip(&x[at..]) {
            o.write(f(x));
        }
    })
}

/// `out[i] = f(a[i], b[i])` for equal-length slices, in parallel for large inputs.
pub(crate) fn zip_map<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync + Send) -> Vec<T> {
    // A hard check: `new_filled` relies on every output element being written.
    assert_eq!(a.len(), b.len(), "zip_map: operand lengths differ");
    new_filled(a.len(), CHUNK, a.len() >= PAR_THRESHOLD, |at, o| {
        for ((o, &a), &b) in o.iter_mut().zip(&a[at..]).zip(&b[at..]) {
            o.write(f(a, b));
        }
    })
}

/// A new vector of `rows` rows of `row_len`, row i written by `f(i, row)` (each element
/// exactly once), in parallel when the total work `rows * work_per_row` is large.
pub(crate) fn new_rows<T: Float>(
    rows: usize,
    row_len: usize,
    work_per_row: usize,
    f: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    let parallel = rows > 1 && rows.saturating_mul(work_per_row) >= PAR_THRESHOLD;
    new_filled(rows * row_len, row_len, parallel, |at, o| f(at / row_len.max(1), o))
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
