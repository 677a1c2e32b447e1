//! General matrix multiply on the CPU: `C = op(A) · B` (or `C += ...`), row-major.
//!
//! The classic blocked scheme, in three levels:
//! 1. the shared dimension k is cut into blocks of `KC`; for each block, B's rows are *packed*
//!    into panels of `NR` columns (k-major: the NR values of one k are adjacent), so the
//!    innermost loop reads B sequentially whatever its layout or transposition;
//! 2. C's rows are cut into blocks of at most `MC` rows (the unit of parallel work, sized to
//!    split evenly over the threads); each block packs
//!    its rows of A into panels of `MR` rows;
//! 3. a register-tiled micro-kernel multiplies one MR-row panel of A by one NR-column panel of
//!    B, keeping the MR x NR tile of C in registers for the whole k block: each loaded value of
//!    B is used MR times and each value of A NR times. It first prefetches its tile of C, so
//!    that the tile's lines arrive during the k loop rather than at the store.
//!
//! Two ways to use several threads: a large product (at least two row blocks per thread) gives
//! each thread one stripe of C's rows to take through every k block alone, packing its own
//! copy of B's panels, so the threads meet only at the end (`Gemm::try_run_stripes`); a
//! smaller one packs each k block's B panels in parallel and then spreads its row blocks over
//! the threads, two meetings per k block.
//!
//! The operands are anything implementing [`Operand`] (its stored rows, transposed or not): a
//! stored matrix ([`MatRef`]), or — for convolutions — the column matrix of an image, whose
//! rows are slices of the padded image (`ops::conv::fast::Shifted`), so it is never gathered,
//! or of a channels-last chunk, whose rows are a few runs with gaps between them
//! (`ops::conv::channels_last::Cols`, with `Operand::col_offsets`). When the other dimension is
//! small (below `DIRECT_BELOW`, e.g. a conv's 16-64 output channels), packing an operand costs
//! more than the multiply it feeds, so the AVX-512 kernel reads that operand *in place*
//! (`Operand::direct`) instead.
//!
//! Micro-kernels: with AVX-512F, written with intrinsics (`mod avx512`; LLVM does not keep a
//! 16-vector tile written as plain arrays in registers): 6 rows x 4 vectors (24 accumulators)
//! for large products, 8 rows x 2 vectors (16 independent accumulators, enough to cover the
//! FMA latency on two FMA ports) for a conv's small ones, or 16 x 1 vector for narrow products. With AVX2+FMA and without either, the plain-Rust `micro_kernel` with
//! constant bounds (6 x 2 vectors of 8 lanes; 4 x 16 portable), compiled under the matching
//! `#[target_feature]`. The variant is picked at run time with `is_x86_feature_detected!`.
//! Transposed operands are handled by the packing (never materialised). Packing buffers come
//! from a per-thread scratch pool ([`Scratch`]), so packing allocates nothing in the steady
//! state (a call still allocates its small row-offset tables, k or m entries). Row blocks run
//! in parallel; every element of C is computed by the same sequence of operations (the k order
//! is fixed, each product is one fused multiply-add) whichever thread runs it and whatever the
//! tile shape or packing, so the bits do not depend on the thread
//! count. (They may differ between CPUs with and without FMA.)

#[cfg(target_arch = "x86_64")]
mod avx512;
pub(crate) mod reference;

use super::{PAR_THRESHOLD, Scratch};
use crate::dtype::Float;
use rayon::prelude::*;

/// Depth of one k block (an MR x KC panel of A and a KC x NR panel of B stay in L1/L2).
const KC: usize = 256;
/// Rows of C per parallel work unit, at most (a multiple of every MR below: 6, 8, 16).
const MC: usize = 96;
/// An operand is read in place (not packed) by the AVX-512 kernel when the other dimension is
/// below this: then each packed element would be used too few times to repay its copy.
const DIRECT_BELOW: usize = 128;

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

/// An operand of a GEMM, given by its *stored* rows: the operand's rows, or, when
/// [`trans`](Self::trans), its columns. Packing reads stored rows contiguously.
pub(crate) trait Operand<T>: Sync {
    /// Whether stored row r is column r of the operand (it is the transpose of what is stored).
    fn trans(&self) -> bool;
    /// Entries `c0..c0 + len` of stored row `r`: either borrowed from storage or written into
    /// `buf` (which has room for `len`).
    fn row<'s>(&'s self, r: usize, c0: usize, len: usize, buf: &'s mut [T]) -> &'s [T];
    /// When every stored row lies contiguously in one slice, that slice (row r starts at
    /// [`row_start`](Self::row_start)): the AVX-512 kernel may then read it in place.
    fn direct(&self) -> Option<&[T]> {
        None
    }
    /// Where stored row `r` starts in [`direct`](Self::direct)'s slice.
    fn row_start(&self, _r: usize) -> usize {
        0
    }
    /// When a stored row is not one contiguous run of its direct slice: where entry `c` of every
    /// stored row lies relative to the row's start (increasing in c; a channels-last column
    /// matrix has one run per kernel row). `None`: entry c is at c.
    fn col_offsets(&self) -> Option<&[usize]> {
        None
    }
}

