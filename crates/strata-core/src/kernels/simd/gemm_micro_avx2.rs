//! The packed GEMM's micro-kernel for CPUs with AVX2 and FMA but no AVX-512
//! (AMD Zen 3 and earlier, Intel client cores): the same `R x NR` block of C
//! from the same operands as `gemm_micro`'s AVX-512 kernel, so every caller
//! of the packed GEMM runs unchanged on either.
//!
//! Sixteen 8-lane registers hold no `6 x 64` block, so a panel's 64 columns
//! are taken a quarter (16 columns, two vectors) at a time: `6 x 2`
//! accumulators, two panel vectors and the broadcast fill 15 registers, and
//! the `R x kc` block of A, read once per quarter, stays in L1. Each sum is
//! the same chain of fused multiply-adds over k as the AVX-512 kernel's, so
//! both give bitwise the same C.

use super::gemm_micro::{MR, NR, NV};

/// Panel rows ahead of the one in use that the kernel prefetches.
const PREFETCH_K: usize = 24;

/// Whether this CPU has AVX2 and FMA, which [`kernel`] needs.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `R x NR` block of C (masked to the lanes in `masks`, 16 columns a mask)
/// `(+)=` the `R x kc` block of A (row `i` from `rows[i]`) times the
/// `kc x NR` panel rows at `b.0`, `b.1` values apart; the `next` rows of A
/// and the `next_c` lines of C are prefetched during the first quarter.
/// Arguments as `gemm_micro::micro`'s.
///
/// # Safety
/// As `gemm_micro::micro`'s, with a CPU that has AVX2 and FMA instead of
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn kernel<const R: usize>(
    kc: usize,
    rows: &[*const f32; MR],
    next: Option<&[*const f32; MR]>,
    next_c: Option<*mut f32>,
    (b, ldb): (*const f32, usize),
    c: *mut f32,
    ldc: usize,
    masks: [u16; NV],
    load_c: bool,
) {
    use std::arch::x86_64::*;
    let rows: [*const f32; R] = std::array::from_fn(|i| rows[i]);
    for (q, &mask) in masks.iter().enumerate() {
        if mask == 0 {
            continue;
        }
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        // the columns of this quarter in the panel's rows
        let bq = b.wrapping_add(16 * q);
        for p in 0..kc {
            // the next block's A a line (16 values) of each row at a time,
            // during the first quarter
            if q == 0 && p % 16 == 0 {
                if let Some(next) = next {
                    for row in next {
                        // a prefetch never faults, whatever the address
                        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(p) as *const i8);
                    }
                }
                if let (Some(nc), true) = (next_c, p / 16 < NV) {
                    for i in 0..MR {
                        let line = nc.wrapping_add(i * ldc + p) as *const i8;
                        _mm_prefetch::<_MM_HINT_ET0>(line);
                    }
                }
            }
            _mm_prefetch::<_MM_HINT_T0>(bq.wrapping_add((p + PREFETCH_K) * ldb) as *const i8);
            // SAFETY: p < kc and 16 * q + 16 <= NR, so these reads lie in the
            // panel rows and A values the caller vouches for.
            unsafe {
                let b0 = _mm256_loadu_ps(bq.add(p * ldb));
                let b1 = _mm256_loadu_ps(bq.add(p * ldb + 8));
                for i in 0..R {
                    let av = _mm256_broadcast_ss(&*rows[i].add(p));
                    acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
                    acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
                }
            }
        }
        for (i, row) in acc.iter_mut().enumerate() {
            for (h, sum) in row.iter_mut().enumerate() {
                let lanes = (mask >> (8 * h)) as u8;
                // wrapping: a vector's address may lie past C when its lanes are all unset
                let cv = c.wrapping_add(i * ldc + 16 * q + 8 * h);
                // SAFETY: only the lanes set in `lanes` are touched, which the
                // caller vouches for (full vectors by plain loads and stores).
                unsafe {
                    match lanes {
                        0 => {}
                        u8::MAX => {
                            if load_c {
                                *sum = _mm256_add_ps(_mm256_loadu_ps(cv), *sum);
                            }
                            _mm256_storeu_ps(cv, *sum);
                        }
                        _ => {
                            let m = lane_mask(lanes);
                            if load_c {
                                *sum = _mm256_add_ps(_mm256_maskload_ps(cv, m), *sum);
                            }
                            _mm256_maskstore_ps(cv, m, *sum);
                        }
                    }
                }
            }
        }
    }
}

