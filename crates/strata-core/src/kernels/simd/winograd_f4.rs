//! Winograd F(4x4, 3x3)'s transforms of one tile with AVX-512, for
//! `ops::conv2d::algorithms::winograd_f4`: 16 channels at a time, the same
//! operations in the same order as the portable loops there, so bitwise
//! their results; and the same with AVX2 + FMA, 8 channels at a time
//! (`input_tile_avx2`, `output_tile_avx2`), for CPUs without AVX-512.
//! [`Placement`] (where a tile's outputs go) is shared with those loops.

/// Where a tile's outputs go: the pixel of its top-left output, the pixels
/// from one output row to the next, and how many rows and columns of its
/// 4x4 lie inside the output.
#[derive(Clone, Copy)]
pub struct Placement {
    pub origin: usize,
    pub row_stride: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Placement {
    /// Panics unless every pixel written lies inside `len` floats of `co`
    /// channels each.
    pub fn check(&self, co: usize, len: usize) {
        assert!(self.rows <= 4 && self.cols <= 4, "winograd: tile is 4x4");
        if self.rows > 0 && self.cols > 0 {
            let last = self.origin + (self.rows - 1) * self.row_stride + self.cols;
            assert!(last * co <= len, "winograd: output ends");
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub use avx2::{input_tile as input_tile_avx2, output_tile as output_tile_avx2};
#[cfg(target_arch = "x86_64")]
pub use avx512::{input_tile, output_tile};

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Placement;
    use crate::kernels::simd::lanes::{self, mask};

    /// `V[ξ] = (Bᵀ d B)[ξ]` of the patch `d` (36 pixels of `ci` channels),
    /// written to channels `at..at + ci` of the 36 planes.
    /// Panics if a pixel has fewer than `ci` channels or a plane ends first.
    pub fn input_tile(d: &[&[f32]; 36], planes: &mut [&mut [f32]], at: usize, ci: usize) {
        assert!(d.iter().all(|px| px.len() >= ci), "winograd: short pixel");
        assert!(planes.len() == 36 && planes.iter().all(|p| p.len() >= at + ci));
        assert!(crate::kernels::simd::available());
        // SAFETY: the CPU has AVX-512F (detected at run time, asserted
        // above); the asserts put every lane the masks select, channels
        // `l..ci` of each pixel and `at + l..at + ci` of each plane, inside
        // the slices.
        unsafe { input_tile_avx512(d, planes, at, ci) }
    }

    #[target_feature(enable = "avx512f")]
    fn bt(d: [__m512; 6]) -> [__m512; 6] {
        let (four, m4, m5) = (
            _mm512_set1_ps(4.0),
            _mm512_set1_ps(-4.0),
            _mm512_set1_ps(-5.0),
        );
        let t0 = _mm512_fmadd_ps(m4, d[2], d[4]);
        let t1 = _mm512_fmadd_ps(m4, d[1], d[3]);
        let t2 = _mm512_sub_ps(d[4], d[2]);
        let t3 = _mm512_mul_ps(_mm512_set1_ps(2.0), _mm512_sub_ps(d[3], d[1]));
        [
            _mm512_fmadd_ps(four, d[0], _mm512_fmadd_ps(m5, d[2], d[4])),
            _mm512_add_ps(t0, t1),
            _mm512_sub_ps(t0, t1),
            _mm512_add_ps(t2, t3),
            _mm512_sub_ps(t2, t3),
            _mm512_fmadd_ps(four, d[1], _mm512_fmadd_ps(m5, d[3], d[5])),
        ]
    }

    #[target_feature(enable = "avx512f")]
    fn at(m: [__m512; 6]) -> [__m512; 4] {
        let (a, b) = (_mm512_add_ps(m[1], m[2]), _mm512_sub_ps(m[1], m[2]));
        let (c, e) = (_mm512_add_ps(m[3], m[4]), _mm512_sub_ps(m[3], m[4]));
        [
            _mm512_add_ps(_mm512_add_ps(m[0], a), c),
            _mm512_fmadd_ps(_mm512_set1_ps(2.0), e, b),
            _mm512_fmadd_ps(_mm512_set1_ps(4.0), c, a),
            _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0), e, b), m[5]),
        ]
    }