impl<T: Float> Operand<T> for MatRef<'_, T> {
    fn trans(&self) -> bool {
        self.trans
    }
    fn row<'s>(&'s self, r: usize, c0: usize, len: usize, _buf: &'s mut [T]) -> &'s [T] {
        &self.data[r * self.ld + c0..][..len]
    }
    fn direct(&self) -> Option<&[T]> {
        Some(self.data)
    }
    fn row_start(&self, r: usize) -> usize {
        r * self.ld
    }
}

/// Where the row starts of a directly read operand lie, if every one of its `rows` stored rows
/// has `len` entries inside its slice (else it must be packed). With `col_offsets`, entry c of
/// a row is at its start + offset c, and only an A operand (`gapped`) may be read so.
fn direct_starts<T: Float, O: Operand<T> + ?Sized>(
    op: &O,
    rows: usize,
    len: usize,
    gapped: bool,
) -> Option<Vec<usize>> {
    if op.trans() || len == 0 {
        return None;
    }
    let len = match op.col_offsets() {
        None => len,
        Some(offs) if gapped && offs.len() >= len => offs[len - 1] + 1,
        Some(_) => return None,
    };
    let base = op.direct()?;
    let starts: Vec<usize> = (0..rows).map(|r| op.row_start(r)).collect();
    starts
        .iter()
        .all(|&s| s.checked_add(len).is_some_and(|e| e <= base.len()))
        .then_some(starts)
}

/// Packs rows `p0..p0 + kc` of B (k x n) into `ceil(n / NR)` panels starting with panel
/// `first_panel`, each `kc x NR` (k-major), zero-filling the last panel's missing columns.
fn pack_b<T: Float, B: Operand<T> + ?Sized, const NR: usize>(
    b: &B,
    p0: usize,
    kc: usize,
    n: usize,
    first_panel: usize,
    dst: &mut [T],
) {
    let panel_len = NR * kc;
    let j_first = first_panel * NR;
    // Only the panels that fit in dst (a caller packing in parallel hands out panel ranges).
    let n = n.min(j_first + dst.len() / panel_len * NR);
    let mut scratch = Scratch::<T>::new(n.max(kc));
    let buf = scratch.as_mut();
    if !b.trans() {
        for p in 0..kc {
            let row = b.row(p0 + p, j_first, n - j_first, buf);
            for (jp, chunk) in row.chunks(NR).enumerate() {
                dst[jp * panel_len + p * NR..][..chunk.len()].copy_from_slice(chunk);
            }
        }
    } else {
        for j in j_first..n {
            let col = b.row(j, p0, kc, buf);
            let panel = &mut dst[((j - j_first) / NR) * panel_len + j % NR..];
            for (p, &v) in col.iter().enumerate() {
                panel[p * NR] = v;
            }
        }
    }
    let width = n % NR;
    if width != 0 {
        let last = &mut dst[(n / NR - first_panel) * panel_len..][..panel_len];
        for row in last.chunks_mut(NR) {
            row[width..].iter_mut().for_each(|v| *v = T::ZERO);
        }
    }
}

/// Packs rows `i0..i0 + height` and columns `p0..p0 + kc` of A into one MR-row panel
/// (k-major: `dst[p * MR + i]`), zero-filling rows `height..MR`.
fn pack_a<T: Float, A: Operand<T> + ?Sized, const MR: usize>(
    a: &A,
    i0: usize,
    height: usize,
    p0: usize,
    kc: usize,
    buf: &mut [T],
    dst: &mut [T],
) {
    if height < MR {
        dst[..kc * MR].iter_mut().for_each(|v| *v = T::ZERO);
    }
    if !a.trans() {
        for i in 0..height {
            for (p, &v) in a.row(i0 + i, p0, kc, buf).iter().enumerate() {
                dst[p * MR + i] = v;
            }
        }
    } else {
        for p in 0..kc {
            let src = a.row(p0 + p, i0, height, buf);
            dst[p * MR..][..height].copy_from_slice(src);
        }
    }
}

/// `C (m x n) = A (m x k) · B (k x n)`, or `C += ...` when `accumulate`. C is contiguous
/// row-major. Runs in parallel over row blocks when the product is large.
pub(crate) fn gemm<T: Float, A: Operand<T> + ?Sized, B: Operand<T> + ?Sized>(
    m: usize,
    n: usize,
    k: usize,
    a: &A,
    b: &B,
    c: &mut [T],
    accumulate: bool,
) {
    gemm_tiled(m, n, k, a, b, c, accumulate, false)
}