/// The lanes whose bits are set in `lanes` as an AVX2 load/store mask (each
/// lane all ones or all zeros).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lane_mask(lanes: u8) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let set = _mm256_and_si256(_mm256_set1_epi32(i32::from(lanes)), bit);
    _mm256_cmpeq_epi32(set, bit)
}

// `NR` is four 16-column quarters, each two AVX2 vectors, and `MR x 2`
// accumulators leave registers for two panel vectors and the broadcast.
const _: () = assert!(NR == 4 * 16 && NV == 4 && MR <= 6);

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::kernels::simd::lanes::mask;

    /// Each element the chain `fma(a[i][p], b[p][j], ·)` over p from zero,
    /// then added to C when `load_c`: bitwise what the kernel must give.
    fn chain(
        a: &[Vec<f32>],
        b: &[f32],
        ldb: usize,
        c0: f32,
        load_c: bool,
        i: usize,
        j: usize,
    ) -> f32 {
        let s = (0..a[i].len()).fold(0f32, |s, p| a[i][p].mul_add(b[p * ldb + j], s));
        match load_c {
            true => c0 + s,
            false => s,
        }
    }

    /// Every row count, depths with and without a whole line of A, widths
    /// ending inside a half-quarter, a quarter and the panel, with and
    /// without C added: bitwise the chains of fused multiply-adds, and the
    /// lanes past the width untouched.
    #[test]
    #[cfg_attr(not(host_packed_gemm), ignore = "needs a CPU with AVX2 + FMA")]
    fn matches_the_chains_of_fused_multiply_adds_bitwise() {
        assert!(available());
        let mut rng = crate::rng::Rng::new(5);
        let ldb = NR + 3;
        let ldc = NR + 5;
        for r in 1..=MR {
            for kc in [1, 7, 33] {
                for width in [NR, 5, 16, 27, 40] {
                    for load_c in [false, true] {
                        let a: Vec<Vec<f32>> = (0..MR)
                            .map(|_| (0..kc).map(|_| rng.normal()).collect())
                            .collect();
                        let b: Vec<f32> = (0..kc * ldb).map(|_| rng.normal()).collect();
                        let c0: Vec<f32> = (0..MR * ldc).map(|_| rng.normal()).collect();
                        let mut c = c0.clone();
                        let rows: [*const f32; MR] = std::array::from_fn(|i| a[i].as_ptr());
                        let masks: [u16; NV] =
                            std::array::from_fn(|v| mask(width.saturating_sub(16 * v)));
                        macro_rules! call {
                            ($($n:literal)*) => {
                                match r {
                                    // SAFETY: rows hold kc values, b holds kc rows of
                                    // ldb >= NR values, C holds MR rows of ldc >= NR;
                                    // the CPU has AVX2 and FMA (asserted above).
                                    $($n => unsafe {
                                        kernel::<$n>(kc, &rows, Some(&rows), None, (b.as_ptr(), ldb), c.as_mut_ptr(), ldc, masks, load_c)
                                    },)*
                                    _ => unreachable!(),
                                }
                            };
                        }
                        call!(1 2 3 4 5 6);
                        for i in 0..MR {
                            for j in 0..ldc {
                                let want = match i < r && j < width {
                                    true => chain(&a, &b, ldb, c0[i * ldc + j], load_c, i, j),
                                    false => c0[i * ldc + j],
                                };
                                assert_eq!(
                                    c[i * ldc + j].to_bits(),
                                    want.to_bits(),
                                    "rows {r}, kc {kc}, width {width}, load_c {load_c}: ({i}, {j})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
