//! Winograd F(4x4, 3x3) in blocks: a stride-1 3x3 convolution in 36 GEMMs
//! of 4 times fewer multiplications than the direct convolution, 1.78 times
//! fewer than F(2x2, 3x3) (`winograd.rs`).
//!
//! Each 4x4 block of output pixels (a tile) depends on a 6x6 patch of input.
//! With `V = Bᵀ d B` of each patch and `U = G g Gᵀ` of each 3x3 filter, the
//! tile is `Aᵀ (U ⊙ V) A`; summed over input channels, each of the 36
//! positions ξ of the 6x6 transform is one GEMM
//! `M[ξ] = V[ξ] (tiles x C_in) · U[ξ] (C_in x C_out)`: 36 * C_in * C_out
//! multiplications per tile against 144 * C_in * C_out direct. The matrices
//! are those of Lavin & Gray (interpolation points 0, ±1, ±2, ∞); the
//! transforms are a few additions and multiply-adds by small constants.
//!
//! The work is laid out as in F(2x2, 3x3): blocks of whole bands of tiles
//! (four output rows), each on one thread, transforms and GEMMs in the
//! thread's L2. That pays up to 128 -> 128 channels; past them the 36
//! transformed weight matrices would stream for every block, and the batch
//! runs whole instead (`winograd_f4_whole.rs`, which shares this file's
//! transforms and tiling).
//! Tiles past the output's edge (an output side not a multiple of 4) are
//! computed whole and only their pixels inside the output are written.
//! Results differ from the direct convolution by rounding only (in the
//! tests, up to about 2e-5 of the outputs' root mean square), and depend on
//! neither the thread count nor the block size.

use std::cell::RefCell;
use std::ops::Range;

use super::winograd::padded_pixel;
use crate::kernels::gemm::MatRef;
use crate::kernels::packed_gemm::{gemm_packed_serial, PackedB};
pub(crate) use crate::kernels::simd::winograd_f4::Placement;
use crate::ops::conv2d::epilogue::{self, EpilogueRef};
use crate::ops::conv2d::geometry::ConvPlan;

/// Bytes of `V` and `M` (36 matrices each of tiles x C_in and tiles x C_out)
/// per block, which stay in L2 between the transforms and the GEMMs.
pub(crate) const BLOCK_BYTES: usize = 768 << 10;

