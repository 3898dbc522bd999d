//! Winograd F(4x4, 3x3) over the whole batch, for convolutions too wide for
//! its blocks (`winograd_f4.rs`): every tile's input transform, then each of
//! the 36 GEMMs on one thread (its transformed weights read once), then the
//! output transform. Weights used once are transformed a block at a time
//! as the products need them ([`forward_packing`]). The transforms and the
//! tiling are `winograd_f4.rs`'s.

use std::cell::RefCell;
use std::ops::Range;

use super::winograd_f4::*;
use crate::kernels::buffers;
use crate::kernels::gemm::MatRef;
use crate::kernels::packed_gemm::{gemm_packed_serial, k_block, PackedB, NR};
use crate::ops::conv2d::epilogue::{self, EpilogueRef};
use crate::ops::conv2d::geometry::ConvPlan;

/// The forward over the whole batch, with `u` from [`pack_weights`]: `V` of every tile (tiles
/// split among the threads), the 36 GEMMs `M[ξ] = V[ξ] · U[ξ]` spread over
/// the threads, then the output transform and epilogue by blocks of bands.
pub fn forward(x: &[f32], u: &[PackedB], p: &ConvPlan, ep: &EpilogueRef, out: &mut [f32]) {
    whole_with(x, WholeWeights::Packed(u), p, ep, out)
}

/// [`forward`] of a convolution that [`packs_as_it_goes`], from its HWIO
/// weights `w`: the transformed weights never written out whole, but a
/// block of input channels by one panel of output channels at a time, each
/// block's products run while it is in L2 ([`whole_gemms_transforming`]).
/// The products are those of [`forward`] with [`pack_weights`], bit for
/// bit: each element of `M` is summed by the same kernel calls. Written out
/// whole, the 36 matrices (up to 36 MiB) would go through memory twice.
pub fn forward_packing(x: &[f32], w: &[f32], p: &ConvPlan, ep: &EpilogueRef, out: &mut [f32]) {
    whole_with(x, WholeWeights::Raw(w), p, ep, out)
}

