//! The convolution as GEMMs over im2col's matrix, on either GEMM kernel:
//! the forward by tiles of output rows, by chunks of images, or straight from
//! the input of a pointwise (1x1, stride-1, unpadded) convolution; dX as
//! `dCols = dY·Wᵀ` then col2im; dW as `colsᵀ·dY` chunk by chunk. These are
//! the paths every convolution can take; the others are faster where they apply.

use crate::kernels::buffers;
use crate::kernels::gemm::{gemm, MatRef};
use crate::ops::conv2d::epilogue::{self, EpilogueRef};
use crate::ops::conv2d::geometry::ConvPlan;
use crate::ops::conv2d::weights::{mul, Weights};

use super::im2col::{col2im, im2col, im2col_row, TILE_COLS};

/// The forward of a pointwise convolution: the input is the im2col matrix,
/// one GEMM per group, then the epilogue.
pub fn forward_pointwise<'w>(
    x: &[f32],
    w_block: &dyn Fn(usize) -> Weights<'w>,
    p: &ConvPlan,
    ep: &EpilogueRef,
    out: &mut [f32],
) {
    let rows = p.n * p.out_pixels();
    for gr in 0..p.groups {
        let a = MatRef::strided(&x[gr * p.cin_g..], rows, p.cin_g, p.c);
        mul(
            a,
            w_block(gr),
            &mut out[gr * p.cout_g..],
            p.cout,
            false,
            false,
        );
    }
    epilogue::apply(out, p.cout, 0, ep);
}

/// The forward through im2col in chunks of images (so `cols` stays within
/// the plan's budget), one GEMM per group each, the epilogue on each chunk
/// while its rows are still warm in cache.
pub fn forward_chunked<'w>(
    x: &[f32],
    w_block: &dyn Fn(usize) -> Weights<'w>,
    p: &ConvPlan,
    ep: &EpilogueRef,
    out: &mut [f32],
) {
    let per = p.chunk;
    let kt = p.kt();
    // im2col writes every element of its rows
    let mut cols = buffers::dirty(per * p.out_pixels() * kt);
    for n0 in (0..p.n).step_by(per) {
        let rows_c = (p.n - n0).min(per) * p.out_pixels();
        let cols = &mut cols[..rows_c * kt];
        im2col(x, p, n0, cols);
        let out_c = &mut out[n0 * p.out_pixels() * p.cout..];
        for gr in 0..p.groups {
            let a = MatRef::strided(&cols[gr * p.kg..], rows_c, p.kg, kt);
            mul(
                a,
                w_block(gr),
                &mut out_c[gr * p.cout_g..],
                p.cout,
                false,
                false,
            );
        }
        let off = n0 * p.out_pixels() * p.cout;
        epilogue::apply(&mut out_c[..rows_c * p.cout], p.cout, off, ep);
    }
    buffers::recycle(cols);
}

/// The forward in tiles of output rows, each tile on one thread from start to
/// end: im2col of its rows into a thread-private buffer, one single-threaded
/// GEMM per group, then the epilogue (bias first) while the rows are in cache.
/// Nothing bigger than a tile travels through memory between the steps.
pub fn forward_tiled<'w>(
    x: &[f32],
    w_block: &(dyn Fn(usize) -> Weights<'w> + Sync),
    p: &ConvPlan,
    ep: &EpilogueRef,
    tile_px: usize,
    out: &mut [f32],
) {
    use rayon::prelude::*;
    let kt = p.kt();
    let ow = p.geo.out_w.max(1);
    let work = |cols: &mut Vec<f32>, (ti, out_t): (usize, &mut [f32])| {
        let px0 = ti * tile_px;
        let npx = out_t.len() / p.cout;
        let (src, stride): (&[f32], usize) = if p.pointwise {
            (&x[px0 * p.c..], p.c)
        } else {
            cols.resize(npx * kt, 0.0);
            let r0 = px0 / ow;
            for (j, row) in cols[..npx * kt].chunks_mut(ow * kt).enumerate() {
                im2col_row(x, p, r0 + j, row);
            }
            (&cols[..npx * kt], kt)
        };
        for gr in 0..p.groups {
            let a = MatRef::strided(&src[gr * p.kg..], npx, p.kg, stride);
            mul(
                a,
                w_block(gr),
                &mut out_t[gr * p.cout_g..],
                p.cout,
                false,
                true,
            );
        }
        epilogue::apply_serial(out_t, p.cout, px0 * p.cout, ep);
    };
    crate::threads::install(|| {
        out.par_chunks_mut(tile_px * p.cout)
            .enumerate()
            .for_each(|t| TILE_COLS.with_borrow_mut(|cols| work(cols, t)))
    });
}

