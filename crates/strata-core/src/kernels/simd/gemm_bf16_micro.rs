//! The bfloat16 micro-kernel: an `R x NR` block of C (float32) from an
//! `R x kc` block of A and a `kc x NR` panel of B, both bfloat16, by
//! `vdpbf16ps` (AVX512-BF16), which adds the products of two adjacent k to
//! each float32 lane: twice the products of an FMA per instruction. B's
//! panels hold pairs of rows interleaved (lane `j` of pair row `p` is
//! `B[2p, j]` in its low half, `B[2p + 1, j]` in its high half); A is staged
//! a block at a time into the same pairs from its float32 rows ([`stage`]),
//! rounded to nearest even as [`crate::precision::round_bf16`] does, except
//! that subnormal values become zero (and `vdpbf16ps` flushes subnormal
//! sums). For [`crate::kernels::packed_gemm`]. AMX is not implemented.

use super::gemm_micro::{MR, NR, NV};
use crate::kernels::gemm::MatRef;

/// Panel rows (pairs) ahead of the one in use that the micro-kernel prefetches.
const PREFETCH_P: usize = 4;

/// Whether this CPU has AVX512-BF16 (and the AVX-512F and BW it is used with).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `src` (`k` rows of [`NR`] float32 values) as `ceil(k / 2)` pair rows of
/// [`NR`] bfloat16 pairs in `dst` (each pair's bits in one `f32` slot; a
/// missing last row is zeros): [`pair_panel_of`] on the one panel `src` is.
/// Panics if the lengths do not match or the CPU lacks AVX512-BF16.
pub fn pair_panel(src: &[f32], dst: &mut [f32]) {
    let k = src.len() / NR;
    assert!(src.len() == k * NR, "pair_panel: whole rows of NR values");
    pair_panel_of(&MatRef::new(src, k, NR), 0, dst);
}

/// Panel `j` of the row-major view `b` (columns `j * NR..`, zeros past
/// `b.cols`) straight into `ceil(b.rows / 2)` pair rows of [`NR`] bfloat16
/// pairs in `dst` (lane `l` of pair row `p`: rows `2p` and `2p + 1` of
/// column `j * NR + l`, rounded to nearest even; a missing last row is
/// zeros), without building the float32 panel. Panics if `b` is not row-major or exceeds its slice, if `j` is
/// past its columns, if `dst`'s length does not match or the CPU lacks
/// AVX512-BF16.
pub fn pair_panel_of(b: &MatRef, j: usize, dst: &mut [f32]) {
    let (k, n0) = (b.rows, j * NR);
    assert!(
        b.col_stride == 1 && n0 < b.cols,
        "pair_panel_of: a row-major panel"
    );
    assert!(k == 0 || (k - 1) * b.row_stride + b.cols <= b.data.len());
    assert_eq!(dst.len(), k.div_ceil(2) * NR);
    assert!(available(), "pair_panel_of: this CPU has no AVX512-BF16");
    // SAFETY: every row r < k holds columns n0..cols at r * row_stride
    // inside `b.data` (checked above), and the loads are masked to those
    // columns; pair row p < ceil(k / 2) of `dst` holds NR values; the CPU
    // was checked.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        pair_panel_of_avx(b.data, b.row_stride, k, (n0, NR.min(b.cols - n0)), dst)
    }
}

/// # Safety
/// Rows `r < k` of `src` hold `w` values at `r * ld + n0`; `dst` holds
/// `ceil(k / 2) * NR`; the CPU has AVX512-BF16 and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pair_panel_of_avx(
    src: &[f32],
    ld: usize,
    k: usize,
    (n0, w): (usize, usize),
    dst: &mut [f32],
) {
    use super::lanes::mask;
    use std::arch::x86_64::*;
    let idx: [u16; 32] = std::array::from_fn(|l| ((l % 2) * 16 + l / 2) as u16);
    // SAFETY: `idx` holds 32 u16 (64 bytes)
    let idx = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
    let row = |r: usize, v: usize| src.as_ptr().wrapping_add(r * ld + n0 + 16 * v);
    for p in 0..k.div_ceil(2) {
        for v in 0..NV {
            let m = mask(w.saturating_sub(16 * v));
            // SAFETY: masked loads read only the w values of rows 2p and
            // 2p + 1 < k the caller vouches for (masked-off lanes are not
            // touched); pair row p of `dst` holds NR values.
            unsafe {
                let lo = _mm512_maskz_loadu_ps(m, row(2 * p, v));
                let hi = match 2 * p + 1 < k {
                    true => _mm512_maskz_loadu_ps(m, row(2 * p + 1, v)),
                    false => _mm512_setzero_ps(),
                };
                let both: __m512i =
                    std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
                let pairs = _mm512_permutexvar_epi16(idx, both);
                _mm512_storeu_si512(dst.as_mut_ptr().add(p * NR + 16 * v).cast(), pairs);
            }
        }
    }
}

