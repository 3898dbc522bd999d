//! dX of a 1x1 convolution with a stride above 1 (ResNet's downsampling
//! shortcuts). Each output pixel reads one input pixel, so dX is `dY · Wᵀ` at
//! the pixels the windows read and zero at the others. The general path
//! writes `dY · Wᵀ` to a dense `dCols` matrix, then gathers it into dX
//! (col2im); here each tile of output rows is multiplied into a
//! thread-private buffer and written, with the zeros between, to the input
//! rows it covers while still in cache, so `dCols` never goes through memory.

use std::ops::Range;

use rayon::prelude::*;

use crate::kernels::buffers;
use crate::kernels::gemm::MatRef;
use crate::kernels::packed_gemm::{gemm_packed_serial, PackedB};
use crate::ops::conv2d::geometry::ConvPlan;

/// Bytes of a tile's product (output pixels x input channels), kept in L2.
const TILE_BYTES: usize = 256 << 10;

/// Fewest output pixels per tile: each tile streams all of Wᵀ past its rows
/// (so a layer with few rows gets one tile per thread).
const MIN_TILE_PX: usize = 256;

thread_local! {
    /// Each worker thread's tile product.
    static TILE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// dX (`n x in_h x in_w x c`) of a one-group strided 1x1 convolution, from its
/// HWIO weights `w` (`1 x 1 x c x cout`) and output gradient `dy`; with
/// `bf16`, on the bfloat16 kernel.
pub fn dx(dy: &[f32], w: &[f32], p: &ConvPlan, bf16: bool) -> Vec<f32> {
    let g = &p.geo;
    let (c, cout) = (p.c, p.cout);
    let rows = p.n * g.out_h;
    let mut dx = buffers::dirty(p.n * g.in_h * g.in_w * c);
    if dx.is_empty() {
        return dx;
    }
    if rows * g.out_w == 0 {
        dx.fill(0.0);
        return dx;
    }
    let wt = match bf16 {
        true => PackedB::pack_bf16(MatRef::new(w, c, cout).t()),
        false => PackedB::pack(MatRef::new(w, c, cout).t()),
    };
    let threads = crate::threads::num_threads();
    let ow = g.out_w;
    let tile_rows = (TILE_BYTES / (4 * ow * c).max(1))
        .max(MIN_TILE_PX.div_ceil(ow))
        .min(rows.div_ceil(threads))
        .max(1);
    // the input rows of output row r (image b, row y): from its own up to the
    // next output row's, the image's last output row taking the rest
    let start = |r: usize| (r / g.out_h) * g.in_h + ((r % g.out_h) * g.sh).min(g.in_h);
    let end = |r: usize| match (r + 1) % g.out_h {
        0 => (r / g.out_h + 1) * g.in_h,
        _ => start(r + 1),
    };
    let row_len = g.in_w * c;
    let mut tiles = Vec::new();
    let mut rest = &mut dx[..];
    for r0 in (0..rows).step_by(tile_rows) {
        let r1 = (r0 + tile_rows).min(rows);
        let (part, tail) = rest.split_at_mut((end(r1 - 1) - start(r0)) * row_len);
        rest = tail;
        tiles.push((r0..r1, part));
    }
    let work = |(out_rows, part): (Range<usize>, &mut [f32])| {
        TILE.with_borrow_mut(|tile| {
            let npx = out_rows.len() * ow;
            tile.resize(npx * c, 0.0);
            let a = MatRef::new(&dy[out_rows.start * ow * cout..][..npx * cout], npx, cout);
            gemm_packed_serial(a, &wt, &mut tile[..npx * c], c, false);
            let base = start(out_rows.start);
            for r in out_rows.clone() {
                let rows = &mut part[(start(r) - base) * row_len..(end(r) - base) * row_len];
                // the first row (if the window's row is inside the image) gets
                // the tile's pixels at every sw-th column, zeros between
                let first = match (r % g.out_h) * g.sh < g.in_h {
                    true => row_len,
                    false => 0,
                };
                let (first, others) = rows.split_at_mut(first);
                others.fill(0.0);
                let src = &tile[(r - out_rows.start) * ow * c..][..ow * c];
                for (ix, px) in first.chunks_exact_mut(c).enumerate() {
                    match (ix % g.sw, ix / g.sw) {
                        (0, x) if x < ow => px.copy_from_slice(&src[x * c..(x + 1) * c]),
                        _ => px.fill(0.0),
                    }
                }
            }
        })
    };
    crate::threads::install(|| tiles.into_par_iter().for_each(work));
    dx
}
