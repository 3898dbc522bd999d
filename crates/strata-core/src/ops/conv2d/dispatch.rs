//! The one place that decides how a convolution runs: which algorithm computes
//! its forward ([`forward`]), its dX ([`dx`]) and its dW ([`dw`]), from the
//! plan, the GEMM kernel the CPU runs and whether the weights are used once.
//! Every rule says why it holds. `run.rs` runs what is chosen here; tests run
//! an algorithm by name instead.
//!
//! All algorithms compute the same convolution; the fast ones differ from
//! im2col + GEMM by rounding only, and each is tested against `reference.rs`.
//!
//! Under `mixed_bfloat16` each direction first picks its kernel
//! ([`forward_gemm`], [`dx_gemm`], [`dw_gemm`]): the bfloat16 one
//! ([`Gemm::PackedBf16`], AVX512-BF16, detected at run time) runs the GEMM
//! algorithms on the operands as they are, rounding them as it packs and
//! stages them; otherwise the portable definition runs: the operands rounded
//! first, then the float32 choice. AMX is not implemented.

use super::geometry::{tile_pixels, ConvPlan};
use super::weights::Layout;
use super::{plan, Conv2dConfig};
use crate::kernels::packed_gemm;
use crate::ops::padding::Padding;
use crate::precision::Precision;

/// The GEMM kernel the algorithms multiply with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gemm {
    /// strata's packed kernel (AVX-512, or AVX2 + FMA), with weights packed once per call.
    Packed,
    /// The packed kernel on bfloat16 pairs (AVX512-BF16): weights packed
    /// in bfloat16, the other operand rounded as it is staged, float32 sums.
    PackedBf16,
    /// The `gemm` crate, reading the weights in place.
    Crate,
}

impl Gemm {
    /// The packed kernel where the CPU has AVX-512 or AVX2 + FMA (checked at run time),
    /// else the crate.
    pub fn of_cpu() -> Gemm {
        match packed_gemm::available() {
            true => Gemm::Packed,
            false => Gemm::Crate,
        }
    }

    /// Whether it is the bfloat16 kernel.
    pub fn is_bf16(self) -> bool {
        self == Gemm::PackedBf16
    }
}

/// The kernel a forward in `precision` multiplies on: the bfloat16 one
/// where the CPU has it, except where Winograd keeps the convolution (see
/// [`winograd_keeps_bf16`]); otherwise [`Gemm::of_cpu`], on operands the
/// caller rounds first (the portable path).
pub fn forward_gemm(p: &ConvPlan, precision: Precision) -> Gemm {
    match precision.is_bf16() && packed_gemm::bf16_available() && !winograd_keeps_bf16(p) {
        true => Gemm::PackedBf16,
        false => Gemm::of_cpu(),
    }
}

/// dX's kernel in `precision`: a stride-1 dX is a forward (under its
/// transposed plan), so that forward's; every other dX is a GEMM.
pub fn dx_gemm(p: &ConvPlan, precision: Precision) -> Gemm {
    if let Some(tp) = transposed_plan(p) {
        return forward_gemm(&tp, precision);
    }
    forward_gemm(p, precision)
}

/// dW's kernel in `precision`: the bfloat16 one where the CPU has it and dW
/// runs on the packed kernel (its thin or grouped dWs run on the crate,
/// which has no bfloat16, so those stay portable), except a dW by F(2x2)'s
/// or F(4x4)'s transforms in blocks (see [`winograd_keeps_bf16`]); the 7x7
/// stage's dW by positions takes the bfloat16 GEMM (dW by kernel rows),
/// which measured at least as fast.
pub fn dw_gemm(p: &ConvPlan, precision: Precision) -> Gemm {
    let fast = precision.is_bf16()
        && packed_gemm::bf16_available()
        && !winograd2(p)
        && dw(p, Gemm::PackedBf16, None).on_packed();
    match fast {
        true => Gemm::PackedBf16,
        false => Gemm::of_cpu(),
    }
}

/// Whether a bfloat16 convolution stays on float32 Winograd (its operands
/// rounded first) rather than the bfloat16 GEMM. Winograd in bfloat16 is not
/// implemented: its transforms amplify bfloat16's rounding (F(4x4)'s input
/// transform has coefficients up to 5 and its tiles sums of 36 rounded
/// terms), so the transformed tiles must stay float32 (F(2x2)'s in bfloat16
/// would be close enough, but at twice the rate its 16 products per 4
/// outputs take about as long as F(4x4)'s 36 per 16 in float32); and float32
/// Winograd, with 2.25-4x fewer products, measured faster on ResNet-50's
/// stride-1 3x3 layers than the bfloat16 implicit GEMM at twice the rate.
/// `bench/winograd_bf16_error.py` measures the rounding.
pub fn winograd_keeps_bf16(p: &ConvPlan) -> bool {
    winograd2(p) || winograd4_whole_batch(p)
}

