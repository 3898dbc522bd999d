//! The per-channel shifted sums of BatchNorm's moments in AVX-512 registers.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::lanes::{load, mask, store};

/// `b1 = sum(x - k)`, `b2 = sum((x - k)^2)` per channel over the rows of
/// `block` (each as long as `k`), as BatchNorm's moments take them
/// (`ops::batch_norm::moments`): 64 channels (four vectors) at a time, the
/// two sums of each in registers down all the rows (the portable loop loads
/// and stores them at every row). Each sum still adds the rows in order,
/// `d * d` rounded before it is added as there, so the results are
/// bitwise the portable ones.
///
/// # Safety
/// `b1` and `b2` must hold at least `k.len()` values, and the CPU must have
/// AVX-512F. (Rows past the last whole one in `block` are not read.)
#[target_feature(enable = "avx512f")]
pub unsafe fn block_sums(block: &[f32], k: &[f32], b1: &mut [f32], b2: &mut [f32]) {
    let c = k.len();
    let rows = block.len() / c.max(1);
    // four vectors (64 channels, a cache line of each row) at a time:
    // four independent chains of additions per sum
    for j0 in (0..c).step_by(64) {
        let masks: [u16; 4] = std::array::from_fn(|v| mask(c.saturating_sub(j0 + 16 * v)));
        // SAFETY: the lanes set in `masks` are channels below c, so inside
        // `k`, `b1`, `b2` (at least c long, the caller) and every one of the
        // `rows` whole rows of `block`; masked loads and stores touch no
        // other lane (an empty mask none). AVX-512F: the caller.
        unsafe {
            let at = |p: *const f32, v: usize| p.wrapping_add(j0 + 16 * v);
            let kv: [__m512; 4] = std::array::from_fn(|v| load(at(k.as_ptr(), v), masks[v]));
            let mut s1 = [_mm512_setzero_ps(); 4];
            let mut s2 = [_mm512_setzero_ps(); 4];
            for r in 0..rows {
                let row = block.as_ptr().add(r * c);
                for v in 0..4 {
                    let x = load(at(row, v), masks[v]);
                    let d = _mm512_sub_ps(x, kv[v]);
                    s1[v] = _mm512_add_ps(s1[v], d);
                    s2[v] = _mm512_add_ps(s2[v], _mm512_mul_ps(d, d));
                }
            }
            for v in 0..4 {
                store(b1.as_mut_ptr().wrapping_add(j0 + 16 * v), masks[v], s1[v]);
                store(b2.as_mut_ptr().wrapping_add(j0 + 16 * v), masks[v], s2[v]);
            }
        }
    }
}
