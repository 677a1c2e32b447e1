//! General matrix multiply on the CPU: `C = op(A) · op(B)` (or `C += ...`), row-major.
//!
//! The classic blocked scheme, in three levels:
//! 1. the shared dimension k is cut into blocks of `KC`; for each block, B's rows are *packed*
//!    into panels of `NR` columns (k-major: the NR values of one k are adjacent), so the
//!    innermost loop reads B sequentially whatever its layout or transposition;
//! 2. C's rows are cut into blocks of `MC` rows (the unit of parallel work); each block packs
//!    its rows of A into panels of `MR` rows;
//! 3. a register-tiled micro-kernel multiplies one MR-row panel of A by one NR-column panel of
//!    B, keeping the MR x NR tile of C in registers for the whole k block: each loaded value of
//!    B is used MR times and each value of A NR times.
//!
//! The micro-kernel is plain Rust with constant bounds, so LLVM unrolls it into vector
//! registers; it is compiled three times — AVX-512F+FMA, AVX2+FMA and portable — and the
//! variant is picked at run time with `is_x86_feature_detected!`. Transposed operands are
//! handled by the packing (never materialised). Row blocks run in parallel; every element of C
//! is computed by the same sequence of operations whichever thread runs it, so the bits do not
//! depend on the thread count. (They may differ between CPUs with and without FMA.)

use super::PAR_THRESHOLD;
use crate::dtype::Float;
use rayon::prelude::*;

/// Rows of the register tile.
const MR: usize = 6;
/// Depth of one k block (an MR x KC panel of A and a KC x NR panel of B stay in L1/L2).
const KC: usize = 256;
/// Rows of C per parallel work unit.
const MC: usize = 72;

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
    /// Element (i, j) of op(X).
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> T {
        if self.trans {
            self.data[j * self.ld + i]
        } else {
            self.data[i * self.ld + j]
        }
    }
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
    if std::mem::size_of::<T>() == 4 {
        gemm_nr::<T, 16>(m, n, k, a, b, c, accumulate)
    } else {
        gemm_nr::<T, 8>(m, n, k, a, b, c, accumulate)
    }
}

/// Which compiled variant of the kernels this CPU runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Isa {
    Avx512,
    Avx2,
    Portable,
}

