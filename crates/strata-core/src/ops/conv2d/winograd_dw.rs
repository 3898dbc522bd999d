//! The kernel gradient of a Winograd F(2x2, 3x3) convolution ([`winograd`]),
//! in 16 GEMMs of 2.25x fewer multiplications than `colsᵀ·dY`.
//!
//! The forward computes each 2x2 output tile as `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`.
//! Differentiating that with respect to the filter `g` gives, summed over the
//! tiles, `dW = Gᵀ M G` with, for each of the 16 positions ξ,
//! `M[ξ] = Σ_tiles V[ξ]ᵀ D[ξ]`: `V = Bᵀ d B` is the forward's own input
//! transform and `D = A dY Aᵀ` the transform of the tile's 2x2 gradient.
//! Each `M[ξ]` is one `C_in x C_out` GEMM whose depth runs over the tiles:
//! 16 * C_in * C_out multiplications per tile against 36 * C_in * C_out for
//! the 4 pixels of `colsᵀ·dY`. The transforms are additions only.
//!
//! The tiles are split into one contiguous part per thread; each part goes
//! through blocks of about [`BLOCK_TILES`] tiles (whole bands of two output
//! rows): `V` of the block, turned to `C_in x tiles` so the kernel reads it
//! with a unit step, `D[ξ]` written straight into packed panels, and the 16
//! products added into the part's private `M`. The parts' `M` are added in
//! part order, so the result depends only on the thread count; it differs
//! from `colsᵀ·dY` by rounding only. Against the tiled `colsᵀ·dY`, interleaved
//! in one process, min of 25 (batch 8): 56x56 64->64 17.6 -> 11.5 ms,
//! 28x28 128->128 9.6 -> 8.1, 14x14 256->256 9.3 -> 7.4.

use std::ops::Range;

use rayon::prelude::*;

use super::winograd::input_transform;
use super::ConvPlan;
use crate::kernels::buffers;
use crate::kernels::gemm::MatRef;
use crate::kernels::packed_gemm::{gemm_packed_serial, PackedB, NR};
use crate::kernels::parallel;
use crate::kernels::transpose::transpose;

/// Tiles per block: the depth of the block's 16 GEMMs. Deep enough that
/// adding into `M` (16 * C_in * C_out, 4 MiB at 256 -> 256 channels, from
/// L3) costs little beside the products; `V` and `D` of a block of 256 -> 256
/// channels take about 8 MiB.
const BLOCK_TILES: usize = 256;

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
    /// The block's packed `D`, one buffer per ξ.
    d: [Vec<f32>; 16],
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// `dW` (HWIO, `3 x 3 x C_in x C_out`) of a convolution that
/// [`super::winograd::applies`], from its input `x` and output gradient `dy`.
pub(super) fn dw(x: &[f32], dy: &[f32], p: &ConvPlan) -> Vec<f32> {
    let g = &p.geo;
    let (ci, co) = (p.c, p.cout);
    let (th, tw) = (g.out_h / 2, g.out_w / 2);
    let bands = p.n * th;
    let parts = crate::threads::num_threads().clamp(1, bands.max(1));
    let per = BLOCK_TILES.div_ceil(tw.max(1)).max(1);
    let m_len = 16 * ci * co;
    let part = |Range { start: q0, end: q1 }: Range<usize>| -> Vec<f32> {
        // the first block's GEMMs overwrite every element
        let mut m = buffers::dirty(m_len);
        SCRATCH.with_borrow_mut(|scratch| {
            for b0 in (q0..q1).step_by(per) {
                add_block(scratch, x, dy, p, b0..(b0 + per).min(q1), &mut m, b0 > q0);
            }
        });
        m
    };
    let m = parallel::sum_over_parts(bands, parts, m_len, part);
    let dw = output_transform(&m, ci, co);
    buffers::recycle(m);
    dw
}

/// `m[ξ] (+)= V[ξ]ᵀ D[ξ]` over the tiles of `bands` (whole bands of tiles),
/// overwriting `m` unless `accumulate`.
fn add_block(
    s: &mut Scratch,
    x: &[f32],
    dy: &[f32],
    p: &ConvPlan,
    bands: Range<usize>,
    m: &mut [f32],
    accumulate: bool,
) {
    let (ci, co) = (p.c, p.cout);
    let (th, tw) = (p.geo.out_h / 2, p.geo.out_w / 2);
    let (b0, t) = (bands.start, bands.len() * tw);
    // vt's rows are whole cache lines (`lt` floats, from a 64-byte boundary),
    // so each turned run of 16 tiles writes whole lines
    let lt = t.next_multiple_of(16);
    s.vt.resize(16 * ci * lt + 16, 0.0);
    let at = s.vt.as_ptr().align_offset(64).min(16);
    let vt = &mut s.vt[at..at + 16 * ci * lt];
    // V a few tiles at a time, each plane then turned into vt's columns
    // while the few tiles are still in L1
    s.stage.resize(16 * STAGE_TILES * ci, 0.0);
    for j0 in (0..t).step_by(STAGE_TILES) {
        let n = STAGE_TILES.min(t - j0);
        let stage = &mut s.stage[..16 * n * ci];
        input_transform(x, p, th, tw, b0, j0..j0 + n, stage);
        for (xi, plane) in stage.chunks_exact(n * ci).enumerate() {
            transpose(plane, n, ci, ci, &mut vt[xi * ci * lt + j0..], lt);
        }
    }
    let d = grad_transform(std::mem::take(&mut s.d), dy, p, b0, t);
    for (xi, d) in d.iter().enumerate() {
        let a = MatRef::strided(&vt[xi * ci * lt..(xi + 1) * ci * lt], ci, t, lt);
        let mx = &mut m[xi * ci * co..(xi + 1) * ci * co];
        gemm_packed_serial(a, d, mx, co, accumulate);
    }
    s.d = d.map(PackedB::into_data);
}

