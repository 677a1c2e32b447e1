//! Cache-blocked matrix transposes, for the layout turns of the channels-last and Winograd conv
//! kernels (NCHW <-> NHWC, with padding on one side).
//!
//! A naive transpose reads one matrix in order and writes the other with a stride, so every
//! store lands on a different cache line. Here the matrix is cut into `TILE x TILE` tiles: a
//! tile's 16 rows are read as 16 contiguous runs and written out as 16 contiguous runs. With
//! AVX-512F and 4-byte values a whole tile is turned in registers (`avx512_16x16`: 16 loads,
//! 64 shuffles, 16 stores), else through a small array; partial tiles at the edges go value by
//! value. Rows of either side need not be equally spaced: each is given by its start offset (a
//! padded image's rows jump over the padding). A transpose only moves values, so the bits are
//! the input's.

/// Side of a tile: 16 f32 values = one cache line (one zmm register).
const TILE: usize = 16;

/// `dst[dst_row(j) + i] = src[src_row(i) + j]` for `i < rows`, `j < cols`: row `i` of the
/// source (starting at `src_row(i)`, `cols` values) becomes column `i` of the destination,
/// whose row `j` starts at `dst_row(j)`.
///
/// # Panics
/// If a row named by the offsets does not fit in its slice (a bug in the caller: the offsets
/// come from tensor shapes checked before).
pub(crate) fn transpose<T: Copy + Default>(
    src: &[T],
    src_row: impl Fn(usize) -> usize,
    rows: usize,
    cols: usize,
    dst: &mut [T],
    dst_row: impl Fn(usize) -> usize,
) {
    // Whole tiles in AVX-512 registers: 4-byte values on a CPU with AVX-512F.
    #[cfg(target_arch = "x86_64")]
    let simd = std::mem::size_of::<T>() == 4 && std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    let mut tile = [[T::default(); TILE]; TILE];
    let mut i0 = 0;
    while i0 < rows {
        let ib = TILE.min(rows - i0);
        let starts: [usize; TILE] = std::array::from_fn(|i| if i < ib { src_row(i0 + i) } else { 0 });
        let mut j0 = 0;
        while j0 < cols {
            let jb = TILE.min(cols - j0);
            if ib == TILE && jb == TILE {
                let s: [&[T]; TILE] = std::array::from_fn(|i| &src[starts[i] + j0..][..TILE]);
                let ends: [usize; TILE] = std::array::from_fn(|j| dst_row(j0 + j) + i0);
                // Every destination run must lie inside `dst` (checked once, here).
                assert!(ends.iter().all(|&e| e + TILE <= dst.len()));
                if simd {
                    // SAFETY: AVX-512F is present (`simd`); T is 4 bytes wide, and the tile only
                    // moves bits (no arithmetic), so reading and writing it as f32 lanes keeps
                    // every value; the 16 source runs are slices of 16 and the 16 destination
                    // runs were bounds-checked above, and `dst` does not overlap `src` (& vs
                    // &mut).
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        let base = dst.as_mut_ptr();
                        avx512_16x16(
                            s.map(|r| r.as_ptr().cast::<f32>()),
                            ends.map(|e| base.add(e).cast::<f32>()),
                        );
                    }
                } else {
                    for (t, r) in tile.iter_mut().zip(&s) {
                        t.copy_from_slice(r);
                    }
                    for (j, &e) in ends.iter().enumerate() {
                        for (v, t) in dst[e..e + TILE].iter_mut().zip(&tile) {
                            *v = t[j];
                        }
                    }
                }
            } else {
                for (i, &s) in starts.iter().enumerate().take(ib) {
                    for (j, &v) in src[s + j0..][..jb].iter().enumerate() {
                        dst[dst_row(j0 + j) + i0 + i] = v;
                    }
                }
            }
            j0 += jb;
        }
        i0 += ib;
    }
}

/// Transposes one 16 x 16 tile of 4-byte values in registers: `dst[j][i] = src[i][j]`. Three
/// rounds of shuffles: interleave row pairs (32-bit), then pairs of pairs (64-bit), which leaves
/// every 128-bit lane holding 4 rows of one column; then two rounds of 128-bit lane shuffles
/// gather each column's four lanes.
///
/// # Safety
/// AVX-512F is available; each `src[i]` is readable and each `dst[j]` writable for 16 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_16x16(src: [*const f32; 16], dst: [*mut f32; 16]) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract.
    unsafe {
        // (Loops, not closures: a closure is compiled without AVX-512 and could not inline the
        // intrinsics.)
        let mut r = [_mm512_setzero_ps(); 16];
        for (v, &p) in r.iter_mut().zip(&src) {
            *v = _mm512_loadu_ps(p);
        }
        // t[2p] / t[2p + 1]: rows 2p, 2p + 1 interleaved, low / high halves of each lane.
        let mut t = [_mm512_setzero_ps(); 16];
        for p in 0..8 {
            t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
            t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
        }
        // u[4g + c]: lane l holds rows 4g..4g + 4 of column 4l + c.
        let mut u = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            for h in 0..2 {
                let (a, b) = (_mm512_castps_pd(t[4 * g + h]), _mm512_castps_pd(t[4 * g + 2 + h]));
                u[4 * g + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
                u[4 * g + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
            }
        }
        for c in 0..4 {
            let v0 = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
            let v1 = _mm512_shuffle_f32x4::<0xdd>(u[c], u[4 + c]);
            let w0 = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
            let w1 = _mm512_shuffle_f32x4::<0xdd>(u[8 + c], u[12 + c]);
            _mm512_storeu_ps(dst[c], _mm512_shuffle_f32x4::<0x88>(v0, w0));
            _mm512_storeu_ps(dst[4 + c], _mm512_shuffle_f32x4::<0x88>(v1, w1));
            _mm512_storeu_ps(dst[8 + c], _mm512_shuffle_f32x4::<0xdd>(v0, w0));
            _mm512_storeu_ps(dst[12 + c], _mm512_shuffle_f32x4::<0xdd>(v1, w1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transpose;

    /// Against the definition, for shapes with full and partial tiles and with gaps between
    /// rows on both sides (the padded-image case), for 4-byte values (the AVX-512 tile where
    /// the CPU has it) and 8-byte ones.
    #[test]
    fn matches_the_definition_with_gaps() {
        check::<u32>();
        check::<u64>();
    }

    fn check<T: Copy + Default + PartialEq + std::fmt::Debug + TryFrom<usize>>()
    where
        <T as TryFrom<usize>>::Error: std::fmt::Debug,
    {
        let val = |v: usize| T::try_from(v).unwrap();
        for &(rows, cols) in &[(1, 1), (7, 9), (16, 16), (16, 49), (49, 64), (33, 17), (64, 196)] {
            let (sgap, dgap) = (3, 5);
            let src: Vec<T> = (0..rows * (cols + sgap)).map(|v| val(v + 1)).collect();
            let mut dst = vec![val(0); cols * (rows + dgap)];
            transpose(&src, |i| i * (cols + sgap), rows, cols, &mut dst, |j| j * (rows + dgap));
            for j in 0..cols {
                for i in 0..rows {
                    assert_eq!(
                        dst[j * (rows + dgap) + i],
                        src[i * (cols + sgap) + j],
                        "{rows}x{cols} at ({i}, {j})"
                    );
                }
                // The gaps stay untouched.
                assert!(dst[j * (rows + dgap) + rows..][..dgap].iter().all(|&v| v == val(0)));
            }
        }
    }
}