/// How long the weights of a forward stay as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightUse {
    /// Used once: a training kernel (it changes every step) or dX's rotated one.
    Once,
    /// Kept from call to call (inference, a frozen kernel): worth packing and caching.
    Kept,
}

/// The forward's algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Winograd F(4x4, 3x3) over the whole batch, its weights transformed a
    /// block at a time as the products need them (`winograd_f4_whole.rs`).
    Winograd4Packing,
    /// Winograd F(4x4, 3x3) over the whole batch, with prepared weights.
    Winograd4Whole,
    /// Winograd F(4x4, 3x3) in blocks of bands of tiles (`winograd_f4.rs`).
    Winograd4Blocked,
    /// Winograd F(2x2, 3x3) in blocks of bands of tiles (`winograd.rs`).
    Winograd2,
    /// The packed kernel reading the input in place (`implicit.rs`).
    Implicit,
    /// im2col + GEMM by tiles of output rows, each on one thread.
    Tiled { tile_px: usize },
    /// A 1x1 stride-1 unpadded convolution: the input is the GEMM's left side.
    Pointwise,
    /// im2col + GEMM in chunks of images.
    Chunked,
}

impl Forward {
    /// The layout its prepared weights take.
    pub fn layout(self) -> Layout {
        match self {
            Forward::Winograd4Whole | Forward::Winograd4Blocked => Layout::Winograd4,
            Forward::Winograd2 => Layout::Winograd2,
            // (`Winograd4Packing` transforms as it goes and prepares nothing)
            _ => Layout::Groups,
        }
    }
}

/// The input gradient's algorithms.
#[derive(Debug, Clone, Copy)]
pub enum Dx {
    /// A convolution of dY with the rotated kernel, under this plan
    /// ([`transposed_plan`]), by whatever [`forward`] picks for it.
    Transposed(ConvPlan),
    /// A strided 1x1 convolution's: `dY · Wᵀ` written among zeros (`strided_pointwise_dx.rs`).
    StridedPointwise,
    /// A pointwise convolution's: `dY · Wᵀ`, one GEMM per group, added into
    /// the input's gradient so far where there is one.
    Pointwise,
    /// `dCols = dY · Wᵀ`, then col2im.
    Col2im,
}

impl Dx {
    /// Whether it adds into the input's gradient from other consumers
    /// instead of leaving the sum to the autograd engine.
    pub fn adds_into_gradient_so_far(&self) -> bool {
        matches!(self, Dx::Pointwise)
    }
}

/// The kernel gradient's algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dw {
    /// By F(4x4)'s transforms (`winograd_dw.rs`).
    Winograd4,
    /// By F(2x2)'s transforms (`winograd_dw.rs`).
    Winograd2,
    /// By F(4x4)'s transforms, the input channels split among the threads.
    Winograd4ByPositions,
    /// colsᵀ·dY tile by tile of output rows (`dw_tiled.rs`); `packed`: colsᵀ
    /// built in blocks for the packed kernel, else cols for the crate.
    Tiled { tile_px: usize, packed: bool },
    /// colsᵀ·dY, the rows of dW split among the threads (`dw_tiled.rs`).
    ByKernelRows,
    /// A pointwise convolution's `Xᵀ·dY`, X transposed a block at a time (`pointwise_dw.rs`).
    PointwiseTransposed,
    /// [`Dw::PointwiseTransposed`] with dX in the same pass over dY.
    PointwiseWithDx,
    /// A pointwise convolution's `Xᵀ·dY` with the rows of dW split among the threads.
    PointwiseFewRows,
    /// A pointwise convolution's `Xᵀ·dY`, one crate GEMM per group.
    Pointwise,
    /// colsᵀ·dY on the crate, im2col chunk by chunk.
    Chunked,
}

impl Dw {
    /// Whether it multiplies on the packed kernel's GEMM (so it can take
    /// the bfloat16 one): not the crate's, not Winograd's transforms.
    pub fn on_packed(self) -> bool {
        matches!(
            self,
            Dw::Tiled { packed: true, .. }
                | Dw::ByKernelRows
                | Dw::PointwiseTransposed
                | Dw::PointwiseWithDx
                | Dw::PointwiseFewRows
        )
    }
}

