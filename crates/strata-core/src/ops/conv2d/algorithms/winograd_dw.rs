//! The kernel gradient of a Winograd convolution ([`winograd`], F(2x2, 3x3),
//! or [`winograd_f4`], F(4x4, 3x3)), in GEMMs of 2.25 (F(2x2)) or 4
//! (F(4x4)) times fewer multiplications than `colsᵀ·dY`.
//!
//! The forward computes each output tile as `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`.
//! Differentiating that with respect to the filter `g` gives, summed over the
//! tiles, `dW = Gᵀ M G` with, for each position ξ of the transform,
//! `M[ξ] = Σ_tiles V[ξ]ᵀ D[ξ]`: `V = Bᵀ d B` is the forward's own input
//! transform and `D = A dY Aᵀ` the transform of the tile's gradient (zeros
//! past the output's edge, for F(4x4)'s clipped tiles). Each `M[ξ]` is one
//! `C_in x C_out` GEMM whose depth runs over the tiles: 16 (F(2x2)) or 36
//! (F(4x4)) * C_in * C_out multiplications per tile against 36 or 144 *
//! C_in * C_out for its pixels in `colsᵀ·dY`.
//!
//! The tiles are split into one contiguous part per thread; each part goes
//! through blocks of about [`BLOCK_TILES`] tiles (whole bands of tiles):
//! `V` of the block, turned to `C_in x tiles` so the kernel reads it
//! with a unit step, `D[ξ]` written straight into packed panels, and the
//! products added into the part's private `M`. The parts' `M` are added in
//! part order, so the result depends only on the thread count; it differs
//! from `colsᵀ·dY` by rounding only. A convolution with few tiles and wide
//! channels (ResNet's 7x7 stage) splits its input channels among the threads
//! instead ([`dw_by_positions`]).

use std::ops::Range;

use rayon::prelude::*;

use super::{winograd, winograd_f4};
use crate::kernels::buffers;
use crate::kernels::gemm::MatRef;
use crate::kernels::packed_gemm::{gemm_packed_serial, PackedB, NR};
use crate::kernels::parallel;
use crate::kernels::transpose::transpose;
use crate::ops::conv2d::geometry::ConvPlan;

/// Tiles per block (rounded up to whole bands): the depth of the block's
/// GEMMs. Shallow blocks keep `V` and `D` in L2; deeper ones add into `M`
/// less often but lose more.
const BLOCK_TILES: usize = 64;

/// Tiles whose `V` is transformed at once, then turned a plane at a time:
/// one 16-row block of the transposes.
const STAGE_TILES: usize = 16;

/// A thread's buffers for its blocks, kept from call to call (outside the
/// buffer pool: about 9 MiB per thread after a 256 -> 256 layer).
#[derive(Default)]
struct Scratch {
    /// `V` of a few tiles as transformed (tiles x C_in per ξ).
    stage: Vec<f32>,
    /// `V` of the block turned (C_in x tiles per ξ).
    vt: Vec<f32>,
    /// The block's packed `D`, one buffer per ξ (16 or 36 of them).
    d: Vec<Vec<f32>>,
}

/// What differs between the two Winograd transforms, for `N` positions ξ
/// (16 or 36) on a `P x P` patch (`P = M + 2`) of an `M x M` output tile.
trait Transform<const N: usize> {
    /// Output pixels on a tile's side.
    const M: usize;
    /// The patch's side.
    const P: usize = Self::M + 2;
    /// `V` of tiles `tiles` counted from the first of band `q0`, as the
    /// forward transforms them (16 or 36 matrices of `tiles.len() x C_in`).
    fn input_transform(x: &[f32], p: &ConvPlan, q0: usize, tiles: Range<usize>, v: &mut [f32]);
    /// Row `r` of `A` (`P x M`) applied to `M` rows: `out = Σ_c A[r][c] v[c]`.
    fn a_row(r: usize, v: &[&[f32]], out: &mut [f32]);
    /// Row `k` of `Gᵀ` (`3 x P`) applied to `P` rows: `out = Σ_r G[r][k] v[r]`.
    fn gt_row(k: usize, v: &[&[f32]], out: &mut [f32]);
}

/// F(2x2, 3x3).
struct F2;

