//! Runs the algorithms that `dispatch.rs` chose (or a test names): prepares
//! the weights each needs and hands it its buffers. Decides nothing.

use super::algorithms::{
    dw_tiled, im2col, im2col_gemm, implicit, pointwise_dw, strided_pointwise_dx, winograd,
    winograd_dw, winograd_f4, winograd_f4_whole,
};
use super::dispatch::{self, Dw, Dx, Forward, Gemm, WeightUse};
use super::epilogue::EpilogueRef;
use super::geometry::ConvPlan;
use super::weights::{
    block, pack_groups, prepare, prepare_rotated, rotate_kernel, Layout, Weights,
};
use crate::kernels::buffers;
use crate::kernels::packed_gemm::PackedB;
use crate::precision::{rounded_bf16, Precision};

/// The forward by `alg` on `gemm`: `x` convolved with HWIO weights `w`
/// (or `prepared`, `w` already prepared in `alg`'s layout), then `bias` and
/// the epilogue `ep`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    alg: Forward,
    gemm: Gemm,
    x: &[f32],
    w: &[f32],
    prepared: Option<&[PackedB]>,
    bias: Option<&[f32]>,
    p: &ConvPlan,
    ep: &EpilogueRef,
) -> Vec<f32> {
    let rows = p.n * p.out_pixels();
    // every element is written by a non-accumulating GEMM or a transform
    let mut out = buffers::dirty(rows * p.cout);
    if rows == 0 {
        return out;
    }
    // the convolution's bias is the epilogue's first step
    let ep = &EpilogueRef { bias, ..*ep };
    if alg == Forward::Winograd4Packing {
        winograd_f4_whole::forward_packing(x, w, p, ep, &mut out);
        return out;
    }
    let owned;
    let packed = match prepared {
        Some(pk) => Some(pk),
        None => {
            owned = prepare(w, p, alg.layout(), gemm);
            owned.as_deref()
        }
    };
    let on_packed = || packed.expect("this algorithm runs on the packed kernel");
    let w_block = |gr: usize| match packed {
        Some(pk) => Weights::Packed(&pk[gr]),
        None => Weights::Plain(block(w, gr, p)),
    };
    match alg {
        Forward::Winograd4Packing => unreachable!("run above"),
        Forward::Winograd4Whole => winograd_f4_whole::forward(x, on_packed(), p, ep, &mut out),
        Forward::Winograd4Blocked => winograd_f4::forward(x, on_packed(), p, ep, &mut out),
        Forward::Winograd2 => winograd::forward(x, on_packed(), p, ep, &mut out),
        Forward::Implicit => implicit::forward(x, &on_packed()[0], p, ep, &mut out),
        Forward::Tiled { tile_px } => {
            im2col_gemm::forward_tiled(x, &w_block, p, ep, tile_px, &mut out)
        }
        Forward::Pointwise => im2col_gemm::forward_pointwise(x, &w_block, p, ep, &mut out),
        Forward::Chunked => im2col_gemm::forward_chunked(x, &w_block, p, ep, &mut out),
    }
    out
}

/// Gradients of the input and the kernel (each only when asked for), by the
/// algorithms [`dispatch`] picks. Where `dx_so_far` holds the input's
/// gradient from its other consumers and dX's algorithm
/// [`Dx::adds_into_gradient_so_far`], dX is added into it and it is returned
/// as dX; otherwise it is left for the caller to add. Under bfloat16 each
/// gradient runs on the kernel [`dispatch::dx_gemm`] / [`dispatch::dw_gemm`]
/// picks: the bfloat16 one on the operands as they are, else the float32
/// one on rounded copies (the portable definition).
pub fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    p: &ConvPlan,
    (want_dx, want_dw): (bool, bool),
    dx_so_far: &mut Option<Vec<f32>>,
    precision: Precision,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    if p.n * p.out_pixels() == 0 {
        // no window reads the input: zero gradients
        let dx_len = p.n * p.geo.in_h * p.geo.in_w * p.c;
        return (
            want_dx.then(|| buffers::zeroed(dx_len)),
            want_dw.then(|| buffers::zeroed(p.kg * p.cout)),
        );
    }
    if !precision.is_bf16() {
        let gemm = Gemm::of_cpu();
        let dx_alg = want_dx.then(|| dispatch::dx(p, gemm));
        let dw_alg = want_dw.then(|| dispatch::dw(p, gemm, dx_alg));
        return backward_with(dx_alg, dw_alg, gemm, x, w, dy, p, dx_so_far);
    }
    let fast = Gemm::PackedBf16;
    let fast_dx = want_dx && dispatch::dx_gemm(p, precision) == fast;
    let fast_dw = want_dw && dispatch::dw_gemm(p, precision) == fast;
    let (mut dx, mut dw) = (None, None);
    if fast_dx || fast_dw {
        let dx_alg = fast_dx.then(|| dispatch::dx(p, fast));
        let dw_alg = fast_dw.then(|| dispatch::dw(p, fast, dx_alg));
        (dx, dw) = backward_with(dx_alg, dw_alg, fast, x, w, dy, p, dx_so_far);
    }
    let (slow_dx, slow_dw) = (want_dx && !fast_dx, want_dw && !fast_dw);
    if slow_dx || slow_dw {
        // the portable definition: rounded operands through float32
        let gemm = Gemm::of_cpu();
        let xr = if slow_dw { rounded_bf16(x) } else { Vec::new() };
        let wr = if slow_dx { rounded_bf16(w) } else { Vec::new() };
        let gr = rounded_bf16(dy);
        let dx_alg = slow_dx.then(|| dispatch::dx(p, gemm));
        let dw_alg = slow_dw.then(|| dispatch::dw(p, gemm, dx_alg));
        let (sx, sw) = backward_with(dx_alg, dw_alg, gemm, &xr, &wr, &gr, p, dx_so_far);
        (dx, dw) = (dx.or(sx), dw.or(sw));
        [xr, wr, gr].into_iter().for_each(buffers::recycle);
    }
    (dx, dw)
}