/// The forward's algorithm.
pub fn forward(p: &ConvPlan, gemm: Gemm, weights: WeightUse) -> Forward {
    if gemm == Gemm::Packed {
        if winograd4_whole_batch(p) {
            // 9-36 MiB of transformed weights: worth caching when kept, but
            // used once they are transformed block by block while in L2
            return match weights {
                WeightUse::Once => Forward::Winograd4Packing,
                WeightUse::Kept => Forward::Winograd4Whole,
            };
        }
        if winograd4_blocked(p) {
            return Forward::Winograd4Blocked;
        }
        if winograd2(p) {
            return Forward::Winograd2;
        }
        if implicit(p) {
            return Forward::Implicit;
        }
    }
    // the bfloat16 kernel reads the input in place as the float32 one does,
    // if its runs (kernel rows) hold whole pairs of k; else im2col's rows
    if gemm == Gemm::PackedBf16 && implicit(p) && (p.geo.kw * p.c).is_multiple_of(2) {
        return Forward::Implicit;
    }
    // tiles keep each tile's cols in L2; with too few to share among the
    // threads, whole GEMMs split over them instead
    if let Some(tile_px) = tile_pixels(p) {
        return Forward::Tiled { tile_px };
    }
    match p.pointwise {
        true => Forward::Pointwise,
        false => Forward::Chunked,
    }
}

/// dX's algorithm.
pub fn dx(p: &ConvPlan, gemm: Gemm) -> Dx {
    // a stride-1 convolution's dX is a convolution, which needs neither the
    // dCols matrix (kh*kw times the input) nor col2im
    if let Some(tp) = transposed_plan(p) {
        return Dx::Transposed(tp);
    }
    // a strided 1x1 convolution reads one pixel per output: dY·Wᵀ is dX at
    // those pixels, written tile by tile, so dCols never goes through memory
    if gemm != Gemm::Crate && strided_pointwise(p) {
        return Dx::StridedPointwise;
    }
    match p.pointwise {
        true => Dx::Pointwise,
        false => Dx::Col2im,
    }
}

/// dW's algorithm, `dx` being dX's (or `None` when the input takes no gradient).
pub fn dw(p: &ConvPlan, gemm: Gemm, dx: Option<Dx>) -> Dw {
    let packed = gemm != Gemm::Crate;
    // a Winograd convolution's dW by its transforms: fewer multiplications.
    // F(4x4)'s where its forward runs F(4x4) in blocks, else F(2x2)'s
    if gemm == Gemm::Packed && winograd2(p) {
        return match winograd4_blocked(p) {
            true => Dw::Winograd4,
            false => Dw::Winograd2,
        };
    }
    if !p.pointwise {
        // F(4x4) over the whole batch with an odd output side (ResNet's 7x7
        // stage): few tiles and wide channels, so the channels are split
        if gemm == Gemm::Packed && winograd4_whole_batch(p) {
            return Dw::Winograd4ByPositions;
        }
        // a dW of at least 64 x 64 on the packed kernel; thinner ones (the
        // MNIST CNN's) would pad its panels and do better on the crate
        let wide = packed && p.groups == 1 && p.kt() >= 64 && p.cout >= 64;
        if let Some(tile_px) = tile_pixels(p) {
            return Dw::Tiled {
                tile_px,
                packed: wide,
            };
        }
        // too few pixels to tile: each thread's partial dW would outweigh
        // its pixels, so the rows of dW are split instead
        if wide {
            return Dw::ByKernelRows;
        }
        return Dw::Chunked;
    }
    if packed && pointwise_transposed(p, gemm) {
        // with up to 256 input channels, a block's dX rows stay in L2 beside
        // dW's operands, so both come from one pass over dY
        return match matches!(dx, Some(Dx::Pointwise)) && p.c <= 256 {
            true => Dw::PointwiseWithDx,
            false => Dw::PointwiseTransposed,
        };
    }
    if packed && pointwise_few_rows(p, gemm) {
        return Dw::PointwiseFewRows;
    }
    Dw::Pointwise
}

/// Stride 1, 3x3, one group, an even output (whole 2x2 tiles), and at least
/// 64 channels each side (thinner GEMMs do not pay for the transforms) with
/// transformed weights (16 * C_in * C_out floats) of at most 4 MiB, small
/// enough to stream for every block of tiles.
fn winograd2(p: &ConvPlan) -> bool {
    let g = &p.geo;
    stride1_3x3(p)
        && g.out_h >= 2
        && g.out_w >= 2
        && g.out_h.is_multiple_of(2)
        && g.out_w.is_multiple_of(2)
        && 16 * p.c * p.cout <= 16 * 256 * 256
}

/// Where F(2x2) applies and F(4x4)'s weights (36 * C_in * C_out floats) stay
/// at most 2.25 MiB (128 -> 128 channels): F(4x4) then takes it, with fewer
/// multiplications still.
fn winograd4_blocked(p: &ConvPlan) -> bool {
    winograd2(p) && 36 * p.c * p.cout <= 36 * 128 * 128
}