/// [`gemm`], but with the 6 x 4-vector AVX-512 tile whenever n is a whole number of 4-vector
/// panels (64 columns in f32, 32 in f64), even where m or n is below the size at which `gemm`
/// picks that tile by itself; otherwise, and without AVX-512, exactly `gemm`. For the
/// channels-last conv products, whose n is 64 output channels (or a multiple of 64 kernel
/// columns): there the 6 x 4 tile's 10 loads per 24 FMAs beat the 8 x 2 tile's 10 per 16. The
/// bits are `gemm`'s: only the tile changes, never the order of the sums.
pub(crate) fn gemm_wide_tile<T: Float, A: Operand<T> + ?Sized, B: Operand<T> + ?Sized>(
    m: usize,
    n: usize,
    k: usize,
    a: &A,
    b: &B,
    c: &mut [T],
    accumulate: bool,
) {
    gemm_tiled(m, n, k, a, b, c, accumulate, true)
}

/// The body of [`gemm`] and [`gemm_wide_tile`] (`wide`): picks the tile and runs.
#[allow(clippy::too_many_arguments)]
fn gemm_tiled<T: Float, A: Operand<T> + ?Sized, B: Operand<T> + ?Sized>(
    m: usize,
    n: usize,
    k: usize,
    a: &A,
    b: &B,
    c: &mut [T],
    accumulate: bool,
    wide: bool,
) {
    let c = &mut c[..m * n];
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.iter_mut().for_each(|v| *v = T::ZERO);
        }
        return;
    }
    let f32 = std::mem::size_of::<T>() == 4;
    let g = Gemm {
        m,
        n,
        k,
        a,
        b,
        accumulate,
        may_split: true,
    };
    let whole_wide_panels = n.is_multiple_of(if f32 { 64 } else { 32 });
    match (isa(), f32) {
        (Isa::Avx512, true) if wide && whole_wide_panels => g.run::<T, 6, 64>(Isa::Avx512, c),
        (Isa::Avx512, false) if wide && whole_wide_panels => g.run::<T, 6, 32>(Isa::Avx512, c),
        // A narrow product (n within one vector: a conv weight gradient with 16 output
        // channels) gets a 16 x 1-vector tile instead of wasting half of an 8 x 2-vector one.
        (Isa::Avx512, true) if n <= 16 => g.run::<T, 16, 16>(Isa::Avx512, c),
        (Isa::Avx512, false) if n <= 8 => g.run::<T, 16, 8>(Isa::Avx512, c),
        // A large product (both operands packed): 6 rows x 4 vectors, 24 accumulators, 10
        // loads per 24 FMAs (the 8 x 2 tile issues 10 per 16, and its loop front-end, not the
        // FMA units, is the limit: 6 x 4 runs square f32 GEMMs ~5-10% and f64 ~15% faster).
        // On a conv's small products it loses (m = 16 or n = 32 leave a 6 x 4 tile part-empty).
        (Isa::Avx512, true) if m >= DIRECT_BELOW && n >= DIRECT_BELOW => g.run::<T, 6, 64>(Isa::Avx512, c),
        (Isa::Avx512, false) if m >= DIRECT_BELOW && n >= DIRECT_BELOW => g.run::<T, 6, 32>(Isa::Avx512, c),
        (Isa::Avx512, true) => g.run::<T, 8, 32>(Isa::Avx512, c),
        (Isa::Avx512, false) => g.run::<T, 8, 16>(Isa::Avx512, c),
        (Isa::Avx2, true) => g.run::<T, 6, 16>(Isa::Avx2, c),
        (Isa::Avx2, false) => g.run::<T, 6, 8>(Isa::Avx2, c),
        (Isa::Portable, true) => g.run::<T, 4, 16>(Isa::Portable, c),
        (Isa::Portable, false) => g.run::<T, 4, 8>(Isa::Portable, c),
    }
}

/// Which compiled variant of the kernels this CPU runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    Portable,
}

/// The best variant this CPU supports (detected once; `is_x86_feature_detected!` caches).
pub(crate) fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            return Isa::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// One GEMM call's operands.
struct Gemm<'a, 'b, A: ?Sized, B: ?Sized> {
    m: usize,
    n: usize,
    k: usize,
    a: &'a A,
    b: &'b B,
    accumulate: bool,
    /// May run in parallel (false inside one thread's stripe of rows).
    may_split: bool,
}

/// Rows `r0..` of an operand used as A (its columns when it is stored transposed): one
/// thread's stripe of a [`Gemm::try_run_stripes`] product.
struct RowsFrom<'a, A: ?Sized> {
    a: &'a A,
    r0: usize,
}

