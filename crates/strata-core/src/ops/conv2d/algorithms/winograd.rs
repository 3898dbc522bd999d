//! Winograd F(2x2, 3x3): a stride-1 3x3 convolution in 16 GEMMs of 2.25
//! times fewer multiplications.
//!
//! Each 2x2 block of output pixels (a tile) depends on a 4x4 patch of input.
//! With the transforms `V = Bᵀ d B` of each patch and `U = G g Gᵀ` of each
//! 3x3 filter, the tile is `Aᵀ (U ⊙ V) A`; summed over input channels, the
//! elementwise product becomes, for each of the 16 positions ξ of the 4x4
//! transform, one GEMM `M[ξ] = V[ξ] (tiles x C_in) · U[ξ] (C_in x C_out)`:
//! 16 * C_in * C_out multiplications per tile against 36 * C_in * C_out
//! for the 4 pixels computed directly. The transforms are additions only.
//!
//! Tiles are processed in blocks of whole bands of tiles (two output rows),
//! each on one thread: input transform into `V`, the 16 GEMMs into `M`,
//! output transform and epilogue, all in the thread's L2. It needs an even
//! output size (whole tiles); `dispatch.rs` says where it runs (where
//! F(4x4)'s blocks do not). Results differ from the direct convolution by rounding only
//! (the transforms reorder the sums), and depend on neither the thread count
//! nor the block size: each output is computed by the same operations.

use std::cell::RefCell;
use std::ops::Range;

use crate::kernels::gemm::MatRef;
use crate::kernels::packed_gemm::{gemm_packed_serial, PackedB, NR};
use crate::ops::conv2d::epilogue::{self, EpilogueRef};
use crate::ops::conv2d::geometry::ConvPlan;

/// Bytes of `V` and `M` (16 matrices each of tiles x C_in and tiles x C_out)
/// per block, which stay in L2 between the transforms and the GEMMs.
const BLOCK_BYTES: usize = 768 << 10;

thread_local! {
    /// Each thread's `V` and `M` for its block.
    static BLOCK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `U[ξ] = (G g Gᵀ)[ξ]` of every filter `g` of HWIO weights `w`, as 16 packed
/// `C_in x C_out` matrices. `G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]`.
/// The weights change at every training step, so this runs at every forward
/// and every dX.
pub fn pack_weights(w: &[f32], p: &ConvPlan) -> Vec<PackedB> {
    pack_transformed::<16, 4>(w, p, g_row)
}

/// `U = G g Gᵀ` for a transform whose `G` has `SIDE` rows (`N = SIDE²`
/// positions ξ), row `r` of `G` applied to three rows by `g_row`: one pass
/// over the weights writes all `N` packed `C_in x C_out` matrices straight
/// into their panels, 64 output channels at a time, the panels in parallel.
/// F(2x2, 3x3)'s and F(4x4, 3x3)'s weights alike. `g_row` is a type
/// parameter, not a function pointer, so each transform's rows inline.
pub fn pack_transformed<const N: usize, const SIDE: usize>(
    w: &[f32],
    p: &ConvPlan,
    g_row: impl Fn(usize, [&[f32]; 3], &mut [f32]) + Sync,
) -> Vec<PackedB> {
    assert!(SIDE * SIDE == N && SIDE <= 6, "winograd: {N} positions");
    let (ci, co) = (p.c, p.cout);
    let u: [PackedB; N] = PackedB::build_n_par(ci, co, |i, o0, dst| {
        let n = dst[0].len();
        let g = |ki: usize, kj: usize| &w[((ki * 3 + kj) * ci + i) * co + o0..][..n];
        // (G g)[r][kj] for the rows of G and the three kernel columns
        let mut t = [[0f32; NR]; 18];
        for (rk, t) in t.iter_mut().enumerate().take(3 * SIDE) {
            let (r, kj) = (rk / 3, rk % 3);
            g_row(r, [g(0, kj), g(1, kj), g(2, kj)], &mut t[..n]);
        }
        // then each row times Gᵀ[.][s]
        for (xi, dst) in dst.into_iter().enumerate() {
            let (r, s) = (xi / SIDE, xi % SIDE);
            g_row(
                s,
                [&t[3 * r][..n], &t[3 * r + 1][..n], &t[3 * r + 2][..n]],
                dst,
            );
        }
    });
    u.into()
}

/// Pixel `(b, yy, xx)` of the input `x` as padded by the plan (rows and
/// columns counted from the padding's first), or `zeros` in the padding and
/// past the input's edge: no padded copy of the input is made.
pub fn padded_pixel<'a>(
    x: &'a [f32],
    p: &ConvPlan,
    zeros: &'a [f32],
    (b, yy, xx): (usize, usize, usize),
) -> &'a [f32] {
    let g = &p.geo;
    match (yy.checked_sub(g.pad_top), xx.checked_sub(g.pad_left)) {
        (Some(iy), Some(ix)) if iy < g.in_h && ix < g.in_w => {
            let at = ((b * g.in_h + iy) * g.in_w + ix) * p.c;
            &x[at..at + p.c]
        }
        _ => zeros,
    }
}

