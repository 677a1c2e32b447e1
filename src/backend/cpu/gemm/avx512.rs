//! The AVX-512 micro-kernels, written with intrinsics (LLVM does not keep a 16-vector tile
//! written as plain arrays in registers). 8 rows x 2 vectors of C = 16 independent
//! accumulators, enough to cover the FMA latency on two FMA ports; + 2 vectors of B + 1
//! broadcast of A = 19 of the 32 zmm registers. Large products use 6 rows x 4 vectors: 24
//! accumulators + 4 of B + 1 broadcast = 29 registers, and 10 loads per 24 FMAs instead of 10
//! per 16, which leaves the loop's front end room to keep both FMA ports busy. Each C element gets one fused multiply-add per
//! k in k order, exactly as `super::micro_kernel` with FMA, so the bits equal the generic kernel's.

use std::arch::x86_64::*;

macro_rules! tile_fn {
    ($name:ident, $t:ty, $lanes:expr, $zero:ident, $load:ident, $set1:ident, $fma:ident, $store:ident) => {
        /// `out (MR x NV vectors) = A (kc x MR) · B (kc x NV vectors)`. A is a packed panel
        /// (`a_packed[p * MR + i]`, `a_direct` None) or MR rows read in place: `a_rows[i][p]`
        /// (`a_direct` a null pointer), or `a_rows[i][a_offs[p]]` (`a_direct` = `a_offs`);
        /// B row p is at `b + b_offs[p]`. Tiles used: 6 x 4 vectors (large products), 8 x 2, and
        /// 16 x 1 for narrow products (n <= one vector).
        ///
        /// # Safety
        /// AVX-512F is available; every address named above is readable for p < kc; `out`
        /// has room for MR x NV vectors.
        #[target_feature(enable = "avx512f")]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $name<const MR: usize, const NV: usize>(
            kc: usize,
            a_packed: *const $t,
            a_rows: &[*const $t; MR],
            a_direct: Option<*const usize>,
            b: *const $t,
            b_offs: *const usize,
            out: *mut $t,
        ) {
            // SAFETY: the caller's contract.
            unsafe {
                let mut c = [[$zero(); NV]; MR];
                let mut bv = [$zero(); NV];
                if let Some(a_offs) = a_direct.filter(|o| !o.is_null()) {
                    for p in 0..kc {
                        let bp = b.add(*b_offs.add(p));
                        for (v, x) in bv.iter_mut().enumerate() {
                            *x = $load(bp.add(v * $lanes));
                        }
                        let ap = *a_offs.add(p);
                        for i in 0..MR {
                            let av = $set1(*a_rows[i].add(ap));
                            for v in 0..NV {
                                c[i][v] = $fma(av, bv[v], c[i][v]);
                            }
                        }
                    }
                } else if a_direct.is_some() {
                    for p in 0..kc {
                        let bp = b.add(*b_offs.add(p));
                        for (v, x) in bv.iter_mut().enumerate() {
                            *x = $load(bp.add(v * $lanes));
                        }
                        for i in 0..MR {
                            let av = $set1(*a_rows[i].add(p));
                            for v in 0..NV {
                                c[i][v] = $fma(av, bv[v], c[i][v]);
                            }
                        }
                    }
                } else {
                    for p in 0..kc {
                        let bp = b.add(*b_offs.add(p));
                        for (v, x) in bv.iter_mut().enumerate() {
                            *x = $load(bp.add(v * $lanes));
                        }
                        for i in 0..MR {
                            let av = $set1(*a_packed.add(p * MR + i));
                            for v in 0..NV {
                                c[i][v] = $fma(av, bv[v], c[i][v]);
                            }
                        }
                    }
                }
                for (i, ci) in c.iter().enumerate() {
                    for (v, cv) in ci.iter().enumerate() {
                        $store(out.add((i * NV + v) * $lanes), *cv);
                    }
                }
            }
        }
    };
}

tile_fn!(
    tile_f32,
    f32,
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_storeu_ps
);
tile_fn!(
    tile_f64,
    f64,
    8,
    _mm512_setzero_pd,
    _mm512_loadu_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_storeu_pd
);