/// F(4x4, 3x3).
struct F4;

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// `dW` (HWIO, `3 x 3 x C_in x C_out`) of a convolution that runs as
/// Winograd, from its input `x` and output gradient `dy`, by F(4x4)'s transforms.
pub fn dw_f4(x: &[f32], dy: &[f32], p: &ConvPlan) -> Vec<f32> {
    dw_by::<F4, 36>(x, dy, p)
}

/// [`dw_f4`] by F(2x2)'s transforms.
pub fn dw_f2(x: &[f32], dy: &[f32], p: &ConvPlan) -> Vec<f32> {
    dw_by::<F2, 16>(x, dy, p)
}

/// `dW` of a convolution that runs F(4x4, 3x3) over the whole batch, by
/// F(4x4)'s transforms: `V` and `D` of every tile at once (few: 32 at 7x7,
/// batch 8), then for each block of [`ROWS`] input channels its rows of the
/// 36 `M[ξ] = V[ξ]ᵀ D[ξ]` and at once its rows of `dW = Gᵀ M G`, the blocks
/// split among the threads. The tiles are not split: with so few, each
/// thread's partial `M` (36 MiB at 512 -> 512 channels) would cost more to
/// write and add up than its products; nor is the whole `M` written out
/// before its transform. Each product sums over the tiles in order, so the
/// result does not depend on the thread count.
pub fn dw_by_positions(x: &[f32], dy: &[f32], p: &ConvPlan) -> Vec<f32> {
    const N: usize = 36;
    let (ci, co) = (p.c, p.cout);
    let (th, tw) = tiles_of::<F4, N>(p);
    let t = p.n * th * tw;
    let lt = t.next_multiple_of(16);
    let v = super::winograd_f4_whole::whole_input_transform(x, p);
    // D of every tile, in the calling thread's buffers kept from call to call
    let mut spare = SCRATCH.with_borrow_mut(|s| std::mem::take(&mut s.d));
    let mut bufs = spare
        .drain(..N.min(spare.len()))
        .collect::<Vec<_>>()
        .into_iter();
    let bufs: [Vec<f32>; N] = std::array::from_fn(|_| bufs.next().unwrap_or_default());
    let d = grad_transform::<F4, N>(bufs, dy, p, 0, t);
    // Vᵀ of every position (C_in x tiles), rows a whole number of lines
    let mut vt = buffers::dirty(N * ci * lt);
    let turn = |(xi, vt): (usize, &mut [f32])| {
        transpose(&v[xi * t * ci..(xi + 1) * t * ci], t, ci, ci, vt, lt)
    };
    crate::threads::install(|| vt.par_chunks_mut(ci * lt).enumerate().for_each(turn));
    buffers::recycle(v);
    // each block of input channels: its rows of the 36 M[ξ], then its rows of
    // dW from them while they are in L2
    let mut dw = buffers::dirty(9 * ci * co);
    let work = |(k, mut taps): (usize, Vec<&mut [f32]>)| {
        let rows = k * ROWS..((k + 1) * ROWS).min(ci);
        let r = rows.len();
        let mut m = buffers::dirty(N * r * co);
        for (xi, mx) in m.chunks_mut(r * co).enumerate() {
            let a = &vt[(xi * ci + rows.start) * lt..(xi * ci + rows.end) * lt];
            gemm_packed_serial(MatRef::strided(a, r, t, lt), &d[xi], mx, co, false);
        }
        output_rows::<F4, N>(&m, r, 0..r, co, &mut taps);
        buffers::recycle(m);
    };
    let runs = tap_runs(&mut dw, ci, co, ROWS);
    crate::threads::install(|| runs.into_par_iter().enumerate().for_each(work));
    buffers::recycle(vt);
    SCRATCH.with_borrow_mut(|s| {
        s.d = d.map(PackedB::into_data).into();
        s.d.append(&mut spare);
    });
    dw
}

/// Input channels per block of [`dw_by_positions`]: the block's rows of the
/// 36 `M[ξ]` (864 KiB at 512 output channels) stay in L2.
const ROWS: usize = 12;

/// Tiles on the output's height and width, the last ones clipped.
fn tiles_of<W: Transform<N>, const N: usize>(p: &ConvPlan) -> (usize, usize) {
    (p.geo.out_h.div_ceil(W::M), p.geo.out_w.div_ceil(W::M))
}