/// Rows `0..mr` of an A block, `kl` float32 values from each `rows[i]`, as
/// `ceil(kl / 2)` bfloat16 pairs at `dst + i * ld` (a missing last value is zero).
///
/// # Safety
/// `rows[i] + j` must be readable for `i < mr`, `j < kl`; `dst + i * ld + q`
/// writable for `q < ceil(kl / 2)`; the CPU must have AVX512-BF16 and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub unsafe fn stage(rows: &[*const f32; MR], mr: usize, kl: usize, dst: *mut u32, ld: usize) {
    use super::lanes::mask;
    use std::arch::x86_64::*;
    for (i, &row) in rows.iter().enumerate().take(mr) {
        for j in (0..kl).step_by(32) {
            let n = kl - j;
            // SAFETY: masked loads read only values j..j + n < kl of the row,
            // the masked store writes only pairs j/2..(j + n)/2 rounded up,
            // which the caller vouches for; masked-off lanes are not touched.
            unsafe {
                let lo = _mm512_maskz_loadu_ps(mask(n), row.wrapping_add(j));
                let hi =
                    _mm512_maskz_loadu_ps(mask(n.saturating_sub(16)), row.wrapping_add(j + 16));
                let pairs: __m512i =
                    std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
                let out = dst.wrapping_add(i * ld + j / 2);
                _mm512_mask_storeu_epi32(out.cast(), mask(n.div_ceil(2)), pairs);
            }
        }
    }
}

/// Dispatches to the micro-kernel for `mr` rows (1..=MR).
///
/// # Safety
/// As [`kernel`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn micro(
    mr: usize,
    kp: usize,
    a: (*const u32, usize),
    b: (*const u32, usize),
    c: *mut f32,
    ldc: usize,
    masks: [u16; NV],
    load_c: bool,
) {
    macro_rules! go {
        ($($r:literal)*) => {
            match mr {
                // SAFETY: forwarded from the caller.
                $($r => unsafe { kernel::<$r>(kp, a, b, c, ldc, masks, load_c) },)*
                _ => unreachable!("micro-kernel rows {mr}"),
            }
        };
    }
    go!(1 2 3 4 5 6)
}