impl<T, A: Operand<T> + ?Sized> Operand<T> for RowsFrom<'_, A> {
    fn trans(&self) -> bool {
        self.a.trans()
    }
    fn row<'s>(&'s self, r: usize, c0: usize, len: usize, buf: &'s mut [T]) -> &'s [T] {
        if self.a.trans() {
            self.a.row(r, self.r0 + c0, len, buf)
        } else {
            self.a.row(self.r0 + r, c0, len, buf)
        }
    }
    fn direct(&self) -> Option<&[T]> {
        if self.a.trans() { None } else { self.a.direct() }
    }
    fn row_start(&self, r: usize) -> usize {
        self.a.row_start(self.r0 + r)
    }
    fn col_offsets(&self) -> Option<&[usize]> {
        self.a.col_offsets()
    }
}

impl<A: ?Sized, B: ?Sized> Gemm<'_, '_, A, B> {
    /// A large product on several threads: each thread takes one stripe of C's rows through
    /// every k block on its own (it packs its own copy of B's panels), so the threads meet once,
    /// at the end, instead of twice per k block (pack B, then the row blocks). The copy costs
    /// each thread `k x n` packed values against `m / threads x n x k` multiply-adds; the
    /// meetings cost an idle core whenever the other one was slower (a VM's vCPUs often are).
    /// Returns false, having done nothing, when the product is too small to give each thread
    /// two full row blocks.
    fn try_run_stripes<T: Float, const MR: usize, const NR: usize>(&self, isa: Isa, c: &mut [T]) -> bool
    where
        A: Operand<T>,
        B: Operand<T>,
    {
        let threads = rayon::current_num_threads();
        let (m, n) = (self.m, self.n);
        if !self.may_split || threads < 2 || m < 2 * MC * threads || n < DIRECT_BELOW {
            return false;
        }
        let rows = m.div_ceil(threads).next_multiple_of(MR);
        c.par_chunks_mut(rows * n).enumerate().for_each(|(s, cs)| {
            let a = RowsFrom {
                a: self.a,
                r0: s * rows,
            };
            let stripe = Gemm {
                m: cs.len() / n,
                n,
                k: self.k,
                a: &a,
                b: self.b,
                accumulate: self.accumulate,
                may_split: false,
            };
            stripe.run_blocks::<T, MR, NR>(isa, cs);
        });
        true
    }

    fn run<T: Float, const MR: usize, const NR: usize>(&self, isa: Isa, c: &mut [T])
    where
        A: Operand<T>,
        B: Operand<T>,
    {
        if !self.try_run_stripes::<T, MR, NR>(isa, c) {
            self.run_blocks::<T, MR, NR>(isa, c);
        }
    }

    /// The blocked product on the calling thread, or — when `may_split` and the product is
    /// large — with each k block's B packing and row blocks spread over the threads.
    fn run_blocks<T: Float, const MR: usize, const NR: usize>(&self, isa: Isa, c: &mut [T])
    where
        A: Operand<T>,
        B: Operand<T>,
    {
        let (m, n, k) = (self.m, self.n, self.k);
        // In-place reading needs the AVX-512 kernels (which exist for exactly these tiles).
        let direct_ok = isa == Isa::Avx512;
        let b_starts = if direct_ok && m < DIRECT_BELOW {
            direct_starts(self.b, k, n, false)
        } else {
            None
        };
        let a_starts = if direct_ok && n < DIRECT_BELOW {
            direct_starts(self.a, m, k, true)
        } else {
            None
        };
        // Panels to pack: all of them, or only a partial last one when B is read in place.
        let first_packed = if b_starts.is_some() { n / NR } else { 0 };
        let packed_panels = n.div_ceil(NR) - first_packed;
        let mut scratch = Scratch::<T>::new(packed_panels * NR * KC.min(k));
        let bpack = scratch.as_mut();
        let packed_offsets: Vec<usize> = (0..KC.min(k)).map(|p| p * NR).collect();
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            let bpack = &mut bpack[..packed_panels * NR * kc];
            let parallel = self.may_split && m > MC && m.saturating_mul(n).saturating_mul(kc) >= 4 * PAR_THRESHOLD;
            let mc = if parallel { balanced_rows::<MR>(m) } else { MC };
            if parallel && packed_panels >= 2 {
                // Packed in parallel, a few panel groups per thread: packing is a large serial
                // part otherwise (a third of a 256^3 product on 2 threads).
                let group = packed_panels.div_ceil(2 * rayon::current_num_threads().max(1));
                bpack.par_chunks_mut(group * NR * kc).enumerate().for_each(|(g, dst)| {
                    pack_b::<T, B, NR>(self.b, p0, kc, n, first_packed + group * g, dst);
                });
            } else if packed_panels > 0 {
                pack_b::<T, B, NR>(self.b, p0, kc, n, first_packed, bpack);
            }
            let bpack = &*bpack;
            let args = BlockArgs {
                a: self.a,
                a_starts: a_starts.as_deref(),
                a_offs: a_starts.as_ref().and(self.a.col_offsets()),
                row0: 0,
                rows: 0,
                p0,
                kc,
                n,
                bpack,
                first_packed,
                b_direct: b_starts
                    .as_ref()
                    .map(|s| (self.b.direct().unwrap_or_default(), &s[p0..p0 + kc])),
                packed_offsets: &packed_offsets[..kc],
                overwrite: p0 == 0 && !self.accumulate,
            };
            let work = |(bi, cblk): (usize, &mut [T])| {
                let args = BlockArgs {
                    row0: bi * mc,
                    rows: cblk.len() / n,
                    ..args
                };
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU has AVX-512F and FMA (checked by `isa`).
                    Isa::Avx512 => unsafe { block_avx512::<T, A, MR, NR>(&args, cblk) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU has AVX2 and FMA (checked by `isa`).
                    Isa::Avx2 => unsafe { block_avx2::<T, A, MR, NR>(&args, cblk) },
                    _ => block::<T, A, MR, NR, false>(&args, cblk),
                }
            };
            if parallel {
                c.par_chunks_mut(mc * n).enumerate().for_each(work);
            } else {
                c.chunks_mut(mc * n).enumerate().for_each(work);
            }
        }
    }
}