/// Row `r` of `G` applied to three rows: `out = Σ_k G[r][k] * v[k]`, element by
/// element (with `G`'s halves written as `0.5 * (..)`).
fn g_row(r: usize, [v0, v1, v2]: [&[f32]; 3], out: &mut [f32]) {
    let rows = out.iter_mut().zip(v0).zip(v1).zip(v2);
    match r {
        0 => out.copy_from_slice(v0),
        1 => rows.for_each(|(((o, &a), &b), &c)| *o = 0.5 * (a + b + c)),
        2 => rows.for_each(|(((o, &a), &b), &c)| *o = 0.5 * (a - b + c)),
        _ => out.copy_from_slice(v2),
    }
}

/// The forward (stride 1, 3x3, an even output), with `u` from
/// [`pack_weights`]; the epilogue runs on each block's output rows.
pub fn forward(x: &[f32], u: &[PackedB], p: &ConvPlan, ep: &EpilogueRef, out: &mut [f32]) {
    use rayon::prelude::*;
    let g = &p.geo;
    let (ci, co, ow) = (p.c, p.cout, g.out_w);
    let (th, tw) = (g.out_h / 2, g.out_w / 2);
    let bands = p.n * th;
    let band_bytes = 16 * tw * (ci + co) * 4;
    let threads = crate::threads::num_threads();
    // bands per block: within L2, and at least two blocks per thread if possible
    let per = (BLOCK_BYTES / band_bytes)
        .max(1)
        .min(bands.div_ceil(2 * threads).max(1));
    let band_out = 2 * ow * co;
    let work = |buf: &mut Vec<f32>, (bi, out_b): (usize, &mut [f32])| {
        let q0 = bi * per;
        let nb = out_b.len() / band_out;
        let t = nb * tw;
        buf.resize(16 * t * (ci + co), 0.0);
        let (v, m) = buf.split_at_mut(16 * t * ci);
        input_transform(x, p, th, tw, q0, 0..t, v);
        for xi in 0..16 {
            let a = MatRef::new(&v[xi * t * ci..(xi + 1) * t * ci], t, ci);
            gemm_packed_serial(a, &u[xi], &mut m[xi * t * co..(xi + 1) * t * co], co, false);
        }
        output_transform(m, co, ow, tw, nb, out_b);
        epilogue::apply_serial(out_b, co, q0 * band_out, ep);
    };
    crate::threads::install(|| {
        out.par_chunks_mut(per * band_out)
            .enumerate()
            .for_each(|b| BLOCK.with_borrow_mut(|buf| work(buf, b)))
    });
}

