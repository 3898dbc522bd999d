//! Matrix transposes for the kernels' operand layouts: a convolution's
//! weights turned for dX (`Wᵀ`, the kernel rotated for a transposed
//! convolution), packed panels of a transposed view, and operands of dW.
//!
//! A transpose reads along rows and writes along columns, so one of the two
//! sides jumps a row stride per element. Done element by element over a
//! whole matrix, every write lands on a different cache line. Here the work
//! goes in 16 x 16 blocks, so both sides stay on 16 lines at a time; with
//! AVX-512 each block is 16 vector loads, a register shuffle network and 16
//! vector stores (masked for a partial block at an edge); with AVX2 only,
//! each whole 8 x 8 quarter of a block is 8 loads, shuffles and 8 stores,
//! and a partial one goes value by value.

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
    let avx2 = !simd && super::simd::gemm_micro_avx2::available();
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
                    super::simd::transpose::block(
                        src.as_ptr().add(r0 * lds + c0),
                        lds,
                        dst.as_mut_ptr().add(c0 * ldd + r0),
                        ldd,
                        (r1 - r0, c1 - c0),
                    )
                };
                continue;
            }
            if avx2 {
                for q0 in (r0..r1).step_by(8) {
                    for p0 in (c0..c1).step_by(8) {
                        let (q1, p1) = ((q0 + 8).min(r1), (p0 + 8).min(c1));
                        if q1 - q0 == 8 && p1 - p0 == 8 {
                            // SAFETY: the asserts above put rows q0..q0+8,
                            // columns p0..p0+8 of src and rows p0..p0+8,
                            // columns q0..q0+8 of dst inside their slices,
                            // and the CPU has AVX2 (checked above).
                            #[cfg(target_arch = "x86_64")]
                            unsafe {
                                super::simd::transpose::block8_avx2(
                                    src.as_ptr().add(q0 * lds + p0),
                                    lds,
                                    dst.as_mut_ptr().add(p0 * ldd + q0),
                                    ldd,
                                )
                            };
                        } else {
                            values(src, lds, dst, ldd, q0..q1, p0..p1);
                        }
                    }
                }
                continue;
            }
            values(src, lds, dst, ldd, r0..r1, c0..c1);
        }
    }
}

/// Rows `rows`, columns `cols` of `src` transposed into `dst` value by value.
fn values(
    src: &[f32],
    lds: usize,
    dst: &mut [f32],
    ldd: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    let (c0, c1) = (cols.start, cols.end);
    for r in rows {
        let row = &src[r * lds + c0..r * lds + c1];
        for (c, &v) in (c0..c1).zip(row) {
            dst[c * ldd + r] = v;
        }
    }
}

fn simd_available() -> bool {
    super::simd::available()
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
    /// the CPU has AVX-512, 8 x 8 quarters and single values where it has
    /// AVX2) and strided rows on both sides, against the definition; values
    /// past `rows` in the destination's rows are left alone.
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
            (8, 8),
            (24, 13),
            (9, 40),
        ] {
            check(rows, cols, cols, rows);
            check(rows, cols, cols + 5, rows + 3);
            // overlapping source rows, as an im2col window sliding by 3
            check(rows, cols, 3, rows);
        }
    }
}