/// Wider stride-1 3x3 convolutions (past [`winograd4_blocked`]'s channels,
/// any output side) with at least 32 tiles, so that each of the 36 weight
/// matrices is read for enough rows, and `V` and `M` of the whole batch
/// within 16 MiB, so they stay in L3 from one phase to the next.
fn winograd4_whole_batch(p: &ConvPlan) -> bool {
    let g = &p.geo;
    let tiles = p.n * g.out_h.div_ceil(4) * g.out_w.div_ceil(4);
    stride1_3x3(p)
        && 36 * p.c * p.cout > 36 * 128 * 128
        && tiles >= 32
        && 36 * tiles * (p.c + p.cout) * 4 <= 16 << 20
}

/// A 3x3 stride-1 undilated one-group convolution with 64 or more channels each side.
fn stride1_3x3(p: &ConvPlan) -> bool {
    let g = &p.geo;
    p.groups == 1
        && (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) == (3, 3, 1, 1, 1, 1)
        && p.c >= 64
        && p.cout >= 64
}

/// One group and undilated, so each kernel row of a window is one run of the
/// input, of at least 64 values: shorter runs (the 7x7 stem over RGB) do
/// better as im2col's long rows.
fn implicit(p: &ConvPlan) -> bool {
    let g = &p.geo;
    p.groups == 1 && !p.pointwise && g.dh == 1 && g.dw == 1 && g.kw * p.c >= 64
}

/// One group, a 1x1 window, a stride above 1 and no padding before the first pixel.
fn strided_pointwise(p: &ConvPlan) -> bool {
    let g = &p.geo;
    p.groups == 1
        && (g.kh, g.kw) == (1, 1)
        && (g.sh > 1 || g.sw > 1)
        && (g.pad_top, g.pad_left) == (0, 0)
}

/// Pixels of the batch below which a pointwise dW's rows do not split: four
/// blocks of `pointwise_dw`'s 256 rows.
const POINTWISE_MIN_ROWS: usize = 4 * 256;

/// One group, enough rows to split, 64 channels each side and, in float32,
/// 256 on one: narrower products do not pay for the transposes (in
/// bfloat16 they do, against the crate on rounded copies).
fn pointwise_transposed(p: &ConvPlan, gemm: Gemm) -> bool {
    p.pointwise
        && p.groups == 1
        && p.n * p.out_pixels() >= POINTWISE_MIN_ROWS
        && p.c.min(p.cout) >= 64
        && (p.c.max(p.cout) >= 256 || gemm.is_bf16())
}

/// One group, too few rows to split (ResNet's 7x7 stage), 64 or more output
/// channels and, in float32, at least as many input channels as output ones
/// (the other way round did worse than the crate); in bfloat16 either way,
/// since the crate's alternative multiplies rounded copies in float32.
fn pointwise_few_rows(p: &ConvPlan, gemm: Gemm) -> bool {
    p.pointwise
        && p.groups == 1
        && p.n * p.out_pixels() < POINTWISE_MIN_ROWS
        && p.cout >= 64
        && (p.c >= p.cout || gemm.is_bf16())
}

/// The plan of dX as a convolution of dY, for a stride-1, undilated, ungrouped,
/// non-1x1 convolution: input dY `(n, out_h, out_w, cout)`, kernel
/// `(kh, kw, cout, c)` (the rotated kernel), padding `kh-1-top` above and
/// whatever below makes the output `in_h` rows (likewise for columns).
pub fn transposed_plan(p: &ConvPlan) -> Option<ConvPlan> {
    let g = &p.geo;
    let unit = g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1;
    if !unit || p.groups != 1 || p.pointwise || g.kh == 0 || g.kw == 0 {
        return None;
    }
    let top = (g.kh - 1).checked_sub(g.pad_top)?;
    let left = (g.kw - 1).checked_sub(g.pad_left)?;
    // out = out_h + top + bottom - kh + 1 must be in_h
    let bottom = (g.in_h + g.kh - 1).checked_sub(g.out_h + top)?;
    let right = (g.in_w + g.kw - 1).checked_sub(g.out_w + left)?;
    let cfg = Conv2dConfig::default().with_padding(Padding::Explicit {
        top,
        bottom,
        left,
        right,
    });
    let tp = plan(
        &[p.n, g.out_h, g.out_w, p.cout],
        &[g.kh, g.kw, p.cout, p.c],
        None,
        &cfg,
    )
    .ok()?;
    (tp.geo.out_h == g.in_h && tp.geo.out_w == g.in_w).then_some(tp)
}