thread_local! {
    /// Each thread's `V` and `M` for its block.
    static BLOCK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `U[ξ] = (G g Gᵀ)[ξ]` of every filter `g` of HWIO weights `w`, as 36 packed
/// `C_in x C_out` matrices. `G = [[¼, 0, 0], [-⅙, -⅙, -⅙], [-⅙, ⅙, -⅙],
/// [1/24, 1/12, ⅙], [1/24, -1/12, ⅙], [0, 0, 1]]`.
pub(crate) fn pack_weights(w: &[f32], p: &ConvPlan) -> Vec<PackedB> {
    super::winograd::pack_transformed::<36, 6>(w, p, g_row)
}

/// Row `r` of `G` applied to three rows, element by element.
pub(crate) fn g_row(r: usize, [v0, v1, v2]: [&[f32]; 3], out: &mut [f32]) {
    let rows = out.iter_mut().zip(v0).zip(v1).zip(v2);
    let (sixth, twelfth, twenty_fourth) = (1.0 / 6.0, 1.0 / 12.0, 1.0 / 24.0);
    match r {
        0 => rows.for_each(|(((o, &a), _), _)| *o = 0.25 * a),
        1 => rows.for_each(|(((o, &a), &b), &c)| *o = -sixth * (a + b + c)),
        2 => rows.for_each(|(((o, &a), &b), &c)| *o = -sixth * (a - b + c)),
        3 => rows.for_each(|(((o, &a), &b), &c)| *o = twenty_fourth * a + twelfth * b + sixth * c),
        4 => rows.for_each(|(((o, &a), &b), &c)| *o = twenty_fourth * a - twelfth * b + sixth * c),
        _ => out.copy_from_slice(v2),
    }
}

/// Where the tiles of a convolution lie: `th x tw` tiles to an image, bands
/// of `tw` tiles (four output rows, fewer in an image's last band) numbered
/// over the whole batch.
#[derive(Clone, Copy)]
pub(crate) struct Tiling {
    pub(crate) th: usize,
    pub(crate) tw: usize,
    pub(crate) out_h: usize,
    pub(crate) out_w: usize,
}

impl Tiling {
    pub(crate) fn of(p: &ConvPlan) -> Self {
        let (out_h, out_w) = (p.geo.out_h, p.geo.out_w);
        Tiling {
            th: out_h.div_ceil(4),
            tw: out_w.div_ceil(4),
            out_h,
            out_w,
        }
    }
    /// The output row (counted over the batch) where band `q` starts.
    pub(crate) fn band_row(&self, q: usize) -> usize {
        (q / self.th) * self.out_h + (q % self.th) * 4
    }
}

/// Each block's output rows with the first band of the block, in order:
/// `bands` bands in blocks of `per`.
pub(crate) fn blocks_of(
    tl: Tiling,
    bands: usize,
    per: usize,
    row_len: usize,
    out: &mut [f32],
) -> Vec<(usize, usize, &mut [f32])> {
    let mut blocks = Vec::with_capacity(bands.div_ceil(per));
    let mut rest = out;
    for q0 in (0..bands).step_by(per) {
        let q1 = (q0 + per).min(bands);
        let rows = tl.band_row(q1) - tl.band_row(q0);
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(rows * row_len);
        blocks.push((q0, q1, head));
        rest = tail;
    }
    blocks
}

/// The forward in blocks of bands of tiles, each on one thread through the
/// transforms and the 36 GEMMs in its L2, with `u` from [`pack_weights`];
/// the epilogue runs on each block's output rows.
pub fn forward(x: &[f32], u: &[PackedB], p: &ConvPlan, ep: &EpilogueRef, out: &mut [f32]) {
    use rayon::prelude::*;
    let (ci, co) = (p.c, p.cout);
    let tl = Tiling::of(p);
    let bands = p.n * tl.th;
    let band_bytes = 36 * tl.tw * (ci + co) * 4;
    let threads = crate::threads::num_threads();
    // bands per block: within L2, and at least two blocks per thread if possible
    let per = (BLOCK_BYTES / band_bytes)
        .max(1)
        .min(bands.div_ceil(2 * threads).max(1));
    let row_len = tl.out_w * co;
    let blocks = blocks_of(tl, bands, per, row_len, out);
    let work = |buf: &mut Vec<f32>, (q0, q1, out_b): (usize, usize, &mut [f32])| {
        let t = (q1 - q0) * tl.tw;
        buf.resize(36 * t * (ci + co), 0.0);
        let (v, m) = buf.split_at_mut(36 * t * ci);
        input_transform(x, p, q0, 0..t, v);
        for xi in 0..36 {
            let a = MatRef::new(&v[xi * t * ci..(xi + 1) * t * ci], t, ci);
            gemm_packed_serial(a, &u[xi], &mut m[xi * t * co..(xi + 1) * t * co], co, false);
        }
        let planes: Vec<&[f32]> = m.chunks(t * co).collect();
        output_planes(&planes, co, tl, q0, 0..t, out_b);
        epilogue::apply_serial(out_b, co, tl.band_row(q0) * row_len, ep);
    };
    crate::threads::install(|| {
        blocks
            .into_par_iter()
            .for_each(|b| BLOCK.with_borrow_mut(|buf| work(buf, b)))
    });
}

/// `V[ξ][j] = (Bᵀ d B)[ξ]` for the patches `d` of tiles `tiles` counted from
/// the first of band `q0`, `v` holding 36 matrices of `tiles.len() x ci`
/// (also dW's, in `winograd_dw.rs`). Pixels in the padding or past the
/// input's edge read as zeros.
pub(crate) fn input_transform(
    x: &[f32],
    p: &ConvPlan,
    q0: usize,
    tiles: Range<usize>,
    v: &mut [f32],
) {
    let mut planes: Vec<&mut [f32]> = v.chunks_mut(tiles.len() * p.c).collect();
    input_planes(x, p, q0, tiles, &mut planes);
}

/// [`input_transform`] into 36 planes given apart, tile `tiles.start + j`
/// at channel `j * C_in` of each.
pub(crate) fn input_planes(
    x: &[f32],
    p: &ConvPlan,
    q0: usize,
    tiles: Range<usize>,
    planes: &mut [&mut [f32]],
) {
    let tl = Tiling::of(p);
    let ci = p.c;
    let zeros = vec![0f32; ci];
    let pixel = |b: usize, yy: usize, xx: usize| padded_pixel(x, p, &zeros, (b, yy, xx));
    let simd = Simd::of_cpu();
    for (j, tile) in tiles.enumerate() {
        let q = q0 + tile / tl.tw;
        let (b, ty, tx) = (q / tl.th, q % tl.th, tile % tl.tw);
        let d: [&[f32]; 36] = std::array::from_fn(|rs| pixel(b, 4 * ty + rs / 6, 4 * tx + rs % 6));
        #[cfg(target_arch = "x86_64")]
        match simd {
            Simd::Avx512 => crate::kernels::simd::winograd_f4::input_tile(&d, planes, j * ci, ci),
            Simd::Avx2 => {
                crate::kernels::simd::winograd_f4::input_tile_avx2(&d, planes, j * ci, ci)
            }
            Simd::None => input_tile_loops(&d, planes, j * ci, ci),
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = simd;
            input_tile_loops(&d, planes, j * ci, ci);
        }
    }
}

/// `Y = Aᵀ M A` for tiles `tiles` (whole bands) of the 36 planes `planes`,
/// whose tile 0 is the first of band `q0`: the pixels inside the output
/// written to `out_b`, the output rows from the first tile's band on.
pub(crate) fn output_planes(
    planes: &[&[f32]],
    co: usize,
    tl: Tiling,
    q0: usize,
    tiles: Range<usize>,
    out_b: &mut [f32],
) {
    let simd = Simd::of_cpu();
    let first_row = tl.band_row(q0 + tiles.start / tl.tw);
    for j in tiles {
        let q = q0 + j / tl.tw;
        let (ty, tx) = (q % tl.th, j % tl.tw);
        let rows = (tl.out_h - 4 * ty).min(4);
        let cols = (tl.out_w - 4 * tx).min(4);
        let origin = (tl.band_row(q) - first_row) * tl.out_w + 4 * tx;
        let at = Placement {
            origin,
            row_stride: tl.out_w,
            rows,
            cols,
        };
        #[cfg(target_arch = "x86_64")]
        match simd {
            Simd::Avx512 => {
                crate::kernels::simd::winograd_f4::output_tile(planes, j * co, co, out_b, at)
            }
            Simd::Avx2 => {
                crate::kernels::simd::winograd_f4::output_tile_avx2(planes, j * co, co, out_b, at)
            }
            Simd::None => output_tile_loops(planes, j * co, co, out_b, at),
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = simd;
            output_tile_loops(planes, j * co, co, out_b, at);
        }
    }
}

/// Which form of the tile transforms this CPU runs.
#[derive(Clone, Copy)]
enum Simd {
    Avx512,
    Avx2,
    None,
}

impl Simd {
    fn of_cpu() -> Simd {
        if crate::kernels::simd::available() {
            Simd::Avx512
        } else if crate::kernels::simd::gemm_micro_avx2::available() {
            Simd::Avx2
        } else {
            Simd::None
        }
    }
}

/// `Bᵀ d` of one column of six values (multiply-adds as `mul_add`, in the
/// order of the AVX-512 tile, so the two agree bitwise).
/// `Bᵀ = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
/// [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]`.
pub(crate) fn bt(d: [f32; 6]) -> [f32; 6] {
    let t0 = (-4f32).mul_add(d[2], d[4]);
    let t1 = (-4f32).mul_add(d[1], d[3]);
    let t2 = d[4] - d[2];
    let t3 = 2.0 * (d[3] - d[1]);
    [
        4f32.mul_add(d[0], (-5f32).mul_add(d[2], d[4])),
        t0 + t1,
        t0 - t1,
        t2 + t3,
        t2 - t3,
        4f32.mul_add(d[1], (-5f32).mul_add(d[3], d[5])),
    ]
}

/// `Aᵀ m` of one column of six values.
/// `Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
/// [0, 1, -1, 8, -8, 1]]`.
pub(crate) fn at(m: [f32; 6]) -> [f32; 4] {
    let (a, b) = (m[1] + m[2], m[1] - m[2]);
    let (c, e) = (m[3] + m[4], m[3] - m[4]);
    [
        (m[0] + a) + c,
        2f32.mul_add(e, b),
        4f32.mul_add(c, a),
        8f32.mul_add(e, b) + m[5],
    ]
}

/// The input transform of one tile, channel by channel (where AVX-512 is
/// missing, and the reference of the AVX-512 tile).
pub(crate) fn input_tile_loops(d: &[&[f32]; 36], planes: &mut [&mut [f32]], at: usize, ci: usize) {
    for l in 0..ci {
        // e[r][s] = (Bᵀ d)[r][s]
        let mut e = [[0f32; 6]; 6];
        for s in 0..6 {
            let col = bt(std::array::from_fn(|r| d[6 * r + s][l]));
            for (r, v) in col.into_iter().enumerate() {
                e[r][s] = v;
            }
        }
        for (r, e) in e.into_iter().enumerate() {
            for (c, v) in bt(e).into_iter().enumerate() {
                planes[6 * r + c][at + l] = v;
            }
        }
    }
}

/// The output transform of one tile, channel by channel.
pub(crate) fn output_tile_loops(
    planes: &[&[f32]],
    at_ch: usize,
    co: usize,
    out: &mut [f32],
    pl: Placement,
) {
    pl.check(co, out.len());
    for l in 0..co {
        // u[a][s] = (Aᵀ M)[a][s]
        let mut u = [[0f32; 6]; 4];
        for s in 0..6 {
            let col = at(std::array::from_fn(|r| planes[6 * r + s][at_ch + l]));
            for (a, v) in col.into_iter().enumerate() {
                u[a][s] = v;
            }
        }
        for (a, u) in u.into_iter().enumerate().take(pl.rows) {
            for (b, y) in at(u).into_iter().enumerate().take(pl.cols) {
                out[(pl.origin + a * pl.row_stride + b) * co + l] = y;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The transform matrices written out, applied by plain matrix products
    /// in f64: `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` is the 3x3 correlation of the 6x6
    /// patch, for each of the 4x4 outputs.
    #[test]
    fn transforms_compute_the_correlation() {
        let mut rng = Rng::new(8);
        let d: Vec<f32> = (0..36).map(|_| rng.normal()).collect();
        let g: Vec<f32> = (0..9).map(|_| rng.normal()).collect();
        // U = G g Gᵀ through the packing's row function
        let col = |k: usize| [g[k], g[3 + k], g[6 + k]];
        let mut gg = [[0f32; 3]; 6]; // (G g)[r][kj]
        for kj in 0..3 {
            let c = col(kj);
            for (r, row) in gg.iter_mut().enumerate() {
                let mut o = [0f32];
                g_row(r, [&c[0..1], &c[1..2], &c[2..3]], &mut o);
                row[kj] = o[0];
            }
        }
        let mut u = [0f32; 36];
        for r in 0..6 {
            for s in 0..6 {
                let mut o = [0f32];
                g_row(s, [&gg[r][0..1], &gg[r][1..2], &gg[r][2..3]], &mut o);
                u[6 * r + s] = o[0];
            }
        }
        // V through the loops' input tile, one channel
        let px: Vec<[f32; 1]> = d.iter().map(|&v| [v]).collect();
        let dp: [&[f32]; 36] = std::array::from_fn(|i| px[i].as_slice());
        let mut v = [0f32; 36];
        let mut planes: Vec<&mut [f32]> = v.chunks_mut(1).collect();
        input_tile_loops(&dp, &mut planes, 0, 1);
        let m: Vec<f32> = (0..36).map(|i| u[i] * v[i]).collect();
        let mp: Vec<&[f32]> = m.chunks(1).collect();
        let mut y = vec![0f32; 16];
        let pl = Placement {
            origin: 0,
            row_stride: 4,
            rows: 4,
            cols: 4,
        };
        output_tile_loops(&mp, 0, 1, &mut y, pl);
        for a in 0..4 {
            for b in 0..4 {
                let want: f64 = (0..9)
                    .map(|k| d[(a + k / 3) * 6 + b + k % 3] as f64 * g[k] as f64)
                    .sum();
                let got = y[a * 4 + b] as f64;
                assert!(
                    (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "y[{a}][{b}] {got} vs {want}"
                );
            }
        }
    }

    type InputTile = fn(&[&[f32]; 36], &mut [&mut [f32]], usize, usize);
    type OutputTile = fn(&[&[f32]], usize, usize, &mut [f32], Placement);

    /// The AVX-512 tiles against the loops: bitwise equal, a partial
    /// 16-channel step and a partial tile (3 rows, 2 columns) included.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[cfg_attr(not(host_avx512), ignore = "needs a CPU with AVX-512")]
    fn simd_tiles_are_bitwise_the_loops() {
        use crate::kernels::simd::winograd_f4::{input_tile, output_tile};
        tiles_are_bitwise_the_loops(input_tile, output_tile);
    }

    /// The AVX2 tiles likewise (a partial 8-channel step included).
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[cfg_attr(not(host_packed_gemm), ignore = "needs a CPU with AVX2 + FMA")]
    fn avx2_tiles_are_bitwise_the_loops() {
        use crate::kernels::simd::winograd_f4::{input_tile_avx2, output_tile_avx2};
        tiles_are_bitwise_the_loops(input_tile_avx2, output_tile_avx2);
    }

    fn tiles_are_bitwise_the_loops(input_tile: InputTile, output_tile: OutputTile) {
        let mut rng = Rng::new(4);
        let c = 37;
        let mut rand = |n: usize| (0..n).map(|_| rng.normal()).collect::<Vec<f32>>();
        let px: Vec<Vec<f32>> = (0..36).map(|_| rand(c)).collect();
        let d: [&[f32]; 36] = std::array::from_fn(|rs| px[rs].as_slice());
        let (mut v1, mut v2) = (vec![0f32; 36 * 2 * c], vec![0f32; 36 * 2 * c]);
        let mut p1: Vec<&mut [f32]> = v1.chunks_mut(2 * c).collect();
        let mut p2: Vec<&mut [f32]> = v2.chunks_mut(2 * c).collect();
        input_tile(&d, &mut p1, c, c);
        input_tile_loops(&d, &mut p2, c, c);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&v1), bits(&v2));
        assert!(v1.chunks(2 * c).all(|p| p[..c].iter().all(|&x| x == 0.0)));
        let m: Vec<Vec<f32>> = (0..36).map(|_| rand(c)).collect();
        let mp: Vec<&[f32]> = m.iter().map(|p| p.as_slice()).collect();
        for (rows, cols) in [(4, 4), (3, 2)] {
            let pl = Placement {
                origin: 1,
                row_stride: 6,
                rows,
                cols,
            };
            let (mut o1, mut o2) = (vec![0f32; 24 * c], vec![0f32; 24 * c]);
            output_tile(&mp, 0, c, &mut o1, pl);
            output_tile_loops(&mp, 0, c, &mut o2, pl);
            assert_eq!(bits(&o1), bits(&o2), "{rows}x{cols}");
            let written = o1.chunks(c).filter(|p| p.iter().any(|&x| x != 0.0)).count();
            assert_eq!(written, rows * cols, "{rows}x{cols}");
        }
    }

    /// Packed a share of the output channels at a time, the forward gives
    /// the bits of the forward with all 36 matrices packed at once: shares
    /// of one and two panels, the last one partial, odd and even sides.
    #[test]
    #[cfg_attr(
        not(host_packed_gemm),
        ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
    )]
    fn packing_as_it_goes_changes_no_bit() {
        let mut rng = Rng::new(9);
        for (n, hw, c, cout) in [(8, 7, 160, 144), (2, 16, 144, 200)] {
            let p = crate::ops::conv2d::plan(
                &[n, hw, hw, c],
                &[3, 3, c, cout],
                None,
                &crate::ops::Conv2dConfig::default().with_padding(crate::ops::Padding::Same),
            )
            .unwrap();
            use crate::ops::conv2d::dispatch::{self, Forward, Gemm, WeightUse};
            let alg = dispatch::forward(&p, Gemm::Packed, WeightUse::Once);
            assert_eq!(alg, Forward::Winograd4Packing, "{n}x{hw}x{hw}x{c}->{cout}");
            let x: Vec<f32> = (0..n * hw * hw * c).map(|_| rng.normal()).collect();
            let w: Vec<f32> = (0..9 * c * cout).map(|_| rng.normal()).collect();
            let rows = n * hw * hw;
            let mut want = vec![0f32; rows * cout];
            let none = crate::ops::conv2d::epilogue::EpilogueRef::NONE;
            let whole = crate::ops::conv2d::algorithms::winograd_f4_whole::forward;
            whole(&x, &pack_weights(&w, &p), &p, &none, &mut want);
            let mut got = vec![f32::NAN; rows * cout];
            crate::ops::conv2d::algorithms::winograd_f4_whole::forward_packing(
                &x, &w, &p, &none, &mut got,
            );
            assert_eq!(got, want, "{n}x{hw}x{hw}x{c}->{cout}");
        }
    }
}
