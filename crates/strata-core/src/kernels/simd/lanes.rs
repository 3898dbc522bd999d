//! The lanes of a 16-lane vector: the mask of its first `n` (one definition
//! for the packed kernel, the transposes, the Winograd transforms and the
//! moment sums), and loads and stores of an AVX-512 vector's `f32` lanes,
//! masked only where the vector is partial (the last channels of a row, the edge of a
//! block). Zen 4 runs a masked load or store slower than a plain one even
//! with every lane set, which shows in the Winograd transforms: a load or a
//! store for every few additions.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The low `min(n, 16)` bits set: the first `n` lanes of a 16-lane vector
/// (the channels left in a row, the rows or columns left in a block).
pub fn mask(n: usize) -> u16 {
    if n >= 16 {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}

/// The lanes set in `k` read from `p`, the others zero.
///
/// # Safety
/// Every lane set in `k` must be readable at `p`, and the CPU must have
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub unsafe fn load(p: *const f32, k: __mmask16) -> __m512 {
    // SAFETY: the caller vouches for the lanes of `k` (all 16 when it is full)
    unsafe {
        match k {
            u16::MAX => _mm512_loadu_ps(p),
            _ => _mm512_maskz_loadu_ps(k, p),
        }
    }
}

/// The lanes set in `k` of `v` written to `p`, the others not touched.
///
/// # Safety
/// Every lane set in `k` must be writable at `p`, and the CPU must have
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub unsafe fn store(p: *mut f32, k: __mmask16, v: __m512) {
    // SAFETY: the caller vouches for the lanes of `k` (all 16 when it is full)
    unsafe {
        match k {
            u16::MAX => _mm512_storeu_ps(p, v),
            _ => _mm512_mask_storeu_ps(p, k, v),
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Full and partial masks read and write exactly their lanes.
    #[test]
    #[cfg_attr(not(host_avx512), ignore = "needs a CPU with AVX-512")]
    fn full_and_partial_masks_touch_only_their_lanes() {
        assert_eq!(
            (mask(0), mask(3), mask(16), mask(40)),
            (0, 0b111, u16::MAX, u16::MAX)
        );
        let src: Vec<f32> = (0..16).map(|i| i as f32 + 1.0).collect();
        for k in [u16::MAX, 0x00ff, 0x0001, 0] {
            let mut dst = [-1.0f32; 16];
            // SAFETY: both buffers hold 16 values; the CPU has AVX-512F (checked)
            unsafe { store(dst.as_mut_ptr(), k, load(src.as_ptr(), k)) };
            for (l, &d) in dst.iter().enumerate() {
                let want = if k >> l & 1 == 1 { src[l] } else { -1.0 };
                assert_eq!(d, want, "mask {k:#x}, lane {l}");
            }
        }
    }
}