/// [`dw`] by the transform `W`.
fn dw_by<W: Transform<N>, const N: usize>(x: &[f32], dy: &[f32], p: &ConvPlan) -> Vec<f32> {
    let (ci, co) = (p.c, p.cout);
    let (th, tw) = tiles_of::<W, N>(p);
    let bands = p.n * th;
    let parts = crate::threads::num_threads().clamp(1, bands.max(1));
    let per = BLOCK_TILES.div_ceil(tw.max(1)).max(1);
    let m_len = N * ci * co;
    let part = |Range { start: q0, end: q1 }: Range<usize>| -> Vec<f32> {
        // the first block's GEMMs overwrite every element
        let mut m = buffers::dirty(m_len);
        SCRATCH.with_borrow_mut(|scratch| {
            for b0 in (q0..q1).step_by(per) {
                let bands = b0..(b0 + per).min(q1);
                add_block::<W, N>(scratch, x, dy, p, bands, &mut m, b0 > q0);
            }
        });
        m
    };
    let m = parallel::sum_over_parts(bands, parts, m_len, part);
    let dw = output_transform::<W, N>(&m, ci, co);
    buffers::recycle(m);
    dw
}

/// `m[ξ] (+)= V[ξ]ᵀ D[ξ]` over the tiles of `bands` (whole bands of tiles),
/// overwriting `m` unless `accumulate`.
fn add_block<W: Transform<N>, const N: usize>(
    s: &mut Scratch,
    x: &[f32],
    dy: &[f32],
    p: &ConvPlan,
    bands: Range<usize>,
    m: &mut [f32],
    accumulate: bool,
) {
    let (ci, co) = (p.c, p.cout);
    let (_, tw) = tiles_of::<W, N>(p);
    let (b0, t) = (bands.start, bands.len() * tw);
    // vt's rows are whole cache lines (`lt` floats, from a 64-byte boundary),
    // so each turned run of 16 tiles writes whole lines
    let lt = t.next_multiple_of(16);
    s.vt.resize(N * ci * lt + 16, 0.0);
    let at = s.vt.as_ptr().align_offset(64).min(16);
    let vt = &mut s.vt[at..at + N * ci * lt];
    // V a few tiles at a time, each plane then turned into vt's columns
    // while the few tiles are still in L1
    s.stage.resize(N * STAGE_TILES * ci, 0.0);
    for j0 in (0..t).step_by(STAGE_TILES) {
        let n = STAGE_TILES.min(t - j0);
        let stage = &mut s.stage[..N * n * ci];
        W::input_transform(x, p, b0, j0..j0 + n, stage);
        for (xi, plane) in stage.chunks_exact(n * ci).enumerate() {
            transpose(plane, n, ci, ci, &mut vt[xi * ci * lt + j0..], lt);
        }
    }
    // the block's buffers of D, kept from block to block (and from call to
    // call: an F(2x2) layer leaves F(4x4)'s last 20 in place)
    let mut spare = std::mem::take(&mut s.d);
    let mut bufs = spare
        .drain(..N.min(spare.len()))
        .collect::<Vec<_>>()
        .into_iter();
    let bufs: [Vec<f32>; N] = std::array::from_fn(|_| bufs.next().unwrap_or_default());
    let d = grad_transform::<W, N>(bufs, dy, p, b0, t);
    for (xi, d) in d.iter().enumerate() {
        let a = MatRef::strided(&vt[xi * ci * lt..(xi + 1) * ci * lt], ci, t, lt);
        let mx = &mut m[xi * ci * co..(xi + 1) * ci * co];
        gemm_packed_serial(a, d, mx, co, accumulate);
    }
    s.d = d.map(PackedB::into_data).into();
    s.d.append(&mut spare);
}

