//! The micro-kernel: an `R x NR` block of C from an `R x kc` block of A and
//! a `kc x NR` panel of B, in AVX-512 registers, and the dispatch on `R` and
//! on the CPU (AVX-512F here, else `gemm_micro_avx2`'s AVX2 + FMA kernel),
//! for [`crate::kernels::packed_gemm`].

use super::gemm_micro_avx2;

/// Columns per packed panel: four AVX-512 vectors.
pub const NR: usize = 64;
/// Vectors per panel row.
pub const NV: usize = NR / 16;
/// Rows of A per micro-kernel call: 6 x 4 accumulators + 4 panel vectors + the
/// broadcast fit the 32 vector registers, and each broadcast feeds 4 FMAs.
pub const MR: usize = 6;
/// Panel rows ahead of the one in use that the micro-kernel prefetches.
const PREFETCH_K: usize = 4;

/// Whether this CPU runs a micro-kernel: AVX-512F, or AVX2 with FMA.
pub fn available() -> bool {
    super::available() || gemm_micro_avx2::available()
}

/// Dispatches to the micro-kernel for `mr` rows (1..=MR): the AVX-512 one
/// where the CPU has AVX-512F, else the AVX2 one.
///
/// # Safety
/// As [`kernel`], on a CPU with AVX-512F or with AVX2 and FMA ([`available`]).
#[allow(clippy::too_many_arguments)]
pub unsafe fn micro(
    mr: usize,
    kc: usize,
    a: &[*const f32; MR],
    next: Option<&[*const f32; MR]>,
    next_c: Option<*mut f32>,
    b: (*const f32, usize),
    c: *mut f32,
    ldc: usize,
    masks: [u16; NV],
    load_c: bool,
) {
    macro_rules! go {
        ($($r:literal)*) => {
            match (super::available(), mr) {
                // SAFETY: forwarded from the caller; the CPU has AVX-512F.
                $((true, $r) => unsafe { kernel::<$r>(kc, a, next, next_c, b, c, ldc, masks, load_c) },)*
                // SAFETY: forwarded from the caller; without AVX-512F the
                // caller vouches for AVX2 and FMA.
                $(#[cfg(target_arch = "x86_64")] (false, $r) => unsafe { gemm_micro_avx2::kernel::<$r>(kc, a, next, next_c, b, c, ldc, masks, load_c) },)*
                _ => unreachable!("micro-kernel rows {mr}"),
            }
        };
    }
    go!(1 2 3 4 5 6)
}

/// `R x NR` block of C (masked to the lanes in `masks`) `(+)=` the `R x kc`
/// block of A (row `i` from `rows[i]`, its values adjacent) times the
/// `kc x NR` panel rows at `b.0`, `b.1` values apart.
/// With `next` (the rows of the next block), those rows' first `kc` values
/// are prefetched as it goes: a panel of A with nothing else to reuse it (one
/// panel of B, as a 1x1 convolution to 64 channels) would otherwise wait on
/// memory at every new block. With `next_c` (the same columns of C in the
/// next block's rows), those lines are fetched for writing as it goes, so
/// the stores at the end of that call find them in cache instead of each
/// waiting for its line to arrive (a 1x1 convolution from 64 channels has
/// only 64 products per output to hide that wait). Both are only
/// prefetched, never read.
///
/// # Safety
/// `rows[i] + p` for `i < R`, `p < kc` and `b.0 + p*b.1 + l` for `l < NR`
/// must be readable; `c + i*ldc + 16*v + l` must be writable (and readable when
/// `load_c`) for every lane `l` set in `masks[v]`;
/// the CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize>(
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
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    let rows: [*const f32; R] = std::array::from_fn(|i| rows[i]);
    for p in 0..kc {
        // the next block's A a line (16 values) of each row at a time
        if p % 16 == 0 {
            if let Some(next) = next {
                for row in next {
                    // a prefetch never faults, whatever the address
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(p) as *const i8);
                }
            }
            // the next block's C, one vector column of its rows per line of A
            if let (Some(nc), true) = (next_c, p / 16 < NV) {
                for i in 0..MR {
                    let line = nc.wrapping_add(i * ldc + p) as *const i8;
                    _mm_prefetch::<_MM_HINT_ET0>(line);
                }
            }
        }
        // SAFETY: p < kc, so these reads are inside what the caller vouches for.
        unsafe {
            let ahead = b.wrapping_add((p + PREFETCH_K) * ldb) as *const i8;
            for v in 0..NV {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * v));
            }
            let bv: [__m512; NV] =
                std::array::from_fn(|v| _mm512_loadu_ps(b.add(p * ldb + 16 * v)));
            for i in 0..R {
                let av = _mm512_set1_ps(*rows[i].add(p));
                for v in 0..NV {
                    acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
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
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize>(
    _kc: usize,
    _rows: &[*const f32; MR],
    _next: Option<&[*const f32; MR]>,
    _next_c: Option<*mut f32>,
    _b: (*const f32, usize),
    _c: *mut f32,
    _ldc: usize,
    _masks: [u16; NV],
    _load_c: bool,
) {
    unreachable!("gemm_packed needs AVX-512F; callers check `available`")
}