/// Row `r` of `A = [[1, 0], [1, 1], [1, -1], [0, -1]]` applied to two rows:
/// `out = A[r][0] * v0 + A[r][1] * v1`, element by element.
fn a_row(r: usize, v0: &[f32], v1: &[f32], out: &mut [f32]) {
    let rows = out.iter_mut().zip(v0).zip(v1);
    match r {
        0 => out.copy_from_slice(v0),
        1 => rows.for_each(|((o, &a), &b)| *o = a + b),
        2 => rows.for_each(|((o, &a), &b)| *o = a - b),
        _ => rows.for_each(|((o, _), &b)| *o = -b),
    }
}

/// `D[ξ] = (A g Aᵀ)[ξ]` for the 2x2 gradients `g` of the `t` tiles of the
/// block starting at band `b0`, packed (tiles x C_out) for the GEMMs: the 16
/// matrices a row at a time, 64 output channels at a time.
/// `bufs` are the 16 matrices' buffers, kept from block to block.
fn grad_transform(
    bufs: [Vec<f32>; 16],
    dy: &[f32],
    p: &ConvPlan,
    b0: usize,
    t: usize,
) -> [PackedB; 16] {
    let g = &p.geo;
    let (th, tw) = (g.out_h / 2, g.out_w / 2);
    let (co, ow) = (p.cout, g.out_w);
    // (A g)[r][c] for the tile's two columns c, then (A g Aᵀ)[r][s]
    let mut h = [[0f32; NR]; 8];
    PackedB::build_n_in(bufs, t, co, |j, o0, dst: [&mut [f32]; 16]| {
        let n = dst[0].len();
        let q = b0 + j / tw;
        let (b, ty, tx) = (q / th, q % th, j % tw);
        // gradient pixel (row a, column c) of the tile, channels o0..o0 + n
        let px = |a: usize, c: usize| {
            let at = ((b * g.out_h + 2 * ty + a) * ow + 2 * tx + c) * co + o0;
            &dy[at..at + n]
        };
        for (rc, h) in h.iter_mut().enumerate() {
            let (r, c) = (rc / 2, rc % 2);
            a_row(r, px(0, c), px(1, c), &mut h[..n]);
        }
        for (xi, dst) in dst.into_iter().enumerate() {
            let (r, s) = (xi / 4, xi % 4);
            a_row(s, &h[2 * r][..n], &h[2 * r + 1][..n], dst);
        }
    })
}

/// Row `k` of `Gᵀ = [[1, ½, ½, 0], [0, ½, -½, 0], [0, ½, ½, 1]]` applied to
/// four rows: `out = Σ_r G[r][k] * v[r]`, element by element.
fn gt_row(k: usize, [v0, v1, v2, v3]: [&[f32]; 4], out: &mut [f32]) {
    let rows = out.iter_mut().zip(v0).zip(v1).zip(v2).zip(v3);
    match k {
        0 => rows.for_each(|((((o, &a), &b), &c), _)| *o = a + 0.5 * (b + c)),
        1 => rows.for_each(|((((o, _), &b), &c), _)| *o = 0.5 * (b - c)),
        _ => rows.for_each(|((((o, _), &b), &c), &d)| *o = 0.5 * (b + c) + d),
    }
}

/// `dW[ki][kj] = (Gᵀ M G)[ki][kj]` for every pair of channels, from the 16
/// `C_in x C_out` matrices `m`: input channels in parallel, each a loop over
/// the output channels.
fn output_transform(m: &[f32], ci: usize, co: usize) -> Vec<f32> {
    let mut dw = buffers::dirty(9 * ci * co);
    if ci * co == 0 {
        return dw;
    }
    // the nine taps' planes, each cut into the same runs of input channels
    let run = crate::threads::chunk_len(ci, 16);
    let mut runs: Vec<Vec<&mut [f32]>> = (0..ci.div_ceil(run)).map(|_| Vec::new()).collect();
    for tap in dw.chunks_mut(ci * co) {
        for (k, piece) in tap.chunks_mut(run * co).enumerate() {
            runs[k].push(piece);
        }
    }
    let work = |(k, mut taps): (usize, Vec<&mut [f32]>)| {
        // (M G)[r][kj]: 4 x 3 rows of one input channel
        let mut n = vec![0f32; 12 * co];
        for (ii, i) in (k * run..((k + 1) * run).min(ci)).enumerate() {
            let mrow = |xi: usize| &m[(xi * ci + i) * co..][..co];
            for r in 0..4 {
                let v = [
                    mrow(4 * r),
                    mrow(4 * r + 1),
                    mrow(4 * r + 2),
                    mrow(4 * r + 3),
                ];
                for kj in 0..3 {
                    gt_row(kj, v, &mut n[(3 * r + kj) * co..][..co]);
                }
            }
            for ki in 0..3 {
                for kj in 0..3 {
                    let col = |r: usize| &n[(3 * r + kj) * co..][..co];
                    let out = &mut taps[ki * 3 + kj][ii * co..(ii + 1) * co];
                    gt_row(ki, [col(0), col(1), col(2), col(3)], out);
                }
            }
        }
    };
    crate::threads::install(|| runs.into_par_iter().enumerate().for_each(work));
    dw
}