impl Transform<16> for F2 {
    const M: usize = 2;
    fn input_transform(x: &[f32], p: &ConvPlan, q0: usize, tiles: Range<usize>, v: &mut [f32]) {
        let (th, tw) = (p.geo.out_h / 2, p.geo.out_w / 2);
        winograd::input_transform(x, p, th, tw, q0, tiles, v)
    }
    /// `A = [[1, 0], [1, 1], [1, -1], [0, -1]]`.
    fn a_row(r: usize, v: &[&[f32]], out: &mut [f32]) {
        let rows = out.iter_mut().zip(v[0]).zip(v[1]);
        match r {
            0 => out.copy_from_slice(v[0]),
            1 => rows.for_each(|((o, &a), &b)| *o = a + b),
            2 => rows.for_each(|((o, &a), &b)| *o = a - b),
            _ => rows.for_each(|((o, _), &b)| *o = -b),
        }
    }
    /// `Gᵀ = [[1, ½, ½, 0], [0, ½, -½, 0], [0, ½, ½, 1]]`.
    fn gt_row(k: usize, v: &[&[f32]], out: &mut [f32]) {
        let rows = out.iter_mut().zip(v[0]).zip(v[1]).zip(v[2]).zip(v[3]);
        match k {
            0 => rows.for_each(|((((o, &a), &b), &c), _)| *o = a + 0.5 * (b + c)),
            1 => rows.for_each(|((((o, _), &b), &c), _)| *o = 0.5 * (b - c)),
            _ => rows.for_each(|((((o, _), &b), &c), &d)| *o = 0.5 * (b + c) + d),
        }
    }
}

impl Transform<36> for F4 {
    const M: usize = 4;
    fn input_transform(x: &[f32], p: &ConvPlan, q0: usize, tiles: Range<usize>, v: &mut [f32]) {
        winograd_f4::input_transform(x, p, q0, tiles, v)
    }
    /// `A = [[1, 0, 0, 0], [1, 1, 1, 1], [1, -1, 1, -1], [1, 2, 4, 8],
    /// [1, -2, 4, -8], [0, 0, 0, 1]]`.
    fn a_row(r: usize, v: &[&[f32]], out: &mut [f32]) {
        let rows = out.iter_mut().zip(v[0]).zip(v[1]).zip(v[2]).zip(v[3]);
        match r {
            0 => out.copy_from_slice(v[0]),
            1 => rows.for_each(|((((o, &a), &b), &c), &d)| *o = (a + c) + (b + d)),
            2 => rows.for_each(|((((o, &a), &b), &c), &d)| *o = (a + c) - (b + d)),
            3 => {
                rows.for_each(|((((o, &a), &b), &c), &d)| *o = (a + 4.0 * c) + 2.0 * (b + 4.0 * d))
            }
            4 => {
                rows.for_each(|((((o, &a), &b), &c), &d)| *o = (a + 4.0 * c) - 2.0 * (b + 4.0 * d))
            }
            _ => out.copy_from_slice(v[3]),
        }
    }
    /// `Gᵀ = [[¼, -⅙, -⅙, 1/24, 1/24, 0], [0, -⅙, ⅙, 1/12, -1/12, 0],
    /// [0, -⅙, -⅙, ⅙, ⅙, 1]]`.
    fn gt_row(k: usize, v: &[&[f32]], out: &mut [f32]) {
        let (sixth, twelfth, twenty_fourth) = (1.0 / 6.0, 1.0 / 12.0, 1.0 / 24.0);
        let rows = out
            .iter_mut()
            .zip(v[0])
            .zip(v[1])
            .zip(v[2])
            .zip(v[3])
            .zip(v[4])
            .zip(v[5]);
        match k {
            0 => rows.for_each(|((((((o, &a), &b), &c), &d), &e), _)| {
                *o = 0.25 * a - sixth * (b + c) + twenty_fourth * (d + e)
            }),
            1 => rows.for_each(|((((((o, _), &b), &c), &d), &e), _)| {
                *o = sixth * (c - b) + twelfth * (d - e)
            }),
            _ => rows.for_each(|((((((o, _), &b), &c), &d), &e), &f)| {
                *o = sixth * ((d + e) - (b + c)) + f
            }),
        }
    }
}