fn isa() -> Isa {
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

fn gemm_nr<T: Float, const NR: usize>(
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
    let isa = isa();
    let panels = n.div_ceil(NR);
    let mut bpack = vec![T::ZERO; panels * NR * KC.min(k)];
    for p0 in (0..k).step_by(KC) {
        let kc = KC.min(k - p0);
        pack_b::<T, NR>(b, p0, kc, n, &mut bpack);
        let bpack = &bpack[..panels * NR * kc];
        let work = |(bi, cblk): (usize, &mut [T])| {
            let rows = cblk.len() / n;
            let args = BlockArgs {
                a,
                row0: bi * MC,
                rows,
                p0,
                kc,
                n,
                bpack,
            };
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has AVX-512F and FMA (checked by `isa`).
                Isa::Avx512 => unsafe { block_avx512::<T, NR>(&args, cblk) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has AVX2 and FMA (checked by `isa`).
                Isa::Avx2 => unsafe { block_avx2::<T, NR>(&args, cblk) },
                _ => block::<T, NR, false>(&args, cblk),
            }
        };
        if m > MC && m.saturating_mul(n).saturating_mul(kc) >= 4 * PAR_THRESHOLD {
            c.par_chunks_mut(MC * n).enumerate().for_each(work);
        } else {
            c.chunks_mut(MC * n).enumerate().for_each(work);
        }
    }
}

/// Packs rows `p0..p0 + kc` of op(B) into `ceil(n / NR)` panels, each `kc x NR` (k-major),
/// zero-padding the last panel's missing columns.
fn pack_b<T: Float, const NR: usize>(b: MatRef<'_, T>, p0: usize, kc: usize, n: usize, out: &mut [T]) {
    for (jp, panel) in out.chunks_mut(NR * kc).take(n.div_ceil(NR)).enumerate() {
        let j0 = jp * NR;
        let width = NR.min(n - j0);
        for p in 0..kc {
            let dst = &mut panel[p * NR..(p + 1) * NR];
            if !b.trans {
                let row = &b.data[(p0 + p) * b.ld + j0..][..width];
                dst[..width].copy_from_slice(row);
            } else {
                for (j, d) in dst[..width].iter_mut().enumerate() {
                    *d = b.at(p0 + p, j0 + j);
                }
            }
            dst[width..].iter_mut().for_each(|v| *v = T::ZERO);
        }
    }
}

/// What one row block needs.
struct BlockArgs<'a, 'b, T> {
    a: MatRef<'a, T>,
    row0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    n: usize,
    bpack: &'b [T],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn block_avx512<T: Float, const NR: usize>(args: &BlockArgs<'_, '_, T>, c: &mut [T]) {
    block::<T, NR, true>(args, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2<T: Float, const NR: usize>(args: &BlockArgs<'_, '_, T>, c: &mut [T]) {
    block::<T, NR, true>(args, c)
}

/// One row block of C (`rows x n`, contiguous) += A rows `row0..` (k block) · packed B.
#[inline(always)]
fn block<T: Float, const NR: usize, const FMA: bool>(args: &BlockArgs<'_, '_, T>, c: &mut [T]) {
    let BlockArgs {
        a,
        row0,
        rows,
        p0,
        kc,
        n,
        bpack,
    } = *args;
    // Pack this block's rows of A into MR-row panels, kc x MR each (k-major).
    let apanels = rows.div_ceil(MR);
    let mut apack = vec![T::ZERO; apanels * MR * kc];
    for (ip, panel) in apack.chunks_mut(MR * kc).enumerate() {
        let i0 = ip * MR;
        let height = MR.min(rows - i0);
        for p in 0..kc {
            for i in 0..height {
                panel[p * MR + i] = a.at(row0 + i0 + i, p0 + p);
            }
        }
    }
    for (jp, bpanel) in bpack.chunks(NR * kc).take(n.div_ceil(NR)).enumerate() {
        let j0 = jp * NR;
        let width = NR.min(n - j0);
        for (ip, apanel) in apack.chunks(MR * kc).enumerate() {
            let i0 = ip * MR;
            let height = MR.min(rows - i0);
            let tile = micro_kernel::<T, NR, FMA>(kc, apanel, bpanel);
            for i in 0..height {
                let crow = &mut c[(i0 + i) * n + j0..][..width];
                for (cv, &t) in crow.iter_mut().zip(&tile[i][..width]) {
                    *cv += t;
                }
            }
        }
    }
}

/// The MR x NR tile of one A panel times one B panel over `kc` steps, accumulated in
/// registers.
#[inline(always)]
fn micro_kernel<T: Float, const NR: usize, const FMA: bool>(kc: usize, ap: &[T], bp: &[T]) -> [[T; NR]; MR] {
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
        for &(m, n, k) in &[
            (1, 1, 1),
            (5, 7, 3),
            (9, 4, 300),
            (33, 65, 17),
            (64, 64, 600),
            (150, 20, 513),
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
                gemm(m, n, k, ar, br, &mut c, false);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-10 * (1.0 + y.abs()), "{m}x{n}x{k} {ta} {tb}");
                }
                gemm(m, n, k, ar, br, &mut c, true);
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
            gemm(m, n, k, MatRef::new(&a32, k), MatRef::new(&b32, n), &mut c32, false);
            for (x, y) in c32.iter().zip(&want) {
                assert!((*x as f64 - y).abs() < 1e-3 * (1.0 + y.abs()), "f32 {m}x{n}x{k}");
            }
        }
    }

    #[test]
    fn every_kernel_variant_agrees_with_the_portable_one() {
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
        let mut bpack = vec![0.0f32; n.div_ceil(16) * 16 * k.min(KC)];
        let mut c = vec![0.0f32; m * n];
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            pack_b::<f32, 16>(MatRef::new(&b, n), p0, kc, n, &mut bpack);
            let bp = &bpack[..n.div_ceil(16) * 16 * kc];
            let args = BlockArgs {
                a: MatRef::new(&a, k),
                row0: 0,
                rows: m,
                p0,
                kc,
                n,
                bpack: bp,
            };
            block::<f32, 16, false>(&args, &mut c);
        }
        for (x, y) in c.iter().zip(&want) {
            assert!((*x as f64 - y).abs() < 1e-3 * (1.0 + y.abs()));
        }
    }
}