/// Rows per parallel row block: at most `MC`, a multiple of `MR`, and as even a split of the
/// `m` rows over a whole multiple of the pool's threads as that allows (m = 256 on 2 threads:
/// 4 blocks of 64 rows, where fixed blocks of 96 gave 96 + 96 + 64 and left one thread idle a third
/// of the time). The block height changes which thread computes a row, never how: the bits do not
/// depend on it.
fn balanced_rows<const MR: usize>(m: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let blocks = threads * m.div_ceil(threads * MC);
    m.div_ceil(blocks).next_multiple_of(MR).min(MC)
}

/// What one row block needs.
struct BlockArgs<'a, 'b, T, A: ?Sized> {
    a: &'a A,
    /// Row starts of A in its direct slice, when A is read in place.
    a_starts: Option<&'b [usize]>,
    /// Offsets of a directly read A's entries from their row start (all k), if not contiguous.
    a_offs: Option<&'a [usize]>,
    row0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    n: usize,
    /// The packed panels of B, from panel `first_packed` on.
    bpack: &'b [T],
    first_packed: usize,
    /// B read in place: its slice and the starts of rows p0..p0 + kc.
    b_direct: Option<(&'b [T], &'b [usize])>,
    /// p * NR for p < kc (the row starts inside a packed panel).
    packed_offsets: &'b [usize],
    /// Write the tile into C instead of adding it (first k block of a non-accumulating GEMM).
    overwrite: bool,
}

impl<T, A: ?Sized> Clone for BlockArgs<'_, '_, T, A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, A: ?Sized> Copy for BlockArgs<'_, '_, T, A> {}