/// `D[ξ] = (A g Aᵀ)[ξ]` for the gradients `g` of the `t` tiles of the
/// block starting at band `b0` (zeros past the output's edge), packed
/// (tiles x C_out) for the GEMMs: the matrices a row at a time, 64 output
/// channels at a time. `bufs` are their buffers, kept from block to block.
fn grad_transform<W: Transform<N>, const N: usize>(
    bufs: [Vec<f32>; N],
    dy: &[f32],
    p: &ConvPlan,
    b0: usize,
    t: usize,
) -> [PackedB; N] {
    let g = &p.geo;
    let (th, tw) = tiles_of::<W, N>(p);
    let (co, ow, (m, pp)) = (p.cout, g.out_w, (W::M, W::P));
    let zeros = [0f32; NR];
    // (A g)[r][c] for the tile's columns c, then (A g Aᵀ)[r][s]
    let mut h = vec![[0f32; NR]; pp * m];
    PackedB::build_n_in(bufs, t, co, |j, o0, dst: [&mut [f32]; N]| {
        let n = dst[0].len();
        let q = b0 + j / tw;
        let (b, ty, tx) = (q / th, q % th, j % tw);
        // gradient pixel (row a, column c) of the tile, channels o0..o0 + n
        let px = |a: usize, c: usize| {
            let (oy, ox) = (m * ty + a, m * tx + c);
            if oy >= g.out_h || ox >= ow {
                return &zeros[..n];
            }
            let at = ((b * g.out_h + oy) * ow + ox) * co + o0;
            &dy[at..at + n]
        };
        for (rc, h) in h.iter_mut().enumerate() {
            let (r, c) = (rc / m, rc % m);
            let col: [&[f32]; 4] = std::array::from_fn(|a| px(a.min(m - 1), c));
            W::a_row(r, &col[..m], &mut h[..n]);
        }
        for (xi, dst) in dst.into_iter().enumerate() {
            let (r, s) = (xi / pp, xi % pp);
            let row: [&[f32]; 4] = std::array::from_fn(|c| &h[m * r + c.min(m - 1)][..n]);
            W::a_row(s, &row[..m], dst);
        }
    })
}

/// `dW[ki][kj] = (Gᵀ M G)[ki][kj]` for every pair of channels, from the `N`
/// `C_in x C_out` matrices `m`: input channels in parallel, each a loop over
/// the output channels.
fn output_transform<W: Transform<N>, const N: usize>(m: &[f32], ci: usize, co: usize) -> Vec<f32> {
    let mut dw = buffers::dirty(9 * ci * co);
    if ci * co == 0 {
        return dw;
    }
    let run = crate::threads::chunk_len(ci, 16);
    let runs = tap_runs(&mut dw, ci, co, run);
    let work = |(k, mut taps): (usize, Vec<&mut [f32]>)| {
        output_rows::<W, N>(m, ci, k * run..((k + 1) * run).min(ci), co, &mut taps)
    };
    crate::threads::install(|| runs.into_par_iter().enumerate().for_each(work));
    dw
}

/// The nine taps' planes of `dw` (`3 x 3 x ci x co`), each cut into the
/// same runs of `run` input channels: run `k`'s nine pieces.
fn tap_runs(dw: &mut [f32], ci: usize, co: usize, run: usize) -> Vec<Vec<&mut [f32]>> {
    let mut runs: Vec<Vec<&mut [f32]>> = (0..ci.div_ceil(run)).map(|_| Vec::new()).collect();
    for tap in dw.chunks_mut(ci * co) {
        for (k, piece) in tap.chunks_mut(run * co).enumerate() {
            runs[k].push(piece);
        }
    }
    runs
}

/// `dW[ki][kj] = (Gᵀ M G)[ki][kj]` for the input channels `rows` of `m` (`N`
/// matrices of `ld x co`), written to the nine taps' rows in `taps` (the
/// first of `rows` at each one's start).
fn output_rows<W: Transform<N>, const N: usize>(
    m: &[f32],
    ld: usize,
    rows: Range<usize>,
    co: usize,
    taps: &mut [&mut [f32]],
) {
    let pp = W::P;
    // (M G)[r][kj]: P x 3 rows of one input channel
    let mut n = vec![0f32; 3 * pp * co];
    for (ii, i) in rows.enumerate() {
        let mrow = |xi: usize| &m[(xi * ld + i) * co..][..co];
        for r in 0..pp {
            let v: [&[f32]; 6] = std::array::from_fn(|s| mrow(pp * r + s.min(pp - 1)));
            for kj in 0..3 {
                W::gt_row(kj, &v[..pp], &mut n[(3 * r + kj) * co..][..co]);
            }
        }
        for ki in 0..3 {
            for kj in 0..3 {
                let col: [&[f32]; 6] =
                    std::array::from_fn(|r| &n[(3 * r.min(pp - 1) + kj) * co..][..co]);
                let out = &mut taps[ki * 3 + kj][ii * co..(ii + 1) * co];
                W::gt_row(ki, &col[..pp], out);
            }
        }
    }
}