/// dY's columns of group `gr`, rows `r0..r0 + nrows`.
fn dy_block<'a>(dy: &'a [f32], p: &ConvPlan, gr: usize, r0: usize, nrows: usize) -> MatRef<'a> {
    MatRef::strided(&dy[r0 * p.cout + gr * p.cout_g..], nrows, p.cout_g, p.cout)
}

/// dX of a pointwise convolution, `dY · Wᵀ` per group, `wt_of(gr)` being
/// group `gr`'s Wᵀ; added into `dx` when `accumulate` (the gradient so far).
pub fn dx_pointwise<'w>(
    dy: &[f32],
    wt_of: &dyn Fn(usize) -> Weights<'w>,
    p: &ConvPlan,
    dx: &mut [f32],
    accumulate: bool,
) {
    let rows = p.n * p.out_pixels();
    for gr in 0..p.groups {
        let dx = &mut dx[gr * p.cin_g..];
        mul(
            dy_block(dy, p, gr, 0, rows),
            wt_of(gr),
            dx,
            p.c,
            accumulate,
            false,
        );
    }
}

/// dW of a pointwise convolution, `Xᵀ · dY` per group on the `gemm` crate.
pub fn dw_pointwise(x: &[f32], dy: &[f32], p: &ConvPlan) -> Vec<f32> {
    let rows = p.n * p.out_pixels();
    // every group's block is overwritten by its GEMM
    let mut dw = buffers::dirty(p.kg * p.cout);
    for gr in 0..p.groups {
        let a = MatRef::strided(&x[gr * p.cin_g..], rows, p.cin_g, p.c).t();
        gemm(
            a,
            dy_block(dy, p, gr, 0, rows),
            &mut dw[gr * p.cout_g..],
            p.cout,
            false,
        );
    }
    dw
}

/// dX by `dCols = dY · Wᵀ` (one non-accumulating GEMM per group, whose column
/// blocks tile each row) then col2im, chunk by chunk of images.
pub fn dx_col2im<'w>(dy: &[f32], wt_of: &dyn Fn(usize) -> Weights<'w>, p: &ConvPlan) -> Vec<f32> {
    let per = p.chunk;
    let kt = p.kt();
    let img = p.geo.in_h * p.geo.in_w * p.c;
    // cleared row by row by col2im
    let mut dx = buffers::dirty(p.n * img);
    let mut dcols = buffers::dirty(per * p.out_pixels() * kt);
    for n0 in (0..p.n).step_by(per) {
        let n_img = (p.n - n0).min(per);
        let rows_c = n_img * p.out_pixels();
        let r0 = n0 * p.out_pixels();
        let dcols = &mut dcols[..rows_c * kt];
        for gr in 0..p.groups {
            let dc = &mut dcols[gr * p.kg..];
            mul(
                dy_block(dy, p, gr, r0, rows_c),
                wt_of(gr),
                dc,
                kt,
                false,
                false,
            );
        }
        col2im(dcols, p, &mut dx[n0 * img..(n0 + n_img) * img]);
    }
    buffers::recycle(dcols);
    dx
}

/// dW = colsᵀ · dY on the `gemm` crate, im2col chunk by chunk of images, each
/// chunk's products added to the previous ones.
pub fn dw_chunked(x: &[f32], dy: &[f32], p: &ConvPlan) -> Vec<f32> {
    let per = p.chunk;
    let kt = p.kt();
    // overwritten by the first chunk's GEMMs (the groups' blocks tile it)
    let mut dw = buffers::dirty(p.kg * p.cout);
    let mut cols = buffers::dirty(per * p.out_pixels() * kt);
    for n0 in (0..p.n).step_by(per) {
        let rows_c = (p.n - n0).min(per) * p.out_pixels();
        let r0 = n0 * p.out_pixels();
        let cols = &mut cols[..rows_c * kt];
        im2col(x, p, n0, cols);
        for gr in 0..p.groups {
            let a = MatRef::strided(&cols[gr * p.kg..], rows_c, p.kg, kt).t();
            gemm(
                a,
                dy_block(dy, p, gr, r0, rows_c),
                &mut dw[gr * p.cout_g..],
                p.cout,
                n0 > 0,
            );
        }
    }
    buffers::recycle(cols);
    dw
}