/// `V[ξ][j] = (Bᵀ d B)[ξ]` for the patches `d` of tiles `tiles` counted from
/// the first of band `q0` (`tw` to a band), `v` holding 16 matrices of
/// `tiles.len()` x `ci`. A patch's pixels in
/// the padding read as zeros (no padded copy of the input is made).
/// `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
/// Every step is a loop over a pixel's channels, which vectorises.
pub fn input_transform(
    x: &[f32],
    p: &ConvPlan,
    th: usize,
    tw: usize,
    q0: usize,
    tiles: Range<usize>,
    v: &mut [f32],
) {
    let ci = p.c;
    let t = tiles.len();
    let mut planes: Vec<&mut [f32]> = v.chunks_mut(t * ci).collect();
    let zeros = vec![0f32; ci];
    let pixel = |b: usize, yy: usize, xx: usize| padded_pixel(x, p, &zeros, (b, yy, xx));
    let simd = crate::kernels::simd::available();
    // Bᵀ d, stored column-major: e[s * 4 + r] = (Bᵀ d)[r][s] (the loops' buffer)
    let mut e = if simd {
        Vec::new()
    } else {
        vec![0f32; 16 * ci]
    };
    for (j, tile) in tiles.enumerate() {
        let q = q0 + tile / tw;
        let (b, ty, tx) = (q / th, q % th, tile % tw);
        let d: [&[f32]; 16] = std::array::from_fn(|rs| pixel(b, 2 * ty + rs / 4, 2 * tx + rs % 4));
        #[cfg(target_arch = "x86_64")]
        if simd {
            crate::kernels::simd::winograd::input_tile(&d, &mut planes, j * ci, ci);
            continue;
        }
        for (s, col) in e.chunks_exact_mut(4 * ci).enumerate() {
            let (e0, rest) = col.split_at_mut(ci);
            let (e1, rest) = rest.split_at_mut(ci);
            let (e2, e3) = rest.split_at_mut(ci);
            let (d0, d1, d2, d3) = (d[s], d[4 + s], d[8 + s], d[12 + s]);
            for l in 0..ci {
                e0[l] = d0[l] - d2[l];
                e1[l] = d1[l] + d2[l];
                e2[l] = d2[l] - d1[l];
                e3[l] = d1[l] - d3[l];
            }
        }
        for r in 0..4 {
            let row = |s: usize| &e[(s * 4 + r) * ci..(s * 4 + r + 1) * ci];
            let (a0, a1, a2, a3) = (row(0), row(1), row(2), row(3));
            let [p0, p1, p2, p3] = &mut planes[4 * r..4 * r + 4] else {
                unreachable!("16 planes")
            };
            let span = j * ci..(j + 1) * ci;
            let (o0, o1) = (&mut p0[span.clone()], &mut p1[span.clone()]);
            let (o2, o3) = (&mut p2[span.clone()], &mut p3[span]);
            for l in 0..ci {
                o0[l] = a0[l] - a2[l];
                o1[l] = a1[l] + a2[l];
                o2[l] = a2[l] - a1[l];
                o3[l] = a1[l] - a3[l];
            }
        }
    }
}

