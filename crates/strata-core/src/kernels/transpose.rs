//! Matrix transposes for the kernels' operand layouts: a convolution's
//! weights turned for dX (`Wᵀ`, the kernel rotated for a transposed
//! convolution), packed panels of a transposed view, and operands of dW.
//!
//! A transpose reads along rows and writes along columns, so one of the two
//! sides jumps a row stride per element. Done element by element over a
//! whole matrix, every write lands on a different cache line. Here the work
//! goes in 16 x 16 blocks, so both sides stay on 16 lines at a time; with
//! AVX-512 each block is 16 vector loads, a register shuffle network and 16
//! vector stores (masked for a partial block at an edge).

/// `dst[c * ldd + r] = src[r * lds + c]` for `r < rows`, `c < cols`: `dst`
/// (`cols x rows`, row stride `ldd`) becomes the transpose of `src` (`rows x
/// cols`, row stride `lds`; rows may overlap). Panics if either does not fit
/// its slice, or if `ldd < rows`.
pub fn transpose(src: &[f32], rows: usize, cols: usize, lds: usize, dst: &mut [f32], ldd: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    // source rows may overlap (im2col windows read that way); written ones not
    assert!(
        (rows - 1) * lds + cols <= src.len(),
        "transpose: source does not fit"
    );
    assert!(
        ldd >= rows && (cols - 1) * ldd + rows <= dst.len(),
        "transpose: destination does not fit"
    );
    const B: usize = 16;
    let simd = simd_available();
    for r0 in (0..rows).step_by(B) {
        let r1 = (r0 + B).min(rows);
        for c0 in (0..cols).step_by(B) {
            let c1 = (c0 + B).min(cols);
            if simd {
                // SAFETY: the asserts above put rows r0..r1, columns c0..c1 of
                // src and rows c0..c1, columns r0..r1 of dst inside their
                // slices, and `simd_available` checked AVX-512F.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    simd::block(
                        src.as_ptr().add(r0 * lds + c0),
                        lds,
                        dst.as_mut_ptr().add(c0 * ldd + r0),
                        ldd,
                        (r1 - r0, c1 - c0),
                    )
                };
                continue;
            }
            for r in r0..r1 {
                let row = &src[r * lds + c0..r * lds + c1];
                for (c, &v) in (c0..c1).zip(row) {
                    dst[c * ldd + r] = v;
                }
            }
        }
    }
}

fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use crate::kernels::lanes;

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
    pub(super) unsafe fn block(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rows: usize, cols: usize, lds: usize, ldd: usize) {
        let src: Vec<f32> = (0..(rows - 1) * lds + cols).map(|i| i as f32).collect();
        let mut dst = vec![-1.0; cols * ldd];
        transpose(&src, rows, cols, lds, &mut dst, ldd);
        for c in 0..cols {
            for r in 0..ldd {
                let want = if r < rows { src[r * lds + c] } else { -1.0 };
                assert_eq!(
                    dst[c * ldd + r],
                    want,
                    "{rows}x{cols} lds {lds} ldd {ldd} ({r},{c})"
                );
            }
        }
    }

    /// Whole 16 x 16 blocks, partial blocks at the edges (masked lanes where
    /// the CPU has AVX-512) and strided rows on both sides, against the
    /// definition; values past `rows` in the destination's rows are left alone.
    #[test]
    fn matches_the_definition() {
        for (rows, cols) in [
            (1, 1),
            (3, 17),
            (16, 16),
            (14, 576),
            (33, 70),
            (256, 64),
            (64, 48),
        ] {
            check(rows, cols, cols, rows);
            check(rows, cols, cols + 5, rows + 3);
            // overlapping source rows, as an im2col window sliding by 3
            check(rows, cols, 3, rows);
        }
    }
}