/// `R x NR` block of C (masked to the lanes in `masks`) `(+)=` the `R x 2kp`
/// block of A (row `i`'s pairs at `a.0 + i * a.1`) times the `kp` pair rows
/// of a panel at `b.0`, `b.1` pairs apart.
///
/// # Safety
/// `a.0 + i*a.1 + p` for `i < R`, `p < kp` and `b.0 + p*b.1 + l` for
/// `l < NR` must be readable; `c + i*ldc + 16*v + l` must be writable (and
/// readable when `load_c`) for every lane `l` set in `masks[v]`; the CPU
/// must have AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn kernel<const R: usize>(
    kp: usize,
    (a, lda): (*const u32, usize),
    (b, ldb): (*const u32, usize),
    c: *mut f32,
    ldc: usize,
    masks: [u16; NV],
    load_c: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    for p in 0..kp {
        // SAFETY: p < kp, so these reads are inside what the caller vouches
        // for; the transmutes turn 512 bits of integers into 512 bits of
        // bfloat16 pairs, types of the same size with no invalid values.
        unsafe {
            let ahead = b.wrapping_add((p + PREFETCH_P) * ldb) as *const i8;
            for v in 0..NV {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * v));
            }
            let bv: [__m512bh; NV] = std::array::from_fn(|v| {
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    b.add(p * ldb + 16 * v).cast(),
                ))
            });
            for (i, row) in acc.iter_mut().enumerate() {
                let pair = *a.add(i * lda + p) as i32;
                let av = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair));
                for v in 0..NV {
                    row[v] = _mm512_dpbf16_ps(row[v], av, bv[v]);
                }
            }
        }
    }
    for (i, row) in acc.iter_mut().enumerate() {
        for (v, sum) in row.iter_mut().enumerate() {
            // wrapping: a vector's address may lie past C when its mask is empty
            let cv = c.wrapping_add(i * ldc + 16 * v);
            // SAFETY: masked loads and stores touch only the lanes set in the
            // masks, which the caller vouches for; unset lanes are not accessed.
            unsafe {
                if load_c {
                    *sum = _mm512_add_ps(_mm512_maskz_loadu_ps(masks[v], cv), *sum);
                }
                _mm512_mask_storeu_ps(cv, masks[v], *sum);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn stage(_rows: &[*const f32; MR], _mr: usize, _kl: usize, _dst: *mut u32, _ld: usize) {
    unreachable!("the bfloat16 kernel needs AVX512-BF16; callers check `available`")
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize>(
    _kp: usize,
    _a: (*const u32, usize),
    _b: (*const u32, usize),
    _c: *mut f32,
    _ldc: usize,
    _masks: [u16; NV],
    _load_c: bool,
) {
    unreachable!("the bfloat16 kernel needs AVX512-BF16; callers check `available`")
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::precision::round_bf16;

    fn bf16_bits(x: f32) -> u32 {
        round_bf16(x).to_bits() >> 16
    }

    /// A panel of a strided row-major view pairs rows `2p` and `2p + 1` of
    /// each column, rounded as `round_bf16` does, with zeros past the last
    /// column and for a missing last row: odd and even row counts, a last
    /// panel narrower than NR, rows further apart than the view is wide.
    #[test]
    #[cfg_attr(not(host_avx512bf16), ignore = "needs a CPU with AVX512-BF16")]
    fn pairs_a_strided_view_panel_by_panel() {
        let mut rng = crate::rng::Rng::new(4);
        for (k, cols, ld) in [(7, 150, 160), (8, 64, 64), (1, 20, 20), (5, 128, 200)] {
            let data: Vec<f32> = (0..k * ld).map(|_| rng.normal()).collect();
            let b = MatRef::strided(&data, k, cols, ld);
            let at = |r: usize, col: usize| match r < k && col < cols {
                true => bf16_bits(data[r * ld + col]),
                false => 0,
            };
            for j in 0..cols.div_ceil(NR) {
                let mut got = vec![f32::NAN; k.div_ceil(2) * NR];
                pair_panel_of(&b, j, &mut got);
                for p in 0..k.div_ceil(2) {
                    for l in 0..NR {
                        let want = at(2 * p, j * NR + l) | at(2 * p + 1, j * NR + l) << 16;
                        assert_eq!(
                            got[p * NR + l].to_bits(),
                            want,
                            "k {k}, panel {j}, ({p}, {l})"
                        );
                    }
                }
            }
        }
    }

    /// Staging and pairing round as `round_bf16` does and put row `2p` (or
    /// value `2q`) in the low half; the kernel sums exactly those products.
    #[test]
    #[cfg_attr(not(host_avx512bf16), ignore = "needs a CPU with AVX512-BF16")]
    fn stages_pairs_and_multiplies_as_rounded_float32() {
        let mut rng = crate::rng::Rng::new(3);
        let k = 37;
        let src: Vec<f32> = (0..k * NR).map(|_| rng.normal()).collect();
        let mut paired = vec![0.0f32; k.div_ceil(2) * NR];
        pair_panel(&src, &mut paired);
        for p in 0..k.div_ceil(2) {
            for j in 0..NR {
                let hi = if 2 * p + 1 < k {
                    bf16_bits(src[(2 * p + 1) * NR + j])
                } else {
                    0
                };
                let want = bf16_bits(src[2 * p * NR + j]) | hi << 16;
                assert_eq!(paired[p * NR + j].to_bits(), want, "pair row {p}, lane {j}");
            }
        }
        // A: 6 rows of k values, 5 of them staged
        let a: Vec<f32> = (0..MR * k).map(|_| rng.normal()).collect();
        let rows: [*const f32; MR] = std::array::from_fn(|i| a[i * k..].as_ptr());
        let ld = 20;
        let mut st = vec![u32::MAX; MR * ld];
        // SAFETY: each row has k values; `st` has MR rows of ld >= ceil(k/2)
        // pairs; the CPU has AVX512-BF16 (the test is ignored otherwise)
        unsafe { stage(&rows, 5, k, st.as_mut_ptr(), ld) };
        for i in 0..5 {
            for q in 0..k.div_ceil(2) {
                let hi = if 2 * q + 1 < k {
                    bf16_bits(a[i * k + 2 * q + 1])
                } else {
                    0
                };
                assert_eq!(st[i * ld + q], bf16_bits(a[i * k + 2 * q]) | hi << 16);
            }
            assert_eq!(st[i * ld + k.div_ceil(2)], u32::MAX, "nothing past the row");
        }
        assert!(
            st[5 * ld..].iter().all(|&v| v == u32::MAX),
            "row 5 not staged"
        );
        // C (5 x 50, ldc 53) = A · B, masked to 50 columns, then += again
        let (ldc, n): (usize, usize) = (53, 50);
        let mut c = vec![7.0f32; 5 * ldc];
        let masks: [u16; NV] =
            std::array::from_fn(|v| crate::kernels::simd::lanes::mask(n.saturating_sub(16 * v)));
        for load_c in [false, true] {
            // SAFETY: `st` rows hold ceil(k/2) pairs, `paired` that many pair
            // rows of NR; C's rows have ldc >= n lanes for the masks
            unsafe {
                micro(
                    5,
                    k.div_ceil(2),
                    (st.as_ptr(), ld),
                    (paired.as_ptr().cast(), NR),
                    c.as_mut_ptr(),
                    ldc,
                    masks,
                    load_c,
                )
            };
        }
        for i in 0..5 {
            for j in 0..ldc {
                let got = c[i * ldc + j];
                if j >= n {
                    assert_eq!(got, 7.0, "outside the mask");
                    continue;
                }
                let (mut want, mut mag) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let t = round_bf16(a[i * k + p]) as f64 * round_bf16(src[p * NR + j]) as f64;
                    want += t;
                    mag += t.abs();
                }
                let bound = 2.0 * (k as f64 + 2.0) * f64::powi(2.0, -24) * 2.0 * mag;
                assert!(
                    (got as f64 - 2.0 * want).abs() <= bound,
                    "({i}, {j}): {got} vs {}",
                    2.0 * want
                );
            }
        }
    }
}
