//! dW = colsᵀ·dY without the whole batch's im2col matrix: by tiles of
//! output rows ([`dw_tiled`]), or by blocks of kernel rows for a
//! convolution with few output pixels ([`dw_by_kernel_rows`]).

use crate::kernels::buffers;
use crate::kernels::gemm::{gemm_serial, MatRef};
use crate::kernels::packed_gemm::{self, gemm_rows_serial, OnceB, RowMajor};
use crate::kernels::parallel;
use crate::ops::conv2d::geometry::ConvPlan;

use super::im2col::{im2col_row, im2col_row_t, TILE_COLS, TILE_COLS_T};

/// `dW = colsᵀ·dY` without the whole batch's im2col matrix. The output's image
/// rows are split into one contiguous part per thread; each part rebuilds its
/// im2col a tile at a time in the thread's private buffer (so it is still in
/// cache when the GEMM reads it) and accumulates into a private partial `dW`.
/// With `packed` (one group, on the packed kernel) the tile is built as colsᵀ
/// ([`im2col_row_t`]), so the
/// kernel reads A with a unit step (read in place as column-major, each of
/// its loads would fall on another cache line and page), in blocks of rows
/// small enough to stay in L2 until the kernel reads them.
/// With `bf16`, dY's tile is packed in bfloat16 pairs for the bfloat16 kernel.
/// The partials are added in part order, so the result depends only on the
/// thread count. Saves the forward from keeping `cols` (kh*kw times the input)
/// alive until the backward.
pub fn dw_tiled(
    x: &[f32],
    dy: &[f32],
    p: &ConvPlan,
    tile_px: usize,
    packed: bool,
    bf16: bool,
) -> Vec<f32> {
    let kt = p.kt();
    let ow = p.geo.out_w.max(1);
    let image_rows = p.n * p.geo.out_h;
    let tile_rows = (tile_px / ow).max(1);
    let parts = crate::threads::num_threads().clamp(1, image_rows.max(1));
    let dw_len = p.kg * p.cout;
    let part = |std::ops::Range { start: r0, end: r1 }: std::ops::Range<usize>| -> Vec<f32> {
        // the first tile's GEMMs overwrite every element (the groups' blocks tile it)
        let mut dw = buffers::dirty(dw_len);
        TILE_COLS.with_borrow_mut(|cols| {
            for t0 in (r0..r1).step_by(tile_rows) {
                let npx = ((t0 + tile_rows).min(r1) - t0) * ow;
                let dy_t = &dy[t0 * ow * p.cout..];
                if packed {
                    // dY's tile as B, read in place where it can be
                    // (`OnceB`); colsᵀ built a block of its
                    // rows at a time (small enough to stay in L2 until the
                    // kernel reads it, with a unit step), each block's
                    // product going to the same rows of dW
                    let dy_tile = MatRef::new(&dy_t[..npx * p.cout], npx, p.cout);
                    let dy_tile = OnceB::of_in(dy_tile, false, bf16);
                    let b = dy_tile.panels();
                    let kb = cols_t_block_rows(npx);
                    TILE_COLS_T.with_borrow_mut(|cols_t| {
                        for k0 in (0..kt).step_by(kb) {
                            let k1 = (k0 + kb).min(kt);
                            let block = &mut cols_t_buf(cols_t, (k1 - k0) * npx)[..];
                            for j in 0..npx / ow {
                                im2col_row_t(x, p, t0 + j, k0..k1, &mut block[j * ow..], npx, cols);
                            }
                            let a = MatRef::new(block, k1 - k0, npx);
                            let a = RowMajor::new(a).expect("colsᵀ is row-major");
                            let dw_rows = &mut dw[k0 * p.cout..k1 * p.cout];
                            gemm_rows_serial(&a, b, dw_rows, p.cout, t0 > r0);
                        }
                    });
                    continue;
                }
                cols.resize(npx * kt, 0.0);
                for (j, row) in cols[..npx * kt].chunks_mut(ow * kt).enumerate() {
                    im2col_row(x, p, t0 + j, row);
                }
                for gr in 0..p.groups {
                    let a = MatRef::strided(&cols[gr * p.kg..], npx, p.kg, kt).t();
                    let b = MatRef::strided(&dy_t[gr * p.cout_g..], npx, p.cout_g, p.cout);
                    gemm_serial(a, b, &mut dw[gr * p.cout_g..], p.cout, t0 > r0);
                }
            }
        });
        dw
    };
    parallel::sum_over_parts(image_rows, parts, dw_len, part)
}

/// `dW = colsᵀ·dY` for a convolution with few output pixels and a tall
/// kernel matrix (ResNet's stride-2 3x3 into the 7x7 stage at batch 8: 392
/// pixels, 4608 kernel rows). Split by pixels, as [`dw_tiled`] is, each
/// thread would add its few pixels into a whole partial dW of its own (9
/// MiB there) for the parts to be added up; here the rows of dW are split
/// among the threads instead (`packed_gemm::gemm_built_rows`), each block's
/// rows of colsᵀ over every pixel (a few hundred KiB at most, in L2) times
/// all of dY (read in place, or packed once). Every element sums over all the
/// pixels in order, whatever the split. With `bf16`, dY is packed in
/// bfloat16 pairs for the bfloat16 kernel.
pub fn dw_by_kernel_rows(x: &[f32], dy: &[f32], p: &ConvPlan, bf16: bool) -> Vec<f32> {
    let (kt, cout) = (p.kt(), p.cout);
    let rows = p.n * p.out_pixels();
    let ow = p.geo.out_w;
    let mut dw = buffers::dirty(kt * cout);
    let dy = OnceB::of_in(MatRef::new(&dy[..rows * cout], rows, cout), true, bf16);
    // colsᵀ's rows `ks` over every pixel, an output image row at a time
    let cols_t = |ks: std::ops::Range<usize>, block: &mut [f32], ld: usize| {
        TILE_COLS.with_borrow_mut(|pixel| {
            for r in 0..p.n * p.geo.out_h {
                im2col_row_t(x, p, r, ks.clone(), &mut block[r * ow..], ld, pixel);
            }
        })
    };
    packed_gemm::gemm_built_rows(&mut dw, (kt, rows), dy.panels(), cols_t);
    dw
}

/// Bytes of one block of colsᵀ in [`dw_tiled`]: it stays in L2 (beside dY's
/// packed tile) between being written and being read.
const COLS_T_BLOCK_BYTES: usize = 192 << 10;

/// Rows of colsᵀ per block for a tile of `npx` pixels: a multiple of 48, so
/// that blocks split neither the transposes' 16-row blocks nor the kernel's
/// 6-row ones.
fn cols_t_block_rows(npx: usize) -> usize {
    (COLS_T_BLOCK_BYTES / 4 / npx.max(1) / 48).max(1) * 48
}

/// `buf` holding at least `len` values, as a slice of exactly `len`.
fn cols_t_buf(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}
