//! A 16 x 16 block transposed in AVX-512 registers, and an 8 x 8 one in
//! AVX2 registers, for [`crate::kernels::transpose`].

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::lanes;

/// Transposes the `nr x nc` block (at most 16 x 16) at `src` (row stride
/// `lds`) into `dst` (row stride `ldd`): four rounds of shuffles, each
/// pairing registers at distance 1, 2, 4 and 8 and swapping 1-, 2-, 4- and
/// 8-value halves between them. A partial block reads and writes through
/// lane masks (missing rows read as zeros that are never stored).
///
/// # Safety
/// `src + r * lds + c` must be readable and `dst + c * ldd + r` writable
/// for `r < nr`, `c < nc`, both at most 16, and the CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn block(
    src: *const f32,
    lds: usize,
    dst: *mut f32,
    ldd: usize,
    (nr, nc): (usize, usize),
) {
    let (rmask, cmask) = (lanes::mask(nr), lanes::mask(nc));
    let r: [__m512; 16] = std::array::from_fn(|i| {
        if i < nr {
            // SAFETY: row i < nr, columns below nc are readable (the
            // caller); masked-off lanes are not touched.
            unsafe { lanes::load(src.add(i * lds), cmask) }
        } else {
            _mm512_setzero_ps()
        }
    });
    // round 1: pairs (2i, 2i+1) interleave single values
    let mut a = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // round 2: pairs at distance 2 interleave value pairs (as f64)
    let mut b = [_mm512_setzero_ps(); 16];
    for i in 0..4 {
        for j in 0..2 {
            let (x, y) = (a[4 * i + j], a[4 * i + j + 2]);
            let (xd, yd) = (_mm512_castps_pd(x), _mm512_castps_pd(y));
            b[4 * i + j] = _mm512_castpd_ps(_mm512_unpacklo_pd(xd, yd));
            b[4 * i + j + 2] = _mm512_castpd_ps(_mm512_unpackhi_pd(xd, yd));
        }
    }
    // round 3: distance 4 swaps 128-bit lanes (4 values)
    let mut c = [_mm512_setzero_ps(); 16];
    for i in 0..2 {
        for j in 0..4 {
            let (x, y) = (b[8 * i + j], b[8 * i + j + 4]);
            c[8 * i + j] = _mm512_shuffle_f32x4::<0b1000_1000>(x, y);
            c[8 * i + j + 4] = _mm512_shuffle_f32x4::<0b1101_1101>(x, y);
        }
    }
    // round 4: distance 8 swaps the 256-bit halves' 128-bit lanes again
    let mut d = [_mm512_setzero_ps(); 16];
    for j in 0..8 {
        let (x, y) = (c[j], c[j + 8]);
        d[j] = _mm512_shuffle_f32x4::<0b1000_1000>(x, y);
        d[j + 8] = _mm512_shuffle_f32x4::<0b1101_1101>(x, y);
    }
    // d[k] holds column `COLUMN_OF[k]` of the block
    for (k, v) in d.iter().enumerate() {
        let col = COLUMN_OF[k];
        if col < nc {
            // SAFETY: row `col` < nc of `dst`, lanes below nr, is writable
            // (the caller); masked-off lanes are not touched.
            unsafe { lanes::store(dst.add(col * ldd), rmask, *v) };
        }
    }
}

/// Which column of the source block each register of the last round holds.
const COLUMN_OF: [usize; 16] = [0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15];

/// Transposes the whole 8 x 8 block at `src` (row stride `lds`) into `dst`
/// (row stride `ldd`) in AVX2 registers, for CPUs without AVX-512: pairs
/// of rows interleaved, then pairs of pairs, then 128-bit halves swapped.
///
/// # Safety
/// `src + r * lds + c` must be readable and `dst + c * ldd + r` writable for
/// `r, c < 8`, and the CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn block8_avx2(src: *const f32, lds: usize, dst: *mut f32, ldd: usize) {
    // SAFETY: rows 0..8, columns 0..8 are readable (the caller)
    let r: [__m256; 8] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src.add(i * lds)) });
    // a[2i] = r[2i][0] r[2i+1][0] r[2i][1] r[2i+1][1] | the same of 4, 5
    let a: [__m256; 8] = std::array::from_fn(|k| match k % 2 {
        0 => _mm256_unpacklo_ps(r[k], r[k + 1]),
        _ => _mm256_unpackhi_ps(r[k - 1], r[k]),
    });
    // b[4i + j]: columns (j, of each half) of rows 4i..4i+4
    let mut b = [_mm256_setzero_ps(); 8];
    for i in 0..2 {
        let (lo, hi) = (a[4 * i], a[4 * i + 1]);
        let (lo2, hi2) = (a[4 * i + 2], a[4 * i + 3]);
        b[4 * i] = _mm256_shuffle_ps::<0b0100_0100>(lo, lo2);
        b[4 * i + 1] = _mm256_shuffle_ps::<0b1110_1110>(lo, lo2);
        b[4 * i + 2] = _mm256_shuffle_ps::<0b0100_0100>(hi, hi2);
        b[4 * i + 3] = _mm256_shuffle_ps::<0b1110_1110>(hi, hi2);
    }
    // column j (j < 4) is the low halves of b[j] and b[4 + j], column 4 + j their high halves
    for j in 0..4 {
        let lo = _mm256_permute2f128_ps::<0x20>(b[j], b[4 + j]);
        let hi = _mm256_permute2f128_ps::<0x31>(b[j], b[4 + j]);
        // SAFETY: rows j and 4 + j of dst, 8 values each, are writable (the caller)
        unsafe {
            _mm256_storeu_ps(dst.add(j * ldd), lo);
            _mm256_storeu_ps(dst.add((4 + j) * ldd), hi);
        }
    }
}

#[cfg(test)]
mod tests {
    /// The AVX2 8 x 8 block against the definition, strided both sides, and
    /// nothing written past its 8 values a row (run on AVX-512 CPUs too).
    #[test]
    #[cfg_attr(not(host_packed_gemm), ignore = "needs a CPU with AVX2")]
    fn avx2_block_is_the_transpose() {
        assert!(crate::kernels::simd::gemm_micro_avx2::available());
        let (lds, ldd) = (11, 9);
        let src: Vec<f32> = (0..8 * lds).map(|i| i as f32).collect();
        let mut dst = vec![-1.0f32; 8 * ldd];
        // SAFETY: 8 rows of `lds` >= 8 and 8 rows of `ldd` >= 8 values; AVX2 asserted
        unsafe { super::block8_avx2(src.as_ptr(), lds, dst.as_mut_ptr(), ldd) };
        for c in 0..8 {
            for r in 0..ldd {
                let want = if r < 8 { src[r * lds + c] } else { -1.0 };
                assert_eq!(dst[c * ldd + r], want, "({r}, {c})");
            }
        }
    }
}