/// The weights of [`whole_with`]: the 36 matrices packed, or HWIO weights
/// to transform a block at a time ([`whole_gemms_transforming`]).
#[derive(Clone, Copy)]
enum WholeWeights<'a> {
    Packed(&'a [PackedB]),
    Raw(&'a [f32]),
}

thread_local! {
    /// Each thread's six blocks of transformed weights for
    /// [`whole_gemms_transforming`], kept from call to call.
    static U_BLOCK: RefCell<[Vec<f32>; 6]> = RefCell::new(Default::default());
}

/// [`whole_gemms`] from HWIO weights `w`, never writing the 36 transformed
/// matrices out whole (36 MiB at 512 -> 512 channels: the transform was
/// bound by writing them to memory, and the products by reading them back).
/// Each of six tasks takes the six positions ξ = (r, s) of one row `r` of
/// `G` (its own six planes of `M`): for each panel of output channels and
/// each block of input channels it transforms that block of the six `U[ξ]`
/// into a thread-private buffer (in L2: 384 KiB at ResNet-50's widths, 576
/// KiB at most) and at once adds its products into the six `M[ξ]`. The
/// blocks are the kernel's own k blocks ([`k_block`]), so every element of
/// `M` is summed exactly as by [`whole_gemms`] with the whole `U[ξ]` packed.
fn whole_gemms_transforming(v: &[f32], m: &mut [f32], w: &[f32], p: &ConvPlan, t: usize) {
    use rayon::prelude::*;
    let (ci, co) = (p.c, p.cout);
    let kb = k_block(ci);
    let task = |(r, planes): (usize, &mut [f32])| {
        U_BLOCK.with_borrow_mut(|bufs| {
            for j0 in (0..co).step_by(NR) {
                let cols = j0..(j0 + NR).min(co);
                for k0 in (0..ci).step_by(kb) {
                    let rows = k0..(k0 + kb).min(ci);
                    let u = transform_block(w, p, r, rows.clone(), cols.clone(), bufs);
                    for (s, u) in u.iter().enumerate() {
                        let xi = 6 * r + s;
                        let a = MatRef::strided(&v[xi * t * ci + k0..], t, rows.len(), ci);
                        let c = &mut planes[s * t * co + j0..];
                        gemm_packed_serial(a, u, c, co, k0 > 0);
                    }
                    *bufs = u.map(PackedB::into_data);
                }
            }
        })
    };
    crate::threads::install(|| {
        m.par_chunks_mut(6 * t * co)
            .enumerate()
            .with_max_len(1)
            .for_each(task)
    });
}

/// `U[ξ]` for the six positions `ξ = (r, s)` of row `r` of `G`, input
/// channels `rows` by output channels `cols` (at most one panel), packed
/// into `bufs`: the values [`pack_weights`] gives, by the same operations.
fn transform_block(
    w: &[f32],
    p: &ConvPlan,
    r: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    bufs: &mut [Vec<f32>; 6],
) -> [PackedB; 6] {
    let (ci, co) = (p.c, p.cout);
    let bufs = std::mem::take(bufs);
    PackedB::build_n_in(bufs, rows.len(), cols.len(), |i, o0, dst| {
        let n = dst[0].len();
        let (i, o0) = (rows.start + i, cols.start + o0);
        let g = |ki: usize, kj: usize| &w[((ki * 3 + kj) * ci + i) * co + o0..][..n];
        // (G g)[r][kj] for the three kernel columns, then times Gᵀ[.][s]
        let mut t = [[0f32; NR]; 3];
        for (kj, t) in t.iter_mut().enumerate() {
            g_row(r, [g(0, kj), g(1, kj), g(2, kj)], &mut t[..n]);
        }
        for (s, dst) in dst.into_iter().enumerate() {
            g_row(s, [&t[0][..n], &t[1][..n], &t[2][..n]], dst);
        }
    })
}

/// The 36 GEMMs `M[ξ] = V[ξ] · U[ξ]` (`V` and `M`: 36 planes of `t` rows),
/// spread over the threads, each reading its `U[ξ]` once.
fn whole_gemms(v: &[f32], m: &mut [f32], u: &[PackedB], t: usize, ci: usize, co: usize) {
    use rayon::prelude::*;
    crate::threads::install(|| {
        m.par_chunks_mut(t * co)
            .zip(v.par_chunks(t * ci))
            .zip(u.par_iter())
            .with_max_len(1)
            .for_each(|((mx, vx), ux)| {
                gemm_packed_serial(MatRef::new(vx, t, ci), ux, mx, co, false)
            })
    });
}

/// `V` of every tile of the batch (36 matrices of `tiles x C_in`), whole
/// bands of tiles a piece, a few pieces per thread (also dW's, in
/// `winograd_dw.rs`).
pub fn whole_input_transform(x: &[f32], p: &ConvPlan) -> Vec<f32> {
    use rayon::prelude::*;
    let ci = p.c;
    let tl = Tiling::of(p);
    let bands = p.n * tl.th;
    let t = bands * tl.tw;
    let per = bands.div_ceil(4 * crate::threads::num_threads()).max(1);
    let mut v = buffers::dirty(36 * t * ci);
    // each piece's tiles in every plane of V
    let mut pieces: Vec<(usize, Vec<&mut [f32]>)> = (0..bands.div_ceil(per))
        .map(|k| (k * per, Vec::with_capacity(36)))
        .collect();
    for plane in v.chunks_mut(t * ci) {
        for ((_, planes), part) in pieces.iter_mut().zip(plane.chunks_mut(per * tl.tw * ci)) {
            planes.push(part);
        }
    }
    crate::threads::install(|| {
        pieces.into_par_iter().for_each(|(q0, mut planes)| {
            let tiles = q0 * tl.tw..((q0 + per).min(bands)) * tl.tw;
            input_planes(x, p, 0, tiles, &mut planes)
        })
    });
    v
}

/// [`forward_whole`] and [`forward_packing`].
fn whole_with(x: &[f32], u: WholeWeights, p: &ConvPlan, ep: &EpilogueRef, out: &mut [f32]) {
    use rayon::prelude::*;
    let (ci, co) = (p.c, p.cout);
    let tl = Tiling::of(p);
    let bands = p.n * tl.th;
    let t = bands * tl.tw;
    // whole bands per block of the output transform, a few blocks per thread
    let per = bands.div_ceil(4 * crate::threads::num_threads()).max(1);
    let v = whole_input_transform(x, p);
    let mut m = buffers::dirty(36 * t * co);
    match u {
        WholeWeights::Packed(u) => whole_gemms(&v, &mut m, u, t, ci, co),
        WholeWeights::Raw(w) => whole_gemms_transforming(&v, &mut m, w, p, t),
    }
    buffers::recycle(v);
    let planes: Vec<&[f32]> = m.chunks(t * co).collect();
    let row_len = tl.out_w * co;
    let blocks = blocks_of(tl, bands, per, row_len, out);
    crate::threads::install(|| {
        blocks.into_par_iter().for_each(|(q0, q1, out_b)| {
            output_planes(&planes, co, tl, 0, q0 * tl.tw..q1 * tl.tw, out_b);
            epilogue::apply_serial(out_b, co, tl.band_row(q0) * row_len, ep);
        })
    });
    drop(planes);
    buffers::recycle(m);
}