/// Writes (or adds) the valid `height x width` corner of a tile into C at (i0, j0).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn store_tile<T: Float, const NR: usize>(
    c: &mut [T],
    n: usize,
    i0: usize,
    j0: usize,
    height: usize,
    width: usize,
    tile: &[[T; NR]],
    overwrite: bool,
) {
    for (i, trow) in tile.iter().enumerate().take(height) {
        let crow = &mut c[(i0 + i) * n + j0..][..width];
        if overwrite {
            crow.copy_from_slice(&trow[..width]);
        } else {
            for (cv, &t) in crow.iter_mut().zip(&trow[..width]) {
                *cv += t;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2<T: Float, A: Operand<T> + ?Sized, const MR: usize, const NR: usize>(
    args: &BlockArgs<'_, '_, T, A>,
    c: &mut [T],
) {
    block::<T, A, MR, NR, true>(args, c)
}

/// One row block of C (`rows x n`, contiguous) (+)= A rows `row0..` (k block) · packed B, with
/// the generic micro-kernel (A and B always packed).
#[inline(always)]
fn block<T: Float, A: Operand<T> + ?Sized, const MR: usize, const NR: usize, const FMA: bool>(
    args: &BlockArgs<'_, '_, T, A>,
    c: &mut [T],
) {
    let BlockArgs {
        a,
        row0,
        rows,
        p0,
        kc,
        n,
        bpack,
        overwrite,
        ..
    } = *args;
    let mut scratch = Scratch::<T>::new(rows.div_ceil(MR) * MR * kc);
    let apack = scratch.as_mut();
    let mut buf = Scratch::<T>::new(kc.max(MR));
    for (ip, panel) in apack.chunks_mut(MR * kc).enumerate() {
        let i0 = ip * MR;
        pack_a::<T, A, MR>(a, row0 + i0, MR.min(rows - i0), p0, kc, buf.as_mut(), panel);
    }
    for (jp, bpanel) in bpack.chunks_exact(NR * kc).enumerate() {
        let j0 = jp * NR;
        let width = NR.min(n - j0);
        for (ip, apanel) in apack.chunks_exact(MR * kc).enumerate() {
            let i0 = ip * MR;
            let tile = micro_kernel::<T, MR, NR, FMA>(kc, apanel, bpanel);
            store_tile::<T, NR>(c, n, i0, j0, MR.min(rows - i0), width, &tile, overwrite);
        }
    }
}

/// The MR x NR tile of one A panel times one B panel over `kc` steps, accumulated in
/// registers.
#[inline(always)]
fn micro_kernel<T: Float, const MR: usize, const NR: usize, const FMA: bool>(
    kc: usize,
    ap: &[T],
    bp: &[T],
) -> [[T; NR]; MR] {
    let mut acc = [[T::ZERO; NR]; MR];
    for (av, bv) in ap.chunks_exact(MR).zip(bp.chunks_exact(NR)).take(kc) {
        for i in 0..MR {
            let ai = av[i];
            for j in 0..NR {
                acc[i][j] = if FMA {
                    ai.mul_add(bv[j], acc[i][j])
                } else {
                    ai * bv[j] + acc[i][j]
                };
            }
        }
    }
    acc
}

/// The AVX-512 row block: like [`block`], with the intrinsics micro-kernels of [`avx512`], and
/// A and/or B read in place when [`Gemm::run`] chose so. Only the tiles of `gemm`'s AVX-512
/// arms (6 x 4, 8 x 2 and 16 x 1 vectors) are dispatched here.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn block_avx512<T: Float, A: Operand<T> + ?Sized, const MR: usize, const NR: usize>(
    args: &BlockArgs<'_, '_, T, A>,
    c: &mut [T],
) {
    let BlockArgs {
        a,
        a_starts,
        a_offs,
        row0,
        rows,
        p0,
        kc,
        n,
        bpack,
        first_packed,
        b_direct,
        packed_offsets,
        overwrite,
    } = *args;
    let is_f32 = std::mem::size_of::<T>() == 4;
    let lanes = if is_f32 { 16 } else { 8 };
    assert!(NR == lanes || NR == 2 * lanes || NR == 4 * lanes);
    let apanels = rows.div_ceil(MR);
    let mut scratch = Scratch::<T>::new(if a_starts.is_some() { 0 } else { apanels * MR * kc });
    let apack = scratch.as_mut();
    if a_starts.is_none() {
        let mut buf = Scratch::<T>::new(kc.max(MR));
        for (ip, panel) in apack.chunks_mut(MR * kc).enumerate() {
            let i0 = ip * MR;
            pack_a::<T, A, MR>(a, row0 + i0, MR.min(rows - i0), p0, kc, buf.as_mut(), panel);
        }
    }
    let a_base = a.direct().unwrap_or_default();
    let mut tile = [[T::ZERO; NR]; MR];
    for jp in 0..n.div_ceil(NR) {
        let j0 = jp * NR;
        let width = NR.min(n - j0);
        // B: in place (a full panel of a direct B) or a packed panel.
        let (bptr, boffs) = match b_direct {
            Some((base, starts)) if jp < first_packed => (base[j0..].as_ptr(), starts),
            _ => (bpack[(jp - first_packed) * NR * kc..].as_ptr(), packed_offsets),
        };
        for ip in 0..apanels {
            let i0 = ip * MR;
            let height = MR.min(rows - i0);
            let mut a_rows = [std::ptr::null::<T>(); MR];
            let a_packed = match a_starts {
                Some(starts) => {
                    for (i, r) in a_rows.iter_mut().enumerate() {
                        // Rows past the edge repeat the last row; their results are dropped.
                        let s = starts[row0 + i0 + i.min(height - 1)];
                        *r = a_base[s + if a_offs.is_some() { 0 } else { p0 }..].as_ptr();
                    }
                    std::ptr::null()
                }
                None => apack[ip * MR * kc..].as_ptr(),
            };
            // Ask for this tile of C now, so that its lines arrive while the k loop runs, not
            // when the tile is stored (at n = 2048 a row block's stripe of C no longer stays in
            // L2 between two k blocks, and the store waited on up to 24 misses).
            if !overwrite {
                prefetch_tile(c, n, i0, j0, height, width);
            }
            // SAFETY: T is f32 when 4 bytes wide and f64 otherwise (`Float` is sealed), and
            // the tile is [[T; NR]; MR] with NR = 1 or 2 vectors (asserted above); every pointer
            // reads kc rows of NR (B) or kc values (A) inside its slice: packed panels hold
            // kc x NR (B) or kc x MR (A) values, direct rows were checked by
            // `direct_starts` to hold their whole length (up to their last column offset, for
            // an A with `col_offsets`), and only full B panels are direct.
            unsafe {
                let out = tile.as_mut_ptr().cast::<T>();
                let (ap, ar, bp, bo) = (a_packed, &a_rows, bptr, boffs.as_ptr());
                // A read in place: its rows' entries p0.. are contiguous (offsets: null) or at
                // the offsets p0.. from the row starts.
                let ad = match (a_starts, a_offs) {
                    (None, _) => None,
                    (Some(_), None) => Some(std::ptr::null()),
                    (Some(_), Some(offs)) => Some(offs[p0..].as_ptr()),
                };
                match (is_f32, NR / lanes) {
                    (true, 4) => {
                        avx512::tile_f32::<MR, 4>(kc, ap.cast(), &ar.map(|p| p.cast()), ad, bp.cast(), bo, out.cast())
                    }
                    (true, 2) => {
                        avx512::tile_f32::<MR, 2>(kc, ap.cast(), &ar.map(|p| p.cast()), ad, bp.cast(), bo, out.cast())
                    }
                    (true, _) => {
                        avx512::tile_f32::<MR, 1>(kc, ap.cast(), &ar.map(|p| p.cast()), ad, bp.cast(), bo, out.cast())
                    }
                    (false, 4) => {
                        avx512::tile_f64::<MR, 4>(kc, ap.cast(), &ar.map(|p| p.cast()), ad, bp.cast(), bo, out.cast())
                    }
                    (false, 2) => {
                        avx512::tile_f64::<MR, 2>(kc, ap.cast(), &ar.map(|p| p.cast()), ad, bp.cast(), bo, out.cast())
                    }
                    (false, _) => {
                        avx512::tile_f64::<MR, 1>(kc, ap.cast(), &ar.map(|p| p.cast()), ad, bp.cast(), bo, out.cast())
                    }
                }
            }
            store_tile::<T, NR>(c, n, i0, j0, height, width, &tile, overwrite);
        }
    }
}

/// Hints the CPU to bring the `height x width` tile of C at (i0, j0) into L1 (a prefetch: no
/// effect on results, and none on memory outside the tile's rows).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_tile<T>(c: &[T], n: usize, i0: usize, j0: usize, height: usize, width: usize) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    let line = 64 / std::mem::size_of::<T>();
    for i in 0..height {
        let row = &c[(i0 + i) * n + j0..][..width];
        for j in (0..width).step_by(line) {
            // SAFETY: a prefetch of an address inside `row`; it never faults or writes.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(row[j..].as_ptr().cast()) };
        }
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
        // Three threads whatever the machine, so the 700-row product takes the stripe path
        // (two row blocks of 96 per thread) and the 200-row one the shared row blocks.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            let mut rng = crate::Rng::new(1);
            for &(m, n, k) in &[
                (1, 1, 1),
                (5, 7, 3),
                (9, 4, 300),
                (33, 65, 17),
                (64, 64, 600),
                (150, 20, 513),
                // parallel row blocks with B packed in parallel panel groups, partial last panel
                (200, 300, 260),
                // one row stripe per thread (m >= 2 row blocks per thread), two k blocks
                (700, 300, 260),
            ] {
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
                    gemm(m, n, k, &ar, &br, &mut c, false);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-10 * (1.0 + y.abs()), "{m}x{n}x{k} {ta} {tb}");
                    }
                    gemm(m, n, k, &ar, &br, &mut c, true);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - 2.0 * y).abs() < 1e-9 * (1.0 + y.abs()));
                    }
                }
                // f32 goes through the 16-wide panels.
                let (a32, b32): (Vec<f32>, Vec<f32>) = (
                    a.iter().map(|&v| v as f32).collect(),
                    b.iter().map(|&v| v as f32).collect(),
                );
                let mut c32 = vec![0.0f32; m * n];
                gemm(m, n, k, &MatRef::new(&a32, k), &MatRef::new(&b32, n), &mut c32, false);
                for (x, y) in c32.iter().zip(&want) {
                    assert!((*x as f64 - y).abs() < 1e-3 * (1.0 + y.abs()), "f32 {m}x{n}x{k}");
                }
            }
        });
    }

    /// An A whose rows are runs with gaps between them (`col_offsets`), as the channels-last
    /// column matrix is: read in place by the AVX-512 kernel (n < DIRECT_BELOW), packed through
    /// `row` by the portable kernel (and wherever n >= DIRECT_BELOW); k = 300 spans two k blocks, so the offsets of the second start at p0.
    #[test]
    fn gapped_rows_read_in_place() {
        struct Gapped<'a, T> {
            data: &'a [T],
            ld: usize,
            offs: &'a [usize],
        }
        impl<T: Float> Operand<T> for Gapped<'_, T> {
            fn trans(&self) -> bool {
                false
            }
            fn row<'s>(&'s self, r: usize, c0: usize, len: usize, buf: &'s mut [T]) -> &'s [T] {
                for (j, v) in buf[..len].iter_mut().enumerate() {
                    *v = self.data[r * self.ld + self.offs[c0 + j]];
                }
                &buf[..len]
            }
            fn direct(&self) -> Option<&[T]> {
                Some(self.data)
            }
            fn row_start(&self, r: usize) -> usize {
                r * self.ld
            }
            fn col_offsets(&self) -> Option<&[usize]> {
                Some(self.offs)
            }
        }
        let mut rng = crate::Rng::new(3);
        for &(m, n, k) in &[(13, 40, 300), (7, 8, 5), (200, 64, 300)] {
            // Runs of 5 with gaps of 3.
            let offs: Vec<usize> = (0..k).map(|c| c + c / 5 * 3).collect();
            let ld = offs[k - 1] + 1;
            let data: Vec<f64> = (0..m * ld).map(|_| rng.normal()).collect();
            let dense: Vec<f64> = (0..m)
                .flat_map(|i| offs.iter().map(move |&o| i * ld + o))
                .map(|at| data[at])
                .collect();
            let b: Vec<f64> = (0..k * n).map(|_| rng.normal()).collect();
            let want = naive(m, n, k, &dense, &b);
            let check = |got: &[f64], tol: f64, what: &str| {
                for (x, y) in got.iter().zip(&want) {
                    assert!((x - y).abs() < tol * (1.0 + y.abs()), "{what} {m}x{n}x{k}: {x} vs {y}");
                }
            };
            let mut c = vec![0.0; m * n];
            let a = Gapped {
                data: &data,
                ld,
                offs: &offs,
            };
            gemm(m, n, k, &a, &MatRef::new(&b, n), &mut c, false);
            check(&c, 1e-9, "gemm");
            // The portable kernel packs the gapped rows through `row` instead.
            let g = Gemm {
                m,
                n,
                k,
                a: &a,
                b: &MatRef::new(&b, n),
                accumulate: false,
                may_split: true,
            };
            let mut c = vec![f64::NAN; m * n];
            g.run::<f64, 4, 8>(Isa::Portable, &mut c);
            check(&c, 1e-9, "portable");
            // f32 on the 6 x 4 tile where n allows it.
            let f: Vec<f32> = data.iter().map(|&v| v as f32).collect();
            let bf: Vec<f32> = b.iter().map(|&v| v as f32).collect();
            let mut cf = vec![0.0f32; m * n];
            let a = Gapped {
                data: &f,
                ld,
                offs: &offs,
            };
            gemm_wide_tile(m, n, k, &a, &MatRef::new(&bf, n), &mut cf, false);
            check(&cf.iter().map(|&v| v as f64).collect::<Vec<_>>(), 1e-3, "f32 wide tile");
        }
    }

    #[test]
    fn every_kernel_variant_agrees_with_the_naive_product() {
        type RunTile = fn(&Gemm<'_, '_, MatRef<'_, f32>, MatRef<'_, f32>>, &mut [f32]);
        let mut rng = crate::Rng::new(2);
        let (m, n, k) = (13, 37, 300);
        let a: Vec<f32> = (0..m * k).map(|_| rng.normal() as f32).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.normal() as f32).collect();
        let want = naive(
            m,
            n,
            k,
            &a.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            &b.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        );
        let mut isas = vec![Isa::Portable];
        if isa() != Isa::Portable {
            isas.push(isa());
        }
        if isa() == Isa::Avx512 {
            isas.push(Isa::Avx2);
        }
        for which in isas {
            let g = Gemm {
                m,
                n,
                k,
                a: &MatRef::new(&a, k),
                b: &MatRef::new(&b, n),
                accumulate: false,
                may_split: true,
            };
            let tiles: &[RunTile] = match which {
                Isa::Avx512 => &[
                    |g, c| g.run::<f32, 8, 32>(Isa::Avx512, c),
                    |g, c| g.run::<f32, 6, 64>(Isa::Avx512, c),
                    |g, c| g.run::<f32, 16, 16>(Isa::Avx512, c),
                ],
                Isa::Avx2 => &[|g, c| g.run::<f32, 6, 16>(Isa::Avx2, c)],
                Isa::Portable => &[|g, c| g.run::<f32, 4, 16>(Isa::Portable, c)],
            };
            for (t, tile) in tiles.iter().enumerate() {
                let mut c = vec![f32::NAN; m * n];
                tile(&g, &mut c);
                for (x, y) in c.iter().zip(&want) {
                    assert!((*x as f64 - y).abs() < 1e-3 * (1.0 + y.abs()), "{which:?} tile {t}");
                }
            }
        }
    }
}
