//! The plan of one convolution: its sizes and geometry, checked once, and
//! how its output splits into tiles. Shared by the op, its dispatch and its
//! algorithms, so the algorithms need nothing from the op itself.

use crate::ops::padding::Geometry2d;

/// Largest im2col buffer (bytes) built at once; bigger batches go in chunks of
/// images (at least one). Small enough that the buffer is reused from chunk to
/// chunk while still warm, big enough that each GEMM has thousands of rows.
pub const COLS_BUDGET_BYTES: usize = 8 << 20;

/// Everything the algorithms need of one convolution, checked once by the
/// op's shape rule ([`super::plan`]).
#[derive(Debug, Clone, Copy)]
pub struct ConvPlan {
    pub n: usize,
    pub c: usize,
    pub cout: usize,
    pub groups: usize,
    pub cin_g: usize,
    pub cout_g: usize,
    /// Columns of one group's block: kh*kw*cin_g.
    pub kg: usize,
    pub geo: Geometry2d,
    /// 1x1, stride 1, no padding: the input is already the im2col matrix.
    pub pointwise: bool,
    /// Images per im2col chunk.
    pub chunk: usize,
}

impl ConvPlan {
    /// Width of a `cols` row: all groups' blocks.
    pub fn kt(&self) -> usize {
        self.groups * self.kg
    }
    pub fn out_pixels(&self) -> usize {
        self.geo.out_h * self.geo.out_w
    }
    /// Images per im2col chunk, at least 1, so `cols` stays within the budget.
    pub fn chunk_for_budget(&self, budget_bytes: usize) -> usize {
        let per_image = (self.out_pixels() * self.kt() * 4).max(1);
        (budget_bytes / per_image).clamp(1, self.n.max(1))
    }
}

/// Bytes of im2col rows (the GEMM's left operand) per tile of a tiled forward:
/// a tile's `cols`, its slice of the kernel and its output rows stay in L2.
pub const TILE_COLS_BYTES: usize = 256 << 10;

/// Fewest output pixels per tile: every tile's GEMM packs the whole kernel
/// again, which costs about as much as `MIN_TILE_PX / 16` rows of arithmetic.
const MIN_TILE_PX: usize = 256;

/// Output pixels per tile of a tiled forward or dW (whole output image rows), or
/// `None` when there would be too few tiles to keep every thread busy.
pub fn tile_pixels(p: &ConvPlan) -> Option<usize> {
    let ow = p.geo.out_w.max(1);
    let want = (TILE_COLS_BYTES / (p.kt().max(1) * 4)).max(MIN_TILE_PX);
    let tile_px = want.div_ceil(ow) * ow;
    let tiles = (p.n * p.out_pixels()).div_ceil(tile_px);
    (tiles >= 3 * crate::threads::num_threads()).then_some(tile_px)
}