/// `Y = Aᵀ M A` for every tile of the block, written to its 2x2 output pixels
/// in `out_b` (the block's `2 * nb` output rows).
/// `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]`.
fn output_transform(m: &[f32], co: usize, ow: usize, tw: usize, nb: usize, out_b: &mut [f32]) {
    let t = nb * tw;
    let planes: Vec<&[f32]> = m.chunks(t * co).collect();
    let simd = crate::kernels::simd::available();
    // Aᵀ M, stored column-major: u[s * 2 + a] = (Aᵀ M)[a][s]
    let mut u = vec![0f32; 8 * co];
    for j in 0..t {
        let (band, tx) = (j / tw, j % tw);
        #[cfg(target_arch = "x86_64")]
        if simd {
            let px = [2 * band * ow + 2 * tx, (2 * band + 1) * ow + 2 * tx];
            crate::kernels::simd::winograd::output_tile(&planes, j * co, co, out_b, px);
            continue;
        }
        let mm = |xi: usize| &planes[xi][j * co..(j + 1) * co];
        for (s, col) in u.chunks_exact_mut(2 * co).enumerate() {
            let (u0, u1) = col.split_at_mut(co);
            let (m0, m1, m2, m3) = (mm(s), mm(4 + s), mm(8 + s), mm(12 + s));
            for l in 0..co {
                u0[l] = m0[l] + m1[l] + m2[l];
                u1[l] = m1[l] - m2[l] - m3[l];
            }
        }
        for a in 0..2 {
            let row = |s: usize| &u[(s * 2 + a) * co..(s * 2 + a + 1) * co];
            let (a0, a1, a2, a3) = (row(0), row(1), row(2), row(3));
            // the tile's two pixels in output row 2 * band + a are adjacent
            let px = (2 * band + a) * ow + 2 * tx;
            let (y0, y1) = out_b[px * co..(px + 2) * co].split_at_mut(co);
            for l in 0..co {
                y0[l] = a0[l] + a1[l] + a2[l];
                y1[l] = a1[l] - a2[l] - a3[l];
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use crate::kernels::simd::winograd as simd;
    use crate::rng::Rng;

    /// The AVX-512 tiles against the transforms written out per channel, in
    /// the loops' order of additions: bitwise equal, a partial 16-channel
    /// step included.
    #[test]
    #[cfg_attr(not(host_avx512), ignore = "needs a CPU with AVX-512")]
    fn simd_tiles_are_bitwise_the_loops() {
        let mut rng = Rng::new(3);
        let c = 70;
        let mut rand = |n: usize| (0..n).map(|_| rng.normal()).collect::<Vec<f32>>();
        // input: patch pixels d[rs] -> 16 planes of 2 tiles, the second tile's
        let px: Vec<Vec<f32>> = (0..16).map(|_| rand(c)).collect();
        let d: [&[f32]; 16] = std::array::from_fn(|rs| px[rs].as_slice());
        let mut v = vec![0f32; 16 * 2 * c];
        let mut planes: Vec<&mut [f32]> = v.chunks_mut(2 * c).collect();
        simd::input_tile(&d, &mut planes, c, c);
        for l in 0..c {
            let x = |r: usize, s: usize| d[4 * r + s][l];
            let e = |r: usize, s: usize| match r {
                0 => x(0, s) - x(2, s),
                1 => x(1, s) + x(2, s),
                2 => x(2, s) - x(1, s),
                _ => x(1, s) - x(3, s),
            };
            for r in 0..4 {
                let want = [
                    e(r, 0) - e(r, 2),
                    e(r, 1) + e(r, 2),
                    e(r, 2) - e(r, 1),
                    e(r, 1) - e(r, 3),
                ];
                for (k, w) in want.into_iter().enumerate() {
                    assert_eq!(
                        planes[4 * r + k][c + l].to_bits(),
                        w.to_bits(),
                        "V[{r}{k}] {l}"
                    );
                    assert_eq!(planes[4 * r + k][l], 0.0, "first tile untouched");
                }
            }
        }
        // output: 16 planes of one tile -> pixels 1, 2 (row 0) and 5, 6 (row 1)
        let m: Vec<Vec<f32>> = (0..16).map(|_| rand(c)).collect();
        let mp: Vec<&[f32]> = m.iter().map(|p| p.as_slice()).collect();
        let mut out = vec![0f32; 8 * c];
        simd::output_tile(&mp, 0, c, &mut out, [1, 5]);
        for l in 0..c {
            let mm = |r: usize, s: usize| m[4 * r + s][l];
            let u = |a: usize, s: usize| match a {
                0 => mm(0, s) + mm(1, s) + mm(2, s),
                _ => mm(1, s) - mm(2, s) - mm(3, s),
            };
            for (a, p) in [1, 5].into_iter().enumerate() {
                let y0 = u(a, 0) + u(a, 1) + u(a, 2);
                let y1 = u(a, 1) - u(a, 2) - u(a, 3);
                assert_eq!(out[p * c + l].to_bits(), y0.to_bits(), "row {a} {l}");
                assert_eq!(out[(p + 1) * c + l].to_bits(), y1.to_bits(), "row {a} {l}");
            }
        }
        for p in [0, 3, 4, 7] {
            assert!(
                out[p * c..(p + 1) * c].iter().all(|&y| y == 0.0),
                "pixel {p}"
            );
        }
    }
}
