//! Winograd F(2x2, 3x3)'s transforms of one tile with AVX-512, for
//! `ops::conv2d::algorithms::winograd`: 16 channels at a time, the whole
//! 4x4 patch in registers from its loads to its stores. The same additions
//! in the same order as the portable loops there, so bitwise their results.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::lanes::{self, mask};

/// `V[ξ] = (Bᵀ d B)[ξ]` of the patch `d` (16 pixels of `ci` channels),
/// written to channels `at..at + ci` of the 16 planes.
/// Panics if a pixel has fewer than `ci` channels or a plane ends first.
pub fn input_tile(d: &[&[f32]; 16], planes: &mut [&mut [f32]], at: usize, ci: usize) {
    assert!(d.iter().all(|px| px.len() >= ci), "winograd: short pixel");
    assert!(planes.len() == 16 && planes.iter().all(|p| p.len() >= at + ci));
    assert!(super::available(), "winograd: no AVX-512F");
    // SAFETY: the CPU has AVX-512F (detected at run time, asserted above);
    // the asserts put every lane the masks select, channels `l..ci` of each
    // pixel and `at + l..at + ci` of each plane, inside the slices.
    unsafe { input_tile_avx512(d, planes, at, ci) }
}

/// [`input_tile`] in registers.
///
/// # Safety
/// Every pixel must hold `ci` channels and every one of the 16 planes
/// `at + ci` values; the CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn input_tile_avx512(d: &[&[f32]; 16], planes: &mut [&mut [f32]], at: usize, ci: usize) {
    for l in (0..ci).step_by(16) {
        let k = mask(ci - l);
        let x: [__m512; 16] = std::array::from_fn(|rs| {
            // SAFETY: `k` selects channels l..ci, inside pixel `rs` (caller)
            unsafe { lanes::load(d[rs].as_ptr().add(l), k) }
        });
        // e[4 * r + s] = (Bᵀ d)[r][s]
        let mut e = [_mm512_setzero_ps(); 16];
        for s in 0..4 {
            e[s] = _mm512_sub_ps(x[s], x[8 + s]);
            e[4 + s] = _mm512_add_ps(x[4 + s], x[8 + s]);
            e[8 + s] = _mm512_sub_ps(x[8 + s], x[4 + s]);
            e[12 + s] = _mm512_sub_ps(x[4 + s], x[12 + s]);
        }
        for r in 0..4 {
            let [a0, a1, a2, a3] = [e[4 * r], e[4 * r + 1], e[4 * r + 2], e[4 * r + 3]];
            let v = [
                _mm512_sub_ps(a0, a2),
                _mm512_add_ps(a1, a2),
                _mm512_sub_ps(a2, a1),
                _mm512_sub_ps(a1, a3),
            ];
            for (c, v) in v.into_iter().enumerate() {
                // SAFETY: `k` selects values at + l..at + ci, inside the
                // plane (caller)
                unsafe { lanes::store(planes[4 * r + c].as_mut_ptr().add(at + l), k, v) };
            }
        }
    }
}

/// `Y = Aᵀ M A` of one tile (`M` at channels `at..at + co` of the 16
/// planes), written to its pixel pairs `px[0]` (and the next pixel) of
/// the first output row and `px[1]` of the second.
/// Panics if a plane or the output ends first.
pub fn output_tile(planes: &[&[f32]], at: usize, co: usize, out: &mut [f32], px: [usize; 2]) {
    assert!(planes.len() == 16 && planes.iter().all(|p| p.len() >= at + co));
    assert!(
        px.iter().all(|&p| (p + 2) * co <= out.len()),
        "winograd: output ends"
    );
    assert!(super::available(), "winograd: no AVX-512F");
    // SAFETY: AVX-512F is detected (asserted above), and the asserts put
    // every lane the masks select, channels `at + l..at + co` of each plane
    // and `l..co` of pixels `px[i]` and `px[i] + 1`, inside the slices.
    unsafe { output_tile_avx512(planes, at, co, out, px) }
}

/// [`output_tile`] in registers.
///
/// # Safety
/// Every one of the 16 planes must hold `at + co` values and `out` pixels
/// `px[i]` and `px[i] + 1` of `co` channels; the CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn output_tile_avx512(
    planes: &[&[f32]],
    at: usize,
    co: usize,
    out: &mut [f32],
    px: [usize; 2],
) {
    for l in (0..co).step_by(16) {
        let k = mask(co - l);
        let m: [__m512; 16] = std::array::from_fn(|xi| {
            // SAFETY: `k` selects values at + l..at + co, inside plane `xi`
            // (caller)
            unsafe { lanes::load(planes[xi].as_ptr().add(at + l), k) }
        });
        // u[2 * s + a] = (Aᵀ M)[a][s]
        let mut u = [_mm512_setzero_ps(); 8];
        for s in 0..4 {
            let (m0, m1, m2, m3) = (m[s], m[4 + s], m[8 + s], m[12 + s]);
            u[2 * s] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
            u[2 * s + 1] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
        }
        for (a, &p) in px.iter().enumerate() {
            let [a0, a1, a2, a3] = [u[a], u[2 + a], u[4 + a], u[6 + a]];
            let y0 = _mm512_add_ps(_mm512_add_ps(a0, a1), a2);
            let y1 = _mm512_sub_ps(_mm512_sub_ps(a1, a2), a3);
            // SAFETY: `k` selects channels l..co of pixels p and p + 1,
            // inside `out` (caller)
            unsafe {
                lanes::store(out.as_mut_ptr().add(p * co + l), k, y0);
                lanes::store(out.as_mut_ptr().add((p + 1) * co + l), k, y1);
            }
        }
    }
}