/// The backward by the named algorithms (`None`: that gradient is not
/// wanted), for an output with at least one pixel.
#[allow(clippy::too_many_arguments)]
pub fn backward_with(
    dx_alg: Option<Dx>,
    dw_alg: Option<Dw>,
    gemm: Gemm,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    p: &ConvPlan,
    dx_so_far: &mut Option<Vec<f32>>,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let dx_len = p.n * p.geo.in_h * p.geo.in_w * p.c;
    let mut dw = None;
    let dx = match dx_alg {
        None => None,
        Some(Dx::Transposed(tp)) => Some(dx_transposed(dy, w, p, &tp, gemm)),
        Some(Dx::StridedPointwise) => Some(strided_pointwise_dx::dx(dy, w, p, gemm.is_bf16())),
        Some(Dx::Pointwise) => {
            // added into the gradient so far where there is one
            let so_far = dx_so_far.take_if(|g| g.len() == dx_len);
            let accumulate = so_far.is_some();
            // overwritten by the GEMM otherwise
            let mut dx = so_far.unwrap_or_else(|| buffers::dirty(dx_len));
            match (dw_alg, pack_groups(w, p, true, gemm)) {
                // one group: dX and dW in one pass over dY
                (Some(Dw::PointwiseWithDx), Some(wt)) => {
                    dw = Some(pointwise_dw::dx_and_dw(
                        x, dy, &wt[0], p, &mut dx, accumulate,
                    ));
                }
                (_, Some(wt)) => {
                    let wt_of = |gr: usize| Weights::Packed(&wt[gr]);
                    im2col_gemm::dx_pointwise(dy, &wt_of, p, &mut dx, accumulate);
                }
                (_, None) => {
                    let wt = im2col::pack_wt(w, p);
                    let wt_of = |gr: usize| Weights::Plain(im2col::wt_block(&wt, gr, p));
                    im2col_gemm::dx_pointwise(dy, &wt_of, p, &mut dx, accumulate);
                    buffers::recycle(wt);
                }
            }
            Some(dx)
        }
        Some(Dx::Col2im) => Some(match pack_groups(w, p, true, gemm) {
            Some(wt) => im2col_gemm::dx_col2im(dy, &|gr| Weights::Packed(&wt[gr]), p),
            None => {
                let wt = im2col::pack_wt(w, p);
                let wt_of = |gr: usize| Weights::Plain(im2col::wt_block(&wt, gr, p));
                let dx = im2col_gemm::dx_col2im(dy, &wt_of, p);
                buffers::recycle(wt);
                dx
            }
        }),
    };
    if dw.is_none() {
        dw = dw_alg.map(|alg| match alg {
            Dw::Winograd4 => winograd_dw::dw_f4(x, dy, p),
            Dw::Winograd2 => winograd_dw::dw_f2(x, dy, p),
            Dw::Winograd4ByPositions => winograd_dw::dw_by_positions(x, dy, p),
            Dw::Tiled { tile_px, packed } => {
                dw_tiled::dw_tiled(x, dy, p, tile_px, packed, gemm.is_bf16())
            }
            Dw::ByKernelRows => dw_tiled::dw_by_kernel_rows(x, dy, p, gemm.is_bf16()),
            // (without dX to share the pass with)
            Dw::PointwiseTransposed | Dw::PointwiseWithDx => {
                pointwise_dw::dw(x, dy, p, gemm.is_bf16())
            }
            Dw::PointwiseFewRows => pointwise_dw::dw_few_rows(x, dy, p, gemm.is_bf16()),
            Dw::Pointwise => im2col_gemm::dw_pointwise(x, dy, p),
            Dw::Chunked => im2col_gemm::dw_chunked(x, dy, p),
        });
    }
    (dx, dw)
}

/// dX as the forward of dY under the transposed plan `tp`, with the rotated
/// kernel: packed straight from `w` where the forward takes one packed block,
/// else rotated and prepared as the forward's algorithm needs.
fn dx_transposed(dy: &[f32], w: &[f32], p: &ConvPlan, tp: &ConvPlan, gemm: Gemm) -> Vec<f32> {
    let alg = dispatch::forward(tp, gemm, WeightUse::Once);
    let none = EpilogueRef::NONE;
    if gemm != Gemm::Crate && alg.layout() == Layout::Groups && alg != Forward::Winograd4Packing {
        // the packed weights are all the forward reads
        let pk = prepare_rotated(w, p, gemm);
        return forward(alg, gemm, dy, &[], Some(&pk), None, tp, &none);
    }
    let wr = rotate_kernel(w, p);
    let d = forward(alg, gemm, dy, &wr, None, None, tp, &none);
    buffers::recycle(wr);
    d
}