    /// [`input_tile`] in registers.
    ///
    /// # Safety
    /// Every pixel must hold `ci` channels and every one of the 36 planes
    /// `at + ci` values; the CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn input_tile_avx512(d: &[&[f32]; 36], planes: &mut [&mut [f32]], at: usize, ci: usize) {
        for l in (0..ci).step_by(16) {
            let k = mask(ci - l);
            // e[r][s] = (Bᵀ d)[r][s], a column of the patch at a time
            let mut e = [[_mm512_setzero_ps(); 6]; 6];
            for s in 0..6 {
                // SAFETY: masked to channels l..ci, inside each pixel (caller)
                let col: [__m512; 6] = std::array::from_fn(|r| unsafe {
                    lanes::load(d[6 * r + s].as_ptr().add(l), k)
                });
                for (r, v) in bt(col).into_iter().enumerate() {
                    e[r][s] = v;
                }
            }
            for (r, e) in e.into_iter().enumerate() {
                for (c, v) in bt(e).into_iter().enumerate() {
                    // SAFETY: masked to channels l..ci, inside each plane
                    unsafe { lanes::store(planes[6 * r + c].as_mut_ptr().add(at + l), k, v) };
                }
            }
        }
    }

    /// `Y = Aᵀ M A` of one tile (`M` at channels `at..at + co` of the 36
    /// planes), its pixels inside the output written where `pl` says.
    /// Panics if a plane or the output ends first.
    pub fn output_tile(planes: &[&[f32]], at: usize, co: usize, out: &mut [f32], pl: Placement) {
        assert!(planes.len() == 36 && planes.iter().all(|p| p.len() >= at + co));
        pl.check(co, out.len());
        assert!(crate::kernels::simd::available());
        // SAFETY: AVX-512F is detected (asserted above); the asserts put
        // values `at..at + co` of each plane and every pixel `pl` places
        // inside the slices, and the masks select no lane past them.
        unsafe { output_tile_avx512(planes, at, co, out, pl) }
    }

    /// [`output_tile`] in registers.
    ///
    /// # Safety
    /// Every one of the 36 planes must hold `at_ch + co` values and `out`
    /// every pixel `pl` places (`Placement::check`); the CPU must have
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn output_tile_avx512(
        planes: &[&[f32]],
        at_ch: usize,
        co: usize,
        out: &mut [f32],
        pl: Placement,
    ) {
        for l in (0..co).step_by(16) {
            let k = mask(co - l);
            // u[a][s] = (Aᵀ M)[a][s]
            let mut u = [[_mm512_setzero_ps(); 6]; 4];
            for s in 0..6 {
                // SAFETY: masked to channels l..co, inside each plane
                let col: [__m512; 6] = std::array::from_fn(|r| unsafe {
                    lanes::load(planes[6 * r + s].as_ptr().add(at_ch + l), k)
                });
                for (a, v) in at(col).into_iter().enumerate() {
                    u[a][s] = v;
                }
            }
            for (a, u) in u.into_iter().enumerate().take(pl.rows) {
                for (b, y) in at(u).into_iter().enumerate().take(pl.cols) {
                    let px = pl.origin + a * pl.row_stride + b;
                    // SAFETY: masked to channels l..co of a pixel inside
                    // the output (`Placement::check`)
                    unsafe { lanes::store(out.as_mut_ptr().add(px * co + l), k, y) };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::Placement;
    use crate::kernels::simd::gemm_micro_avx2;

    /// The first `min(n, 8)` lanes as an AVX2 load/store mask.
    #[target_feature(enable = "avx2")]
    fn lanes(n: usize) -> __m256i {
        let n = n.min(8) as i32;
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    /// 8 values at `p`, only the lanes of `k` (all when `full`) read.
    ///
    /// # Safety
    /// The lanes selected must be readable; the CPU must have AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load(p: *const f32, full: bool, k: __m256i) -> __m256 {
        // SAFETY: the caller vouches for the lanes read
        unsafe {
            match full {
                true => _mm256_loadu_ps(p),
                false => _mm256_maskload_ps(p, k),
            }
        }
    }

    /// `v` written to `p`, only the lanes of `k` (all when `full`).
    ///
    /// # Safety
    /// The lanes selected must be writable; the CPU must have AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn store(p: *mut f32, full: bool, k: __m256i, v: __m256) {
        // SAFETY: the caller vouches for the lanes written
        unsafe {
            match full {
                true => _mm256_storeu_ps(p, v),
                false => _mm256_maskstore_ps(p, k, v),
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn bt(d: [__m256; 6]) -> [__m256; 6] {
        let (four, m4, m5) = (
            _mm256_set1_ps(4.0),
            _mm256_set1_ps(-4.0),
            _mm256_set1_ps(-5.0),
        );
        let t0 = _mm256_fmadd_ps(m4, d[2], d[4]);
        let t1 = _mm256_fmadd_ps(m4, d[1], d[3]);
        let t2 = _mm256_sub_ps(d[4], d[2]);
        let t3 = _mm256_mul_ps(_mm256_set1_ps(2.0), _mm256_sub_ps(d[3], d[1]));
        [
            _mm256_fmadd_ps(four, d[0], _mm256_fmadd_ps(m5, d[2], d[4])),
            _mm256_add_ps(t0, t1),
            _mm256_sub_ps(t0, t1),
            _mm256_add_ps(t2, t3),
            _mm256_sub_ps(t2, t3),
            _mm256_fmadd_ps(four, d[1], _mm256_fmadd_ps(m5, d[3], d[5])),
        ]
    }

    #[target_feature(enable = "avx2,fma")]
    fn at(m: [__m256; 6]) -> [__m256; 4] {
        let (a, b) = (_mm256_add_ps(m[1], m[2]), _mm256_sub_ps(m[1], m[2]));
        let (c, e) = (_mm256_add_ps(m[3], m[4]), _mm256_sub_ps(m[3], m[4]));
        [
            _mm256_add_ps(_mm256_add_ps(m[0], a), c),
            _mm256_fmadd_ps(_mm256_set1_ps(2.0), e, b),
            _mm256_fmadd_ps(_mm256_set1_ps(4.0), c, a),
            _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0), e, b), m[5]),
        ]
    }

    /// The AVX-512 `input_tile` with AVX2 + FMA, 8 channels at a time.
    /// Panics if a pixel has fewer than `ci` channels or a plane ends first.
    pub fn input_tile(d: &[&[f32]; 36], planes: &mut [&mut [f32]], at: usize, ci: usize) {
        assert!(d.iter().all(|px| px.len() >= ci), "winograd: short pixel");
        assert!(planes.len() == 36 && planes.iter().all(|p| p.len() >= at + ci));
        assert!(gemm_micro_avx2::available());
        // SAFETY: the CPU has AVX2 and FMA (detected at run time, asserted
        // above); the asserts put every lane selected, channels `l..ci` of
        // each pixel and `at + l..at + ci` of each plane, inside the slices.
        unsafe { input_tile_avx2(d, planes, at, ci) }
    }

    /// [`input_tile`] in registers.
    ///
    /// # Safety
    /// As the AVX-512 one's, with a CPU that has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn input_tile_avx2(d: &[&[f32]; 36], planes: &mut [&mut [f32]], at: usize, ci: usize) {
        for l in (0..ci).step_by(8) {
            let (full, k) = (ci - l >= 8, lanes(ci - l));
            let mut e = [[_mm256_setzero_ps(); 6]; 6];
            for s in 0..6 {
                // SAFETY: channels l..min(l + 8, ci), inside each pixel (caller)
                let col: [__m256; 6] =
                    std::array::from_fn(|r| unsafe { load(d[6 * r + s].as_ptr().add(l), full, k) });
                for (r, v) in bt(col).into_iter().enumerate() {
                    e[r][s] = v;
                }
            }
            for (r, e) in e.into_iter().enumerate() {
                for (c, v) in bt(e).into_iter().enumerate() {
                    // SAFETY: values at + l.. of the channels selected, inside each plane
                    unsafe { store(planes[6 * r + c].as_mut_ptr().add(at + l), full, k, v) };
                }
            }
        }
    }

    /// The AVX-512 `output_tile` with AVX2 + FMA, 8 channels at a time.
    /// Panics if a plane or the output ends first.
    pub fn output_tile(planes: &[&[f32]], at: usize, co: usize, out: &mut [f32], pl: Placement) {
        assert!(planes.len() == 36 && planes.iter().all(|p| p.len() >= at + co));
        pl.check(co, out.len());
        assert!(gemm_micro_avx2::available());
        // SAFETY: AVX2 and FMA are detected (asserted above); the asserts
        // put values `at..at + co` of each plane and every pixel `pl` places
        // inside the slices, and no lane past them is selected.
        unsafe { output_tile_avx2(planes, at, co, out, pl) }
    }

    /// [`output_tile`] in registers.
    ///
    /// # Safety
    /// As the AVX-512 one's, with a CPU that has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn output_tile_avx2(
        planes: &[&[f32]],
        at_ch: usize,
        co: usize,
        out: &mut [f32],
        pl: Placement,
    ) {
        for l in (0..co).step_by(8) {
            let (full, k) = (co - l >= 8, lanes(co - l));
            let mut u = [[_mm256_setzero_ps(); 6]; 4];
            for s in 0..6 {
                // SAFETY: channels l..min(l + 8, co), inside each plane (caller)
                let col: [__m256; 6] = std::array::from_fn(|r| unsafe {
                    load(planes[6 * r + s].as_ptr().add(at_ch + l), full, k)
                });
                for (a, v) in at(col).into_iter().enumerate() {
                    u[a][s] = v;
                }
            }
            for (a, u) in u.into_iter().enumerate().take(pl.rows) {
                for (b, y) in at(u).into_iter().enumerate().take(pl.cols) {
                    let px = pl.origin + a * pl.row_stride + b;
                    // SAFETY: the channels selected of a pixel inside the
                    // output (`Placement::check`)
                    unsafe { store(out.as_mut_ptr().add(px * co + l), full, k, y) };
                }
            }
        }
    }
}
