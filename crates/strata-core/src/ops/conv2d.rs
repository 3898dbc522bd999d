//! 2-d convolution over NHWC input with an HWIO kernel `(kh, kw, in/groups, filters)`,
//! Keras `Conv2D` semantics ('same' pads extra after, groups split channels in blocks).
//!
//! Forward is im2col + GEMM: each output pixel is a row of `cols` holding its
//! receptive field ordered `(group, kh, kw, c)`, so group `g` is a contiguous column
//! block that multiplies the kernel reshaped to `(kh*kw*in_g, filters)`. A 1x1,
//! stride-1, unpadded convolution skips im2col: the input already is that matrix.
//! The batch is processed in chunks of images so `cols` stays under [`COLS_BUDGET_BYTES`].
//! On CPUs with AVX-512 the GEMMs run on strata's packed kernel with the weights
//! packed once (`weights.rs`); there a stride-1 3x3 convolution runs as Winograd
//! F(4x4, 3x3) (`winograd_f4.rs`: in blocks up to 128 channels, over the whole
//! batch for wider ones with enough tiles), else F(2x2, 3x3) (`winograd.rs`),
//! and others read their input in place instead of
//! through `cols` where the layout allows (`implicit.rs`).
//! Backward: `dW = colsᵀ·dY`, rebuilding `cols` tile by tile in cache where the
//! output has enough rows to tile ([`dw_tiled`]), else by blocks of kernel
//! rows on the packed kernel ([`dw_by_kernel_rows`]) or chunk by chunk; a
//! convolution that runs as Winograd gets its dW from Winograd's transforms
//! (`winograd_dw.rs`). dX of a
//! stride-1 convolution is a convolution of dY with the rotated kernel; a strided
//! 1x1 one's is dY·Wᵀ written among zeros (`strided_pointwise_dx.rs`); otherwise
//! `dCols = dY·Wᵀ` then a gather-form col2im (every input pixel sums the entries that
//! read it, in a fixed order). `db` = column sums of `dY`.

use crate::autograd::Upstream;
use crate::error::{fmt_shape, CoreError, Result};
use crate::kernels::buffers;
use crate::kernels::epilogue::{self, EpilogueRef};
use crate::kernels::gemm::{gemm, gemm_serial, MatRef};
use crate::kernels::moments::{ChannelMoments, MomentSink};
use crate::kernels::packed_gemm::{self, gemm_rows_serial, OnceB, PackedB, RowMajor};
use crate::kernels::parallel;
use crate::kernels::transpose::transpose;
use crate::ops::padding::{nhwc, Geometry2d, Padding};
use crate::tensor::Tensor;

mod implicit;
mod pointwise_dw;
mod strided_pointwise_dx;
mod weights;
mod winograd;
mod winograd_dw;
mod winograd_f4;
use weights::{mul, pack_groups, packed_kernel, prepare, prepare_rotated, Weights};

/// Largest im2col buffer (bytes) built at once; bigger batches go in chunks of images
/// (at least one). Small enough that the buffer is reused from chunk to chunk while
/// still warm (one 64 MiB buffer per call cost 2-3x in page faults and cache misses
/// on ResNet-sized layers), big enough that each GEMM has thousands of rows.
pub const COLS_BUDGET_BYTES: usize = 8 << 20;

/// Options of [`Tensor::conv2d`], named after Keras' `Conv2D` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// (rows, columns) step between windows.
    pub strides: (usize, usize),
    pub padding: Padding,
    /// `dilation_rate`: spacing between kernel taps. Keras refuses it with strides > 1.
    pub dilation: (usize, usize),
    /// Channel groups: input and filters split into `groups` independent blocks.
    pub groups: usize,
}

/// What [`Tensor::conv2d_fused`] applies to the convolution's output, per channel:
/// `relu?(y * scale + shift + residual)`; absent parts are skipped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// One factor per filter (an inference BatchNorm's `gamma / sqrt(var + eps)`).
    pub scale: Option<&'a [f32]>,
    /// One offset per filter (`beta - mean * scale`).
    pub shift: Option<&'a [f32]>,
    /// A tensor of the output's shape added afterwards (a residual connection).
    pub residual: Option<&'a Tensor>,
    pub relu: bool,
}

const NO_EPILOGUE: EpilogueRef<'static> = EpilogueRef {
    bias: None,
    scale: None,
    shift: None,
    residual: None,
    relu: false,
    moments: None,
};

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            strides: (1, 1),
            padding: Padding::Valid,
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dConfig {
    pub fn with_strides(mut self, sh: usize, sw: usize) -> Self {
        self.strides = (sh, sw);
        self
    }
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
    pub fn with_dilation(mut self, dh: usize, dw: usize) -> Self {
        self.dilation = (dh, dw);
        self
    }
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
}

/// Everything the kernels need, checked once.
#[derive(Debug, Clone, Copy)]
struct ConvPlan {
    n: usize,
    c: usize,
    cout: usize,
    groups: usize,
    cin_g: usize,
    cout_g: usize,
    /// Columns of one group's block: kh*kw*cin_g.
    kg: usize,
    geo: Geometry2d,
    /// 1x1, stride 1, no padding: the input is already the im2col matrix.
    pointwise: bool,
    /// Images per im2col chunk.
    chunk: usize,
}

impl ConvPlan {
    /// Width of a `cols` row: all groups' blocks.
    fn kt(&self) -> usize {
        self.groups * self.kg
    }
    fn out_pixels(&self) -> usize {
        self.geo.out_h * self.geo.out_w
    }
    /// Images per im2col chunk, at least 1, so `cols` stays within the budget.
    fn chunk_for_budget(&self, budget_bytes: usize) -> usize {
        let per_image = (self.out_pixels() * self.kt() * 4).max(1);
        (budget_bytes / per_image).clamp(1, self.n.max(1))
    }
}

fn plan(x: &[usize], k: &[usize], bias: Option<&[usize]>, cfg: &Conv2dConfig) -> Result<ConvPlan> {
    const OP: &str = "conv2d";
    let (n, h, w, c) = nhwc(OP, x)?;
    let [kh, kw, cin_g, cout] = *k else {
        return Err(CoreError::shape(
            OP,
            "a rank-4 HWIO kernel (kh, kw, in_channels/groups, filters)",
            fmt_shape(k),
        ));
    };
    let groups = cfg.groups;
    if groups == 0 {
        return Err(CoreError::arg(OP, "groups", "must be at least 1"));
    }
    if c % groups != 0 || cin_g * groups != c {
        return Err(CoreError::shape(
            OP,
            format!(
                "kernel (kh, kw, {}, filters) for input {} with groups {groups}",
                c / groups.max(1),
                fmt_shape(x)
            ),
            format!("kernel {}", fmt_shape(k)),
        ));
    }
    if cout % groups != 0 {
        return Err(CoreError::shape(
            OP,
            format!("a number of filters divisible by groups {groups}"),
            format!("kernel {}", fmt_shape(k)),
        ));
    }
    if let Some(b) = bias {
        if b != [cout] {
            return Err(CoreError::shape(
                OP,
                format!("bias {}", fmt_shape(&[cout])),
                fmt_shape(b),
            ));
        }
    }
    let (s, d) = (cfg.strides, cfg.dilation);
    if (s.0 > 1 || s.1 > 1) && (d.0 > 1 || d.1 > 1) {
        return Err(CoreError::arg(
            OP,
            "dilation",
            format!(
                "strides {s:?} > 1 together with dilation {d:?} > 1 is not supported (Keras refuses it)"
            ),
        ));
    }
    let geo = cfg.padding.resolve(OP, (h, w), (kh, kw), s, d)?;
    let pointwise = kh == 1 && kw == 1 && s == (1, 1) && geo.unpadded();
    let mut p = ConvPlan {
        n,
        c,
        cout,
        groups,
        cin_g,
        cout_g: cout / groups,
        kg: kh * kw * cin_g,
        geo,
        pointwise,
        chunk: 1,
    };
    p.chunk = p.chunk_for_budget(COLS_BUDGET_BYTES);
    Ok(p)
}

/// Fills `cols` (`n_img * out_h * out_w` rows of `groups*kg`) for images `n0..`.
fn im2col(x: &[f32], p: &ConvPlan, n0: usize, cols: &mut [f32]) {
    let row_len = p.geo.out_w * p.kt();
    parallel::for_each_chunk_mut(cols, row_len.max(1), |idx, row| {
        im2col_row(x, p, n0 * p.geo.out_h + idx, row)
    });
}

/// Fills `row` with the `out_w` im2col rows of output image row `image_row`
/// (`n * out_h + oh` over the whole batch).
fn im2col_row(x: &[f32], p: &ConvPlan, image_row: usize, row: &mut [f32]) {
    let g = &p.geo;
    let kt = p.kt();
    // Fast path: one group, undilated columns. For the output columns whose
    // window lies inside the input, each kernel row is one contiguous run of
    // kw*c values; copy them kernel row by kernel row, so the loop over output
    // columns is a plain strided copy of a fixed-length run.
    let ImageRow { xi, oh, lo, hi } = image_row_of(x, p, image_row);
    if lo < hi {
        let krow = g.kw * p.c;
        for ki in 0..g.kh {
            let dst = &mut row[lo * kt + ki * krow..];
            match g.in_row(oh, ki) {
                Some(ih) => {
                    let c0 = (lo * g.sw - g.pad_left) * p.c;
                    let src = &xi[ih * g.in_w * p.c + c0..(ih + 1) * g.in_w * p.c];
                    copy_runs(dst, kt, src, g.sw * p.c, krow, hi - lo);
                }
                None => (0..hi - lo).for_each(|j| dst[j * kt..j * kt + krow].fill(0.0)),
            }
        }
    }
    for ow in (0..lo).chain(hi.max(lo)..g.out_w) {
        im2col_pixel(xi, p, oh, ow, &mut row[ow * kt..(ow + 1) * kt]);
    }
}

/// Rows `ks` of the transpose of [`im2col_row`]: value `k` of output pixel `ow`
/// goes to `dst[(k - ks.start) * ldd + ow]`, for a GEMM that reads colsᵀ with
/// a unit step. Each kernel row of the interior pixels is one transpose of
/// input runs (a run per pixel, `sw * c` apart); the few border pixels go
/// through `pixel`, a scratch im2col row.
fn im2col_row_t(
    x: &[f32],
    p: &ConvPlan,
    image_row: usize,
    ks: std::ops::Range<usize>,
    dst: &mut [f32],
    ldd: usize,
    pixel: &mut Vec<f32>,
) {
    let g = &p.geo;
    let kt = p.kt();
    let ImageRow { xi, oh, lo, hi } = image_row_of(x, p, image_row);
    if lo < hi {
        let krow = g.kw * p.c;
        for ki in 0..g.kh {
            // the part of this kernel row's values inside `ks`
            let (a, b) = (
                ks.start.clamp(ki * krow, (ki + 1) * krow),
                ks.end.clamp(ki * krow, (ki + 1) * krow),
            );
            if a == b {
                continue;
            }
            let d0 = (a - ks.start) * ldd + lo;
            match g.in_row(oh, ki) {
                Some(ih) => {
                    let c0 = (lo * g.sw - g.pad_left) * p.c + (a - ki * krow);
                    let src = &xi[ih * g.in_w * p.c + c0..(ih + 1) * g.in_w * p.c];
                    transpose(src, hi - lo, b - a, g.sw * p.c, &mut dst[d0..], ldd);
                }
                None => (0..b - a).for_each(|k| dst[d0 + k * ldd..][..hi - lo].fill(0.0)),
            }
        }
    }
    pixel.resize(kt, 0.0);
    for ow in (0..lo).chain(hi.max(lo)..g.out_w) {
        im2col_pixel(xi, p, oh, ow, pixel);
        for (k, &v) in pixel[ks.clone()].iter().enumerate() {
            dst[k * ldd + ow] = v;
        }
    }
}

/// Where [`im2col_row`] and [`im2col_row_t`] read output image row
/// `n * out_h + oh`: image `n` (`xi`), the row `oh`, and the output columns
/// `lo..hi` whose kernel rows are contiguous runs of the input (none unless
/// the convolution has one group and undilated columns).
struct ImageRow<'a> {
    xi: &'a [f32],
    oh: usize,
    lo: usize,
    hi: usize,
}

fn image_row_of<'a>(x: &'a [f32], p: &ConvPlan, image_row: usize) -> ImageRow<'a> {
    let g = &p.geo;
    let img = g.in_h * g.in_w * p.c;
    let (n, oh) = (image_row / g.out_h, image_row % g.out_h);
    let (lo, hi) = if p.groups == 1 && g.dw == 1 && g.kw > 0 && p.c > 0 {
        interior_columns(g)
    } else {
        (0, 0)
    };
    ImageRow {
        xi: &x[n * img..(n + 1) * img],
        oh,
        lo,
        hi,
    }
}

/// The output columns `lo..hi` whose (undilated) windows lie inside the input's
/// columns, with no padding; `lo >= hi` when there are none.
fn interior_columns(g: &Geometry2d) -> (usize, usize) {
    let lo = g.pad_left.div_ceil(g.sw).min(g.out_w);
    // ow * sw - pad_left + kw <= in_w
    let hi = match (g.in_w + g.pad_left).checked_sub(g.kw) {
        Some(last) => (last / g.sw + 1).min(g.out_w),
        None => 0,
    };
    (lo, hi)
}

/// `count` runs of `len` values: run `j` from `src[j * src_step..]` to
/// `dst[j * dst_step..]`. Short runs (a kernel row over few channels) are
/// fixed-size moves the compiler unrolls instead of a `memcpy` call each
/// (21: a 7x7 kernel row over RGB, the stem of ResNet).
#[inline(always)]
fn copy_runs(
    dst: &mut [f32],
    dst_step: usize,
    src: &[f32],
    src_step: usize,
    len: usize,
    count: usize,
) {
    macro_rules! fixed {
        ($($n:literal)*) => {
            match len {
                $($n => {
                    for j in 0..count {
                        let d: &mut [f32; $n] = (&mut dst[j * dst_step..j * dst_step + $n]).try_into().unwrap();
                        let s: &[f32; $n] = (&src[j * src_step..j * src_step + $n]).try_into().unwrap();
                        *d = *s;
                    }
                    return;
                })*
                _ => {}
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8 9 12 16 21);
    for j in 0..count {
        dst[j * dst_step..j * dst_step + len]
            .copy_from_slice(&src[j * src_step..j * src_step + len]);
    }
}

/// One im2col row (output pixel `oh, ow` of image `xi`), any geometry.
fn im2col_pixel(xi: &[f32], p: &ConvPlan, oh: usize, ow: usize, dst: &mut [f32]) {
    let g = &p.geo;
    for ki in 0..g.kh {
        let ih = g.in_row(oh, ki);
        for kj in 0..g.kw {
            let tap = (ki * g.kw + kj) * p.cin_g;
            match (ih, g.in_col(ow, kj)) {
                (Some(ih), Some(iw)) => {
                    let src = (ih * g.in_w + iw) * p.c;
                    for gr in 0..p.groups {
                        let d0 = gr * p.kg + tap;
                        let s0 = src + gr * p.cin_g;
                        dst[d0..d0 + p.cin_g].copy_from_slice(&xi[s0..s0 + p.cin_g]);
                    }
                }
                _ => {
                    for gr in 0..p.groups {
                        let d0 = gr * p.kg + tap;
                        dst[d0..d0 + p.cin_g].fill(0.0);
                    }
                }
            }
        }
    }
}

/// Gather-form col2im: `dx` (images `n0..`, NHWC) is overwritten with, for every
/// input pixel, the sum of the `dcols` entries that read it, in a fixed (ki, kj)
/// order, each row cleared just before its sums (no separate zero-fill pass).
fn col2im(dcols: &[f32], p: &ConvPlan, dx: &mut [f32]) {
    let g = &p.geo;
    let kt = p.kt();
    let row_len = g.in_w * p.c;
    // stride 1, undilated: the output row/column of a tap is a plain subtraction
    let unit = g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1;
    parallel::for_each_chunk_mut(dx, row_len.max(1), |idx, row| {
        let (n, ih) = (idx / g.in_h, idx % g.in_h);
        // every sum starts from zero, cleared here while the row is in cache
        row.fill(0.0);
        if unit {
            // same (ki, iw, kj, group) order as the general loop below
            for ki in 0..g.kh {
                let Some(oh) = (ih + g.pad_top).checked_sub(ki).filter(|&o| o < g.out_h) else {
                    continue;
                };
                let rbase = (n * g.out_h + oh) * g.out_w;
                for (iw, dst) in row.chunks_exact_mut(p.c.max(1)).enumerate() {
                    let kj_lo = (iw + g.pad_left + 1).saturating_sub(g.out_w);
                    let kj_hi = (iw + g.pad_left + 1).min(g.kw);
                    for kj in kj_lo..kj_hi {
                        let ow = iw + g.pad_left - kj;
                        let tap = (ki * g.kw + kj) * p.cin_g;
                        for gr in 0..p.groups {
                            let s0 = (rbase + ow) * kt + gr * p.kg + tap;
                            dst[gr * p.cin_g..(gr + 1) * p.cin_g]
                                .iter_mut()
                                .zip(&dcols[s0..s0 + p.cin_g])
                                .for_each(|(d, s)| *d += s);
                        }
                    }
                }
            }
            return;
        }
        for ki in 0..g.kh {
            let Some(oh) = g.out_row(ih, ki) else {
                continue;
            };
            for iw in 0..g.in_w {
                let dst = &mut row[iw * p.c..(iw + 1) * p.c];
                for kj in 0..g.kw {
                    let Some(ow) = g.out_col(iw, kj) else {
                        continue;
                    };
                    let r = (n * g.out_h + oh) * g.out_w + ow;
                    let tap = (ki * g.kw + kj) * p.cin_g;
                    for gr in 0..p.groups {
                        let s0 = r * kt + gr * p.kg + tap;
                        let src = &dcols[s0..s0 + p.cin_g];
                        dst[gr * p.cin_g..(gr + 1) * p.cin_g]
                            .iter_mut()
                            .zip(src)
                            .for_each(|(d, s)| *d += s);
                    }
                }
            }
        }
    });
}

/// `Wᵀ` per group, packed contiguous: `(groups, cout_g, kg)`. A transpose in
/// 32x32 tiles (both sides stay in cache lines) with the output rows split over
/// threads: a straight gather strides through `w` by `cout` and cost ~8% of a
/// ResNet-50 training step on one core.
fn pack_wt(w: &[f32], p: &ConvPlan) -> Vec<f32> {
    const T: usize = 32;
    let mut wt = buffers::dirty(p.groups * p.cout_g * p.kg);
    let (kg, cout_g, cout) = (p.kg, p.cout_g, p.cout);
    if wt.is_empty() || kg == 0 {
        return wt;
    }
    // one chunk = T rows of wt (T filters of one group) or the rest of that group
    let rows_per_chunk = T.min(cout_g);
    parallel::for_each_chunk_mut(&mut wt, rows_per_chunk * kg, |ci, out| {
        let row0 = ci * rows_per_chunk; // global row = gr * cout_g + o
        let rows = out.len() / kg;
        for k0 in (0..kg).step_by(T) {
            let k1 = (k0 + T).min(kg);
            for r in 0..rows {
                let row = row0 + r;
                let (gr, o) = (row / cout_g, row % cout_g);
                let col = gr * cout_g + o;
                let dst = &mut out[r * kg + k0..r * kg + k1];
                for (k, d) in (k0..k1).zip(dst) {
                    *d = w[k * cout + col];
                }
            }
        }
    });
    wt
}

#[cfg(test)]
fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, p: &ConvPlan) -> Vec<f32> {
    forward_with(x, w, None, bias, p, &NO_EPILOGUE)
}

/// [`forward`] with an epilogue after the bias: reading the input in place
/// where the packed kernel can ([`implicit`]), else through im2col, tiled
/// where the output has enough rows, else in chunks of images, one GEMM each.
/// `packed` is `w` already prepared by [`prepare`] (else it is prepared here,
/// where the CPU runs the packed kernel): a stride-1 3x3 convolution that
/// [`winograd`] applies to runs as Winograd F(2x2, 3x3).
fn forward_with(
    x: &[f32],
    w: &[f32],
    packed: Option<&[PackedB]>,
    bias: Option<&[f32]>,
    p: &ConvPlan,
    ep: &EpilogueRef,
) -> Vec<f32> {
    let rows = p.n * p.out_pixels();
    // every element is written below by a non-accumulating GEMM
    let mut out = buffers::dirty(rows * p.cout);
    if rows == 0 {
        return out;
    }
    // the convolution's bias is the epilogue's first step
    let ep = &EpilogueRef { bias, ..*ep };
    let owned;
    let packed = match packed {
        Some(pk) => Some(pk),
        // weights used once: transformed and packed a share at a time
        None if packed_gemm::available()
            && fast_paths_allowed()
            && winograd_f4::packs_as_it_goes(p) =>
        {
            winograd_f4::forward_packing(x, w, p, ep, &mut out);
            return out;
        }
        None => {
            owned = prepare(w, p);
            owned.as_deref()
        }
    };
    // (`prepare` packed Winograd's transformed weights exactly when it applies)
    if let (Some(u), true) = (packed, winograd_f4::applies(p)) {
        winograd_f4::forward(x, u, p, ep, &mut out);
        return out;
    }
    if let (Some(u), true) = (packed, winograd::applies(p)) {
        winograd::forward(x, u, p, ep, &mut out);
        return out;
    }
    let w_block = |gr: usize| match packed {
        Some(pk) => Weights::Packed(&pk[gr]),
        None => Weights::Plain(weights::block(w, gr, p)),
    };
    if let (Some(pk), true) = (packed, implicit::applies(p)) {
        implicit::forward(x, &pk[0], p, ep, &mut out);
        return out;
    }
    if let Some(tile_px) = tile_pixels(p) {
        forward_tiled(x, &w_block, p, ep, tile_px, &mut out);
        return out;
    }
    if p.pointwise {
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
        epilogue::apply(&mut out, p.cout, 0, ep);
        return out;
    }
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
        // while this chunk's rows are still warm in cache
        let off = n0 * p.out_pixels() * p.cout;
        epilogue::apply(&mut out_c[..rows_c * p.cout], p.cout, off, ep);
    }
    buffers::recycle(cols);
    out
}

/// Bytes of im2col rows (the GEMM's left operand) per tile of [`forward_tiled`]:
/// a tile's `cols`, its slice of the kernel and its output rows stay in L2.
const TILE_COLS_BYTES: usize = 256 << 10;

/// Fewest output pixels per tile: every tile's GEMM packs the whole kernel
/// again, which costs about as much as `MIN_TILE_PX / 16` rows of arithmetic.
const MIN_TILE_PX: usize = 256;

/// Output pixels per tile of [`forward_tiled`] (whole output image rows), or
/// `None` when there would be too few tiles to keep every thread busy.
fn tile_pixels(p: &ConvPlan) -> Option<usize> {
    let ow = p.geo.out_w.max(1);
    let want = (TILE_COLS_BYTES / (p.kt().max(1) * 4)).max(MIN_TILE_PX);
    let tile_px = want.div_ceil(ow) * ow;
    let tiles = (p.n * p.out_pixels()).div_ceil(tile_px);
    (tiles >= 3 * crate::threads::num_threads()).then_some(tile_px)
}

/// The forward in tiles of output rows, each tile on one thread from start to
/// end: im2col of its rows into a thread-private buffer, one single-threaded
/// GEMM per group, then the epilogue (bias first) while the rows are in cache.
/// Nothing bigger than a tile travels through memory between the steps.
fn forward_tiled<'w>(
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

/// `dW = colsᵀ·dY` without the whole batch's im2col matrix. The output's image
/// rows are split into one contiguous part per thread; each part rebuilds its
/// im2col a tile at a time in the thread's private buffer (so it is still in
/// cache when the GEMM reads it) and accumulates into a private partial `dW`.
/// On the packed kernel the tile is built as colsᵀ ([`im2col_row_t`]), so the
/// kernel reads A with a unit step (read in place as column-major, each of
/// its loads fell on another cache line and page, and dW ran at 135-150
/// GFLOP/s where the forward's GEMMs run at 220), in blocks of rows small
/// enough to stay in L2 until the kernel reads them.
/// The partials are added in part order, so the result depends only on the
/// thread count. Saves the forward from keeping `cols` (kh*kw times the input)
/// alive until the backward.
fn dw_tiled(x: &[f32], dy: &[f32], p: &ConvPlan, tile_px: usize) -> Vec<f32> {
    let kt = p.kt();
    let ow = p.geo.out_w.max(1);
    let image_rows = p.n * p.geo.out_h;
    let tile_rows = (tile_px / ow).max(1);
    let parts = crate::threads::num_threads().clamp(1, image_rows.max(1));
    let dw_len = p.kg * p.cout;
    // the packed kernel, where it runs, for one group (C is then all of dW)
    // and a dW of at least 64 x 64 (thinner ones, as the MNIST CNN's, do
    // better on the crate: they would pad dY's panels and rows of the block)
    let packed = p.groups == 1
        && kt >= 64
        && p.cout >= 64
        && packed_gemm::available()
        && fast_paths_allowed();
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
                    let dy_tile = OnceB::of(dy_tile, false);
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

/// Whether [`dw_by_kernel_rows`] computes this convolution's dW: one with
/// too few output pixels for [`dw_tiled`]'s tiles ([`tile_pixels`]), one
/// group and a dW of at least 64 x 64, on the packed kernel.
fn by_kernel_rows(p: &ConvPlan) -> bool {
    p.groups == 1
        && p.kt() >= 64
        && p.cout >= 64
        && tile_pixels(p).is_none()
        && packed_gemm::available()
        && fast_paths_allowed()
}

/// `dW = colsᵀ·dY` for a convolution with few output pixels and a tall
/// kernel matrix (ResNet's stride-2 3x3 into the 7x7 stage at batch 8: 392
/// pixels, 4608 kernel rows). Split by pixels, as [`dw_tiled`] is, each
/// thread would add its few pixels into a whole partial dW of its own (9
/// MiB there) for the parts to be added up; here the rows of dW are split
/// among the threads instead (`packed_gemm::gemm_built_rows`), each block's
/// rows of colsᵀ over every pixel (a few hundred KiB at most, in L2) times
/// all of dY (read in place, or packed once). Every element sums over all the
/// pixels in order, whatever the split. 14x14 512 -> 512 stride 2 at batch
/// 8, dW alone, best of 11, alternated with the old path three times:
/// 10.5-11.0 -> 9.2 ms (it ran on the `gemm` crate through the whole
/// batch's im2col).
fn dw_by_kernel_rows(x: &[f32], dy: &[f32], p: &ConvPlan) -> Vec<f32> {
    let (kt, cout) = (p.kt(), p.cout);
    let rows = p.n * p.out_pixels();
    let ow = p.geo.out_w;
    let mut dw = buffers::dirty(kt * cout);
    let dy = OnceB::of(MatRef::new(&dy[..rows * cout], rows, cout), true);
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

thread_local! {
    /// Each worker thread's im2col tile, kept between calls (at most a few
    /// hundred KiB: one tile of [`TILE_COLS_BYTES`], or more for one image row).
    static TILE_COLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each worker thread's block of colsᵀ for [`dw_tiled`].
    static TILE_COLS_T: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Gradients of the input and the kernel (each only when asked for). Where
/// `dx_so_far` holds the input's gradient from its other consumers and the
/// path allows (a 1x1 stride-1 convolution's dX, one GEMM), dX is added into
/// it and it is returned as dX; otherwise it is left for the caller to add.
fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    p: &ConvPlan,
    (want_dx, want_dw): (bool, bool),
    dx_so_far: &mut Option<Vec<f32>>,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let rows = p.n * p.out_pixels();
    // A stride-1 convolution's dX is itself a convolution: of dY with the
    // rotated kernel. The tiled forward computes it without the dcols matrix
    // (kh*kw times the input's size) and its col2im.
    let direct_dx = match want_dx && rows > 0 && fast_paths_allowed() {
        true => transposed_plan(p).map(|tp| match prepare_rotated(w, p, &tp) {
            // the packed weights are all the forward reads
            Some(pk) => forward_with(dy, &[], Some(&pk), None, &tp, &NO_EPILOGUE),
            None => {
                let wr = rotate_kernel(w, p);
                let d = forward_with(dy, &wr, None, None, &tp, &NO_EPILOGUE);
                buffers::recycle(wr);
                d
            }
        }),
        false => None,
    };
    // a strided 1x1 convolution's dX: dY · Wᵀ written among zeros, tile by tile
    let direct_dx = match direct_dx {
        None if want_dx && rows > 0 && fast_paths_allowed() && strided_pointwise_dx::applies(p) => {
            Some(strided_pointwise_dx::dx(dy, w, p))
        }
        d => d,
    };
    let direct = direct_dx.is_some();
    let want_dx = want_dx && !direct;
    let dx_len = p.n * p.geo.in_h * p.geo.in_w * p.c;
    // overwritten by the pointwise GEMM, or cleared row by row by col2im;
    // with no output rows, no window reads the input: zeros
    // the pointwise GEMM adds dX into the gradient so far instead
    let dx_added =
        p.pointwise && want_dx && rows > 0 && dx_so_far.as_ref().is_some_and(|g| g.len() == dx_len);
    #[cfg(test)]
    DX_ADDED.with(|n| n.set(n.get() + usize::from(dx_added)));
    let mut dx = match dx_added {
        true => dx_so_far.take(),
        false => want_dx.then(|| match rows {
            0 => buffers::zeroed(dx_len),
            _ => buffers::dirty(dx_len),
        }),
    };
    if direct {
        dx = direct_dx;
    }
    // dW tile by tile where the output has enough rows
    let winograd_dw = want_dw
        && rows > 0
        && fast_paths_allowed()
        && packed_gemm::available()
        && winograd::applies(p);
    let pointwise_dw =
        want_dw && rows > 0 && p.pointwise && fast_paths_allowed() && pointwise_dw::applies(p);
    let pointwise_dx_dw = pointwise_dw && want_dx && pointwise_dw::dx_in_the_same_pass(p);
    let tiled_dw = match (want_dw, rows > 0, p.pointwise, tile_pixels(p)) {
        _ if winograd_dw => Some(winograd_dw::dw(x, dy, p)),
        (true, true, false, _) if fast_paths_allowed() && winograd_dw::by_positions(p) => {
            Some(winograd_dw::dw_by_positions(x, dy, p))
        }
        (true, true, false, Some(tile_px)) if fast_paths_allowed() => {
            Some(dw_tiled(x, dy, p, tile_px))
        }
        (true, true, false, None) if by_kernel_rows(p) => Some(dw_by_kernel_rows(x, dy, p)),
        // a 1x1 convolution's input is colsᵀ already: transposed a block at a
        // time (with dX in the same pass over dY where that pays, below)
        (true, true, true, _) if pointwise_dw && !pointwise_dx_dw => {
            Some(pointwise_dw::dw(x, dy, p))
        }
        // too few rows to split: the rows of dW split instead
        (true, true, true, _) if fast_paths_allowed() && pointwise_dw::few_rows(p) => {
            Some(pointwise_dw::dw_few_rows(x, dy, p))
        }
        _ => None,
    };
    let want_dw = want_dw && tiled_dw.is_none() && !pointwise_dx_dw;
    let mut dw = match tiled_dw {
        Some(d) => Some(d),
        // the GEMMs below overwrite it (the first chunk does not accumulate);
        // with no rows the gradient is all zeros
        None if rows == 0 => want_dw.then(|| buffers::zeroed(p.kg * p.cout)),
        None => want_dw.then(|| buffers::dirty(p.kg * p.cout)),
    };
    if rows == 0 {
        return (dx, dw);
    }
    // Wᵀ per group: packed for the packed kernel, else transposed in place
    let wt_packed = if want_dx {
        pack_groups(w, p, true)
    } else {
        None
    };
    let wt = (want_dx && wt_packed.is_none()).then(|| pack_wt(w, p));
    let wt_of = |gr: usize| match (&wt_packed, &wt) {
        (Some(pk), _) => Some(Weights::Packed(&pk[gr])),
        (None, Some(wt)) => Some(Weights::Plain(wt_block(wt, gr, p))),
        (None, None) => None,
    };
    let dy_block = |gr: usize, r0: usize, nrows: usize| {
        MatRef::strided(&dy[r0 * p.cout + gr * p.cout_g..], nrows, p.cout_g, p.cout)
    };
    if pointwise_dx_dw {
        // one group (`pointwise_dw::applies`): dX and dW in one pass over dY
        match (dx.as_mut(), wt_packed.as_ref().and_then(|w| w.first())) {
            (Some(d), Some(wt)) => {
                dw = Some(pointwise_dw::dx_and_dw(x, dy, wt, p, d, dx_added));
                return (dx, dw);
            }
            // (Wᵀ is packed wherever the dW path runs) dW alone, dX below
            _ => dw = Some(pointwise_dw::dw(x, dy, p)),
        }
    }
    if p.pointwise {
        for gr in 0..p.groups {
            if let Some(dw) = dw.as_mut().filter(|_| want_dw) {
                let a = MatRef::strided(&x[gr * p.cin_g..], rows, p.cin_g, p.c).t();
                gemm(
                    a,
                    dy_block(gr, 0, rows),
                    &mut dw[gr * p.cout_g..],
                    p.cout,
                    false,
                );
            }
            if let (Some(dx), Some(wt)) = (dx.as_mut(), wt_of(gr)) {
                let dx = &mut dx[gr * p.cin_g..];
                mul(dy_block(gr, 0, rows), wt, dx, p.c, dx_added, false);
            }
        }
        if let Some(wt) = wt {
            buffers::recycle(wt);
        }
        return (dx, dw);
    }
    let per = p.chunk;
    let kt = p.kt();
    // both fully overwritten per chunk: by im2col, and by one non-accumulating GEMM
    // per group (the groups' column blocks tile each row)
    let mut cols = if want_dw {
        buffers::dirty(per * p.out_pixels() * kt)
    } else {
        Vec::new()
    };
    let mut dcols = if want_dx {
        buffers::dirty(per * p.out_pixels() * kt)
    } else {
        Vec::new()
    };
    let img = p.geo.in_h * p.geo.in_w * p.c;
    for n0 in (0..p.n).step_by(per) {
        let n_img = (p.n - n0).min(per);
        let rows_c = n_img * p.out_pixels();
        let r0 = n0 * p.out_pixels();
        if let (true, Some(dw)) = (want_dw, dw.as_mut()) {
            let cols = &mut cols[..rows_c * kt];
            im2col(x, p, n0, cols);
            for gr in 0..p.groups {
                let a = MatRef::strided(&cols[gr * p.kg..], rows_c, p.kg, kt).t();
                gemm(
                    a,
                    dy_block(gr, r0, rows_c),
                    &mut dw[gr * p.cout_g..],
                    p.cout,
                    n0 > 0,
                );
            }
        }
        if let Some(dx) = dx.as_mut().filter(|_| want_dx) {
            let dcols = &mut dcols[..rows_c * kt];
            for (gr, wt) in (0..p.groups).filter_map(|gr| Some((gr, wt_of(gr)?))) {
                let dc = &mut dcols[gr * p.kg..];
                mul(dy_block(gr, r0, rows_c), wt, dc, kt, false, false);
            }
            col2im(dcols, p, &mut dx[n0 * img..(n0 + n_img) * img]);
        }
    }
    buffers::recycle(cols);
    buffers::recycle(dcols);
    if let Some(wt) = wt {
        buffers::recycle(wt);
    }
    (dx, dw)
}

#[cfg(test)]
thread_local! {
    /// Tests turn the backward's fast paths (direct dX, tiled dW) off to compare
    /// them with the reference ones (col2im, one im2col matrix per chunk).
    static REFERENCE_PATHS_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
thread_local! {
    /// Backwards that added dX into the gradient so far, for a test to see
    /// that the path ran.
    static DX_ADDED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn fast_paths_allowed() -> bool {
    #[cfg(test)]
    {
        !REFERENCE_PATHS_ONLY.with(|c| c.get())
    }
    #[cfg(not(test))]
    {
        true
    }
}

/// The plan of dX as a convolution of dY, for a stride-1, undilated, ungrouped,
/// non-1x1 convolution: input dY `(n, out_h, out_w, cout)`, kernel
/// `(kh, kw, cout, c)` (see [`rotate_kernel`]), padding `kh-1-top` above and
/// whatever below makes the output `in_h` rows (likewise for columns).
fn transposed_plan(p: &ConvPlan) -> Option<ConvPlan> {
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

/// `W_rot[ki, kj, o, i] = W[kh-1-ki, kw-1-kj, i, o]`: the kernel that convolves dY
/// into dX (spatially flipped, input and output channels swapped), a
/// transpose per tap, the taps in parallel.
fn rotate_kernel(w: &[f32], p: &ConvPlan) -> Vec<f32> {
    use rayon::prelude::*;
    let (kh, kw, ci, co) = (p.geo.kh, p.geo.kw, p.c, p.cout);
    let mut wr = buffers::dirty(w.len());
    if ci * co == 0 {
        return wr;
    }
    let tap = |(t, dst): (usize, &mut [f32])| {
        let (ki, kj) = (t / kw, t % kw);
        let src = &w[((kh - 1 - ki) * kw + (kw - 1 - kj)) * ci * co..][..ci * co];
        transpose(src, ci, co, co, dst, ci);
    };
    crate::threads::install(|| wr.par_chunks_mut(co * ci).enumerate().for_each(tap));
    wr
}

fn wt_block<'a>(wt: &'a [f32], gr: usize, p: &ConvPlan) -> MatRef<'a> {
    MatRef::new(&wt[gr * p.cout_g * p.kg..], p.cout_g, p.kg)
}

/// Column sums of a `rows x cols` row-major matrix (the bias gradient).
/// Blocks of 1024 rows are summed in parallel, then the blocks' sums in order, so
/// the result does not depend on the thread count.
pub(crate) fn column_sums(g: &[f32], cols: usize) -> Vec<f32> {
    use rayon::prelude::*;
    const BLOCK_ROWS: usize = 1024;
    let cols = cols.max(1);
    let block = |b: &[f32]| {
        let mut s = vec![0.0f32; cols];
        for row in b.chunks_exact(cols) {
            s.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
        s
    };
    let partials: Vec<Vec<f32>> = if g.len() > BLOCK_ROWS * cols {
        crate::threads::install(|| g.par_chunks(BLOCK_ROWS * cols).map(block).collect())
    } else {
        vec![block(g)]
    };
    let mut s = vec![0.0; cols];
    for p in partials {
        s.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    s
}

impl Tensor {
    /// Keras `Conv2D`: NHWC `self` (N, H, W, C) with an HWIO `kernel`
    /// (kh, kw, C/groups, filters) and an optional `bias` (filters,) gives
    /// (N, OH, OW, filters). Errors name the op and the mismatched shapes.
    pub fn conv2d(
        &self,
        kernel: &Tensor,
        bias: Option<&Tensor>,
        config: Conv2dConfig,
    ) -> Result<Tensor> {
        self.conv2d_act(kernel, bias, config, false, None)
    }

    /// [`Tensor::conv2d`] that also returns the per-channel moments (count,
    /// mean, squared deviations) of its output, taken in the epilogue while
    /// each block of rows is in cache: a training BatchNorm after it
    /// ([`Tensor::batch_norm_train_with`]) then needs no sweep of its own for
    /// its batch statistics. The output and gradients are those of `conv2d`.
    pub fn conv2d_moments(
        &self,
        kernel: &Tensor,
        bias: Option<&Tensor>,
        config: Conv2dConfig,
    ) -> Result<(Tensor, ChannelMoments)> {
        let c = kernel.shape().last().copied().unwrap_or(0);
        let sink = MomentSink::new(c);
        let y = self.conv2d_act(kernel, bias, config, false, Some(&sink))?;
        Ok((y, sink.finish()))
    }

    /// `relu(conv2d(x, kernel) + bias)` as one op (Keras `Conv2D(activation="relu")`):
    /// the ReLU runs in the convolution's epilogue, and the backward keeps a
    /// bit mask of the positive outputs instead of the pre-activation. Output and
    /// gradients are bitwise those of `conv2d` followed by `relu`.
    pub fn conv2d_relu(
        &self,
        kernel: &Tensor,
        bias: Option<&Tensor>,
        config: Conv2dConfig,
    ) -> Result<Tensor> {
        self.conv2d_act(kernel, bias, config, true, None)
    }

    fn conv2d_act(
        &self,
        kernel: &Tensor,
        bias: Option<&Tensor>,
        config: Conv2dConfig,
        relu: bool,
        moments: Option<&MomentSink>,
    ) -> Result<Tensor> {
        let p = plan(
            self.shape(),
            kernel.shape(),
            bias.map(|b| b.shape()),
            &config,
        )?;
        let ep = EpilogueRef {
            relu,
            moments,
            ..NO_EPILOGUE
        };
        let data = {
            let bd = bias.map(|b| b.data());
            let w = kernel.data();
            let packed = packed_kernel(kernel, &w, &p);
            forward_with(
                &self.data(),
                &w,
                packed.as_deref().map(|v| &v[..]),
                bd.as_deref().map(|v| &v[..]),
                &p,
                &ep,
            )
        };
        let mut inputs = vec![self, kernel];
        inputs.extend(bias);
        // the ReLU's gradient rule needs only where the output is positive
        let mask = (relu && crate::autograd::should_record(&inputs))
            .then(|| parallel::positive_mask(&data));
        let out_shape = vec![p.n, p.geo.out_h, p.geo.out_w, p.cout];
        let (x, w, has_bias) = (self.clone(), kernel.clone(), bias.is_some());
        let b_grad = bias.is_some_and(|b| b.requires_grad());
        Ok(Tensor::from_op_accumulating(
            data,
            out_shape,
            if relu { "conv2d_relu" } else { "conv2d" },
            &inputs,
            move |up, acc| {
                // through the ReLU first: its own rule, g * 1 where y > 0, else
                // g * 0, over the gradient itself when no one else holds it
                let masked = match (mask, up) {
                    (Some(m), Upstream::Owned(mut g)) => {
                        parallel::masked_in_place(&mut g, &m);
                        Upstream::Owned(g)
                    }
                    (Some(m), Upstream::Shared(g)) => Upstream::Owned(parallel::masked(&g, &m)),
                    (None, up) => up,
                };
                let g: &[f32] = masked.as_slice();
                let (dx, dw) = backward(
                    &x.data(),
                    &w.data(),
                    g,
                    &p,
                    (x.requires_grad(), w.requires_grad()),
                    &mut acc[0],
                );
                let mut grads = vec![dx, dw];
                if has_bias {
                    grads.push(b_grad.then(|| column_sums(g, p.cout)));
                }
                if let Upstream::Owned(gm) = masked {
                    buffers::recycle(gm);
                }
                grads
            },
        ))
    }

    /// Inference-only convolution with its epilogue fused in:
    /// `y = relu?((conv2d(x, kernel) + bias) * scale + shift + residual)` per output
    /// channel, computed in one sweep over each chunk of output rows while they are
    /// still in cache. This is Conv2D -> BatchNorm (inference) -> [Add] -> [ReLU]
    /// with the BatchNorm as its affine map ([`crate::ops::batch_norm::affine_of`]);
    /// the result is bitwise that of the separate ops. It records no gradient, so
    /// it refuses inputs that would need one (use the separate ops to train).
    pub fn conv2d_fused(
        &self,
        kernel: &Tensor,
        bias: Option<&Tensor>,
        config: Conv2dConfig,
        ep: &Epilogue,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d_fused";
        let mut recorded = vec![self, kernel];
        recorded.extend(bias);
        recorded.extend(ep.residual);
        if crate::autograd::should_record(&recorded) {
            return Err(CoreError::arg(
                OP,
                "inputs",
                "an input requires grad: the fused op records no gradient; \
                 call it under no_grad or use conv2d and the separate ops",
            ));
        }
        let p = plan(
            self.shape(),
            kernel.shape(),
            bias.map(|b| b.shape()),
            &config,
        )?;
        let out_shape = vec![p.n, p.geo.out_h, p.geo.out_w, p.cout];
        for (name, v) in [("scale", ep.scale), ("shift", ep.shift)] {
            if let Some(v) = v {
                if v.len() != p.cout {
                    return Err(CoreError::shape(
                        OP,
                        format!("{name} ({},) for {} filters", p.cout, p.cout),
                        fmt_shape(&[v.len()]),
                    ));
                }
            }
        }
        if let Some(r) = ep.residual {
            if r.shape() != out_shape {
                return Err(CoreError::shape(
                    OP,
                    format!("residual {} (the output's shape)", fmt_shape(&out_shape)),
                    fmt_shape(r.shape()),
                ));
            }
        }
        let data = {
            let bd = bias.map(|b| b.data());
            let rd = ep.residual.map(|r| r.data());
            let epr = EpilogueRef {
                bias: None,
                scale: ep.scale,
                shift: ep.shift,
                residual: rd.as_deref().map(|v| &v[..]),
                relu: ep.relu,
                moments: None,
            };
            let (x, w) = (self.data(), kernel.data());
            let packed = packed_kernel(kernel, &w, &p);
            let packed = packed.as_deref().map(|v| &v[..]);
            forward_with(&x, &w, packed, bd.as_deref().map(|v| &v[..]), &p, &epr)
        };
        Tensor::from_vec(data, &out_shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::rng::Rng;

    /// The obviously-correct oracle: seven nested loops, f64 sums, explicit padding checks.
    fn conv_reference(
        x: &[f32],
        xs: (usize, usize, usize, usize),
        w: &[f32],
        ks: (usize, usize, usize, usize),
        bias: Option<&[f32]>,
        g: &Geometry2d,
        groups: usize,
    ) -> Vec<f32> {
        let (n, h, wd, c) = xs;
        let (kh, kw, cin_g, cout) = ks;
        let cout_g = cout / groups;
        let mut out = vec![0.0; n * g.out_h * g.out_w * cout];
        for b in 0..n {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    for o in 0..cout {
                        let gr = o / cout_g;
                        let mut s = bias.map_or(0.0, |b| b[o] as f64);
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let ih = (oh * g.sh + ki * g.dh) as isize - g.pad_top as isize;
                                let iw = (ow * g.sw + kj * g.dw) as isize - g.pad_left as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                    continue;
                                }
                                for ci in 0..cin_g {
                                    let xc = gr * cin_g + ci;
                                    let xv = x[((b * h + ih as usize) * wd + iw as usize) * c + xc];
                                    let wv = w[((ki * kw + kj) * cin_g + ci) * cout + o];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                        out[((b * g.out_h + oh) * g.out_w + ow) * cout + o] = s as f32;
                    }
                }
            }
        }
        out
    }

    fn rand_t(shape: &[usize], rng: &mut Rng) -> Tensor {
        Tensor::rand_normal(shape, 0.0, 1.0, rng)
    }

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
    }

    /// `close` measured against the size of the whole result as well as of
    /// each value: the error of a sum of many products (and Winograd
    /// F(4x4, 3x3)'s, about 2e-5 of them) scales with the sum's terms, not
    /// with its value, which may be near zero.
    fn close_to_scale(a: &[f32], b: &[f32], tol: f32) -> bool {
        let rms = (b.iter().map(|&y| (y * y) as f64).sum::<f64>() / b.len().max(1) as f64).sqrt();
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs() + rms as f32))
    }

    #[test]
    fn fast_conv_matches_reference_on_random_configs() {
        let mut rng = Rng::new(11);
        let mut pointwise_seen = 0;
        for case in 0..200 {
            let groups = [1, 1, 2, 3][rng.below(4)];
            let cin_g = 1 + rng.below(3);
            let cout_g = 1 + rng.below(3);
            let (kh, kw) = (1 + rng.below(4), 1 + rng.below(4));
            let strided = rng.below(2) == 0;
            let (s, d) = if strided {
                ((1 + rng.below(3), 1 + rng.below(3)), (1, 1))
            } else {
                ((1, 1), (1 + rng.below(3), 1 + rng.below(3)))
            };
            let padding = match rng.below(4) {
                0 => Padding::Valid,
                1 | 2 => Padding::Same,
                // up to more padding than the kernel is wide: windows wholly in it
                _ => Padding::Explicit {
                    top: rng.below(6),
                    bottom: rng.below(3),
                    left: rng.below(6),
                    right: rng.below(6),
                },
            };
            let (h, w) = (
                (kh - 1) * d.0 + 1 + rng.below(6),
                (kw - 1) * d.1 + 1 + rng.below(6),
            );
            let n = 1 + rng.below(3);
            let c = cin_g * groups;
            let cout = cout_g * groups;
            let x = rand_t(&[n, h, w, c], &mut rng);
            let k = rand_t(&[kh, kw, cin_g, cout], &mut rng);
            let b = rand_t(&[cout], &mut rng);
            let cfg = Conv2dConfig {
                strides: s,
                padding,
                dilation: d,
                groups,
            };
            let p = plan(x.shape(), k.shape(), Some(b.shape()), &cfg).unwrap();
            pointwise_seen += p.pointwise as usize;
            let got = x.conv2d(&k, Some(&b), cfg).unwrap();
            let want = conv_reference(
                &x.data(),
                (n, h, w, c),
                &k.data(),
                (kh, kw, cin_g, cout),
                Some(&b.data()),
                &p.geo,
                groups,
            );
            assert_eq!(got.shape(), &[n, p.geo.out_h, p.geo.out_w, cout]);
            assert!(close(&got.data(), &want, 1e-4), "case {case}: {cfg:?}");
        }
        // the 1x1 fast path, with and without groups, explicitly
        for groups in [1, 2] {
            let x = rand_t(&[2, 3, 4, 2 * groups], &mut rng);
            let k = rand_t(&[1, 1, 2, 3 * groups], &mut rng);
            let cfg = Conv2dConfig::default().with_groups(groups);
            let p = plan(x.shape(), k.shape(), None, &cfg).unwrap();
            assert!(p.pointwise);
            pointwise_seen += 1;
            let want = conv_reference(
                &x.data(),
                (2, 3, 4, 2 * groups),
                &k.data(),
                (1, 1, 2, 3 * groups),
                None,
                &p.geo,
                groups,
            );
            assert!(close(&x.conv2d(&k, None, cfg).unwrap().data(), &want, 1e-4));
        }
        assert!(pointwise_seen >= 2);
    }

    /// Backward against the reference's gradients, computed as finite-free loops:
    /// dX and dW of `sum(conv(x, w) * dy)` by differentiating the reference by hand.
    #[test]
    fn backward_matches_reference_loops_on_random_configs() {
        let mut rng = Rng::new(12);
        for case in 0..40 {
            let groups = [1, 2][rng.below(2)];
            let (cin_g, cout_g) = (1 + rng.below(3), 1 + rng.below(3));
            let (kh, kw) = (1 + rng.below(3), 1 + rng.below(3));
            let s = (1 + rng.below(2), 1 + rng.below(3));
            let explicit = Padding::Explicit {
                top: rng.below(3),
                bottom: rng.below(3),
                left: rng.below(3),
                right: rng.below(3),
            };
            let padding = [
                Padding::Same,
                Padding::Valid,
                Padding::symmetric(1),
                explicit,
            ][rng.below(4)];
            // the last cases are big enough for the tiled paths (forward, and dX of a
            // stride-1 convolution computed as a convolution of dY)
            let big = case >= 36;
            let (h, w) = (
                kh + rng.below(5) + 40 * big as usize,
                kw + rng.below(5) + 30 * big as usize,
            );
            let (n, c, cout) = (1 + rng.below(2), cin_g * groups, cout_g * groups);
            let x = rand_t(&[n, h, w, c], &mut rng).requires_grad_(true);
            let k = rand_t(&[kh, kw, cin_g, cout], &mut rng).requires_grad_(true);
            let cfg = Conv2dConfig::default()
                .with_strides(s.0, s.1)
                .with_padding(padding)
                .with_groups(groups);
            let y = x.conv2d(&k, None, cfg).unwrap();
            let dy = rand_t(y.shape(), &mut rng);
            y.mul(&dy).unwrap().sum_all().backward().unwrap();
            let g = plan(x.shape(), k.shape(), None, &cfg).unwrap().geo;
            let (xd, kd, dyd) = (x.to_vec(), k.to_vec(), dy.to_vec());
            let mut dx = vec![0.0f64; xd.len()];
            let mut dk = vec![0.0f64; kd.len()];
            for b in 0..n {
                for oh in 0..g.out_h {
                    for ow in 0..g.out_w {
                        for o in 0..cout {
                            let gy = dyd[((b * g.out_h + oh) * g.out_w + ow) * cout + o] as f64;
                            let gr = o / cout_g;
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    let (Some(ih), Some(iw)) = (g.in_row(oh, ki), g.in_col(ow, kj))
                                    else {
                                        continue;
                                    };
                                    for ci in 0..cin_g {
                                        let xi = ((b * h + ih) * w + iw) * c + gr * cin_g + ci;
                                        let wi = ((ki * kw + kj) * cin_g + ci) * cout + o;
                                        dx[xi] += gy * kd[wi] as f64;
                                        dk[wi] += gy * xd[xi] as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let f = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect::<Vec<_>>();
            assert!(
                close(&x.grad().unwrap().to_vec(), &f(dx), 1e-4),
                "dx case {case}"
            );
            assert!(
                close(&k.grad().unwrap().to_vec(), &f(dk), 1e-4),
                "dk case {case}"
            );
        }
    }

    fn gradcheck_conv(xs: &[usize], ks: &[usize], cfg: Conv2dConfig, seed: u64) {
        let mut rng = Rng::new(seed);
        let x = rand_t(xs, &mut rng);
        let k = rand_t(ks, &mut rng);
        let b = rand_t(&[ks[3]], &mut rng);
        check_gradients(&[x, k, b], |t| t[0].conv2d(&t[1], Some(&t[2]), cfg));
    }

    #[test]
    fn gradients_valid_same_stride_even_kernel() {
        let d = Conv2dConfig::default();
        gradcheck_conv(&[2, 5, 4, 2], &[3, 3, 2, 3], d, 1);
        gradcheck_conv(
            &[1, 5, 6, 2],
            &[3, 3, 2, 2],
            d.with_padding(Padding::Same),
            2,
        );
        let s2 = d.with_strides(2, 2).with_padding(Padding::Same);
        gradcheck_conv(&[1, 6, 5, 2], &[3, 3, 2, 2], s2, 3);
        gradcheck_conv(&[1, 7, 5, 1], &[3, 2, 1, 2], d.with_strides(2, 1), 4);
        gradcheck_conv(
            &[1, 5, 5, 2],
            &[4, 4, 2, 2],
            d.with_padding(Padding::Same),
            5,
        );
        gradcheck_conv(
            &[1, 5, 4, 2],
            &[3, 3, 2, 2],
            d.with_padding(Padding::symmetric(1)),
            6,
        );
    }

    #[test]
    fn gradients_dilation_groups_pointwise() {
        let d = Conv2dConfig::default();
        gradcheck_conv(&[1, 6, 6, 2], &[3, 2, 2, 2], d.with_dilation(2, 2), 7);
        let ds = d.with_dilation(2, 1).with_padding(Padding::Same);
        gradcheck_conv(&[1, 5, 5, 1], &[3, 3, 1, 2], ds, 8);
        gradcheck_conv(&[1, 4, 5, 4], &[2, 2, 2, 4], d.with_groups(2), 9);
        gradcheck_conv(&[2, 3, 3, 3], &[1, 1, 3, 2], d, 10);
        gradcheck_conv(&[1, 3, 3, 4], &[1, 1, 2, 4], d.with_groups(2), 11);
    }

    #[test]
    fn chunked_batches_match_one_pass_and_are_deterministic() {
        let mut rng = Rng::new(21);
        let x = rand_t(&[5, 9, 8, 6], &mut rng);
        let k = rand_t(&[3, 3, 3, 4], &mut rng);
        let cfg = Conv2dConfig::default()
            .with_padding(Padding::Same)
            .with_strides(2, 1)
            .with_groups(2);
        let mut p = plan(x.shape(), k.shape(), None, &cfg).unwrap();
        assert_eq!(p.chunk, 5);
        let one = forward(&x.data(), &k.data(), None, &p);
        let dy: Vec<f32> = (0..one.len()).map(|_| rng.normal()).collect();
        let (dx1, dw1) = backward(&x.data(), &k.data(), &dy, &p, (true, true), &mut None);
        for chunk in [1, 2, 3] {
            p.chunk = chunk;
            let o = forward(&x.data(), &k.data(), None, &p);
            assert!(close(&o, &one, 1e-5), "forward, chunk {chunk}");
            let (dx, dw) = backward(&x.data(), &k.data(), &dy, &p, (true, true), &mut None);
            assert!(
                close(&dx.unwrap(), dx1.as_ref().unwrap(), 1e-5),
                "dx, chunk {chunk}"
            );
            assert!(
                close(&dw.unwrap(), dw1.as_ref().unwrap(), 1e-5),
                "dw, chunk {chunk}"
            );
        }
        // a large batch is split by the budget
        let big = plan(&[64, 28, 28, 64], &[3, 3, 32, 64], None, &cfg).unwrap();
        assert!(big.chunk > 1 && big.chunk < 64, "{}", big.chunk);
        assert!(big.chunk * 14 * 28 * 576 * 4 <= COLS_BUDGET_BYTES);
        let huge = plan(&[2, 224, 224, 64], &[3, 3, 32, 64], None, &cfg).unwrap();
        assert_eq!(huge.chunk, 1);
        // repeated runs are bitwise identical
        p.chunk = 5;
        assert_eq!(x.conv2d(&k, None, cfg).unwrap().to_vec(), one);
        let (dx2, dw2) = backward(&x.data(), &k.data(), &dy, &p, (true, true), &mut None);
        assert_eq!(dx2, dx1);
        assert_eq!(dw2, dw1);
    }

    #[test]
    fn errors_name_op_and_shapes() {
        let x = Tensor::zeros(&[1, 5, 5, 4]);
        let e = |r: Result<Tensor>| r.unwrap_err().to_string();
        let m = e(x.conv2d(&Tensor::zeros(&[3, 3, 3, 2]), None, Conv2dConfig::default()));
        assert!(
            m.contains("conv2d") && m.contains("(3, 3, 3, 2)") && m.contains("(1, 5, 5, 4)"),
            "{m}"
        );
        let m = e(x.conv2d(
            &Tensor::zeros(&[3, 3, 2, 3]),
            None,
            Conv2dConfig::default().with_groups(2),
        ));
        assert!(m.contains("divisible by groups 2"), "{m}");
        let m = e(x.conv2d(
            &Tensor::zeros(&[3, 3, 4, 2]),
            Some(&Tensor::zeros(&[3])),
            Conv2dConfig::default(),
        ));
        assert!(m.contains("bias (2,)") && m.contains("(3,)"), "{m}");
        let m = e(x.conv2d(
            &Tensor::zeros(&[3, 3, 4, 2]),
            None,
            Conv2dConfig::default()
                .with_strides(2, 2)
                .with_dilation(2, 2),
        ));
        assert!(m.contains("dilation"), "{m}");
        let m = e(x.conv2d(&Tensor::zeros(&[7, 3, 4, 2]), None, Conv2dConfig::default()));
        assert!(m.contains("conv2d") && m.contains("(5, 5)"), "{m}");
        assert!(Tensor::zeros(&[5, 5, 4])
            .conv2d(&Tensor::zeros(&[3, 3, 4, 2]), None, Conv2dConfig::default())
            .is_err());
        assert!(x
            .conv2d(&Tensor::zeros(&[3, 3, 4]), None, Conv2dConfig::default())
            .is_err());
        assert!(x
            .conv2d(
                &Tensor::zeros(&[3, 3, 4, 2]),
                None,
                Conv2dConfig::default().with_groups(0)
            )
            .is_err());
        assert!(x
            .conv2d(
                &Tensor::zeros(&[3, 3, 4, 2]),
                None,
                Conv2dConfig::default().with_strides(0, 1)
            )
            .is_err());
    }

    #[test]
    fn empty_batches_give_empty_outputs_and_zero_gradients() {
        for (xs, ks) in [([0, 4, 4, 4], [3, 3, 2, 4]), ([2, 0, 3, 4], [1, 1, 2, 2])] {
            let x = Tensor::zeros(&xs).requires_grad_(true);
            let k = Tensor::ones(&ks).requires_grad_(true);
            let b = Tensor::ones(&[ks[3]]);
            let cfg = Conv2dConfig::default()
                .with_groups(2)
                .with_padding(Padding::Same);
            let y = x.conv2d(&k, Some(&b), cfg).unwrap();
            assert_eq!(y.numel(), 0);
            y.sum_all().backward().unwrap();
            assert!(k.grad().unwrap().to_vec().iter().all(|&v| v == 0.0));
        }
    }

    /// Rough timing of ResNet stage-2 convolutions, forward and each part of the
    /// backward; run with `--ignored --nocapture`.
    #[test]
    #[ignore]
    fn timing_resnet_stage2() {
        let mut rng = Rng::new(1);
        let cfg = Conv2dConfig::default().with_padding(Padding::Same);
        for (xs, ks) in [
            ([8, 56, 56, 64], [3, 3, 64, 64]),
            ([8, 56, 56, 64], [1, 1, 64, 256]),
            ([8, 56, 56, 256], [1, 1, 256, 64]),
        ] {
            let x = rand_t(&xs, &mut rng).requires_grad_(true);
            let k = Tensor::rand_normal(&ks, 0.0, 0.05, &mut rng).requires_grad_(true);
            let p = plan(x.shape(), k.shape(), None, &cfg).unwrap();
            let dy: Vec<f32> = (0..p.n * p.out_pixels() * p.cout)
                .map(|_| rng.normal())
                .collect();
            let mut best = [f64::MAX; 3];
            for _ in 0..5 {
                let t0 = std::time::Instant::now();
                let _ = x.conv2d(&k, None, cfg).unwrap();
                best[0] = best[0].min(t0.elapsed().as_secs_f64() * 1e3);
                for (i, (want_dx, want_dw)) in
                    [(true, false), (false, true)].into_iter().enumerate()
                {
                    let t0 = std::time::Instant::now();
                    let _ = backward(&x.data(), &k.data(), &dy, &p, (want_dx, want_dw), &mut None);
                    best[i + 1] = best[i + 1].min(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
            println!(
                "conv2d {xs:?} * {ks:?}, {} threads: forward {:.2} ms, dX {:.2} ms, dW {:.2} ms",
                crate::threads::num_threads(),
                best[0],
                best[1],
                best[2]
            );
        }
    }

    /// conv2d -> batch_norm_infer -> add(residual) -> relu, op by op.
    fn unfused(
        x: &Tensor,
        k: &Tensor,
        cfg: Conv2dConfig,
        stats: (&[f32], &[f32], &Tensor, &Tensor),
        residual: Option<&Tensor>,
    ) -> Tensor {
        let (mm, mv, g, b) = stats;
        let y = x.conv2d(k, None, cfg).unwrap();
        let mut y = y.batch_norm_infer(mm, mv, Some(g), Some(b), 1e-5).unwrap();
        if let Some(r) = residual {
            y = y.add(r).unwrap();
        }
        y.relu()
    }

    #[test]
    fn fused_epilogue_is_bitwise_the_separate_ops() {
        let mut rng = Rng::new(77);
        // 1x1 (one GEMM, no im2col), 3x3 same, and a 3x3 whose im2col goes in
        // several chunks of images (the epilogue then runs per chunk, at an
        // offset); then tiles, each with its own epilogue at its offset: a
        // 1x1 to 70 channels, a 3x3/2 through im2col tiles
        let cases = [
            (vec![2, 9, 9, 8], [1, 1, 8, 12], Padding::Valid, (1, 1)),
            (vec![2, 9, 9, 8], [3, 3, 8, 12], Padding::Same, (2, 2)),
            (vec![3, 64, 64, 32], [3, 3, 32, 16], Padding::Same, (1, 1)),
            (
                vec![8, 32, 32, 256],
                [1, 1, 256, 70],
                Padding::Valid,
                (1, 1),
            ),
            (vec![16, 40, 40, 8], [3, 3, 8, 64], Padding::Same, (2, 2)),
        ];
        for (xs, ks, pad, st) in cases {
            let cfg = Conv2dConfig::default()
                .with_padding(pad)
                .with_strides(st.0, st.1);
            let x = Tensor::rand_normal(&xs, 0.0, 1.0, &mut rng);
            let k = Tensor::rand_normal(&ks, 0.0, 0.2, &mut rng);
            let c = ks[3];
            let mm: Vec<f32> = (0..c).map(|i| 0.05 * i as f32 - 0.2).collect();
            let mv: Vec<f32> = (0..c).map(|i| 0.5 + 0.1 * i as f32).collect();
            let g = Tensor::rand_normal(&[c], 1.0, 0.2, &mut rng);
            let b = Tensor::rand_normal(&[c], 0.0, 0.2, &mut rng);
            let (gv, bv) = (g.to_vec(), b.to_vec());
            let (a, sh) = crate::ops::batch_norm::affine_of(&mm, &mv, Some(&gv), Some(&bv), 1e-5);
            let out = x.conv2d(&k, None, cfg).unwrap().shape().to_vec();
            let r = Tensor::rand_normal(&out, 0.0, 1.0, &mut rng);
            for residual in [None, Some(&r)] {
                let ep = Epilogue {
                    scale: Some(&a),
                    shift: Some(&sh),
                    residual,
                    relu: true,
                };
                let fused = x.conv2d_fused(&k, None, cfg, &ep).unwrap();
                let want = unfused(&x, &k, cfg, (&mm, &mv, &g, &b), residual);
                assert_eq!(fused.shape(), want.shape());
                assert_eq!(fused.to_vec(), want.to_vec(), "{xs:?} {ks:?}");
            }
            // no epilogue at all is the plain convolution
            let plain = x.conv2d_fused(&k, None, cfg, &Epilogue::default()).unwrap();
            assert_eq!(plain.to_vec(), x.conv2d(&k, None, cfg).unwrap().to_vec());
            // a bias is the epilogue's first step: the convolution, then `+ bias`
            let biased = x.conv2d(&k, Some(&b), cfg).unwrap();
            assert_eq!(biased.to_vec(), plain.add(&b).unwrap().to_vec());
        }
    }

    #[test]
    fn fused_refuses_what_it_cannot_do() {
        let x = Tensor::zeros(&[1, 4, 4, 2]);
        let k = Tensor::zeros(&[1, 1, 2, 3]);
        let cfg = Conv2dConfig::default();
        let bad_scale = Epilogue {
            scale: Some(&[1.0, 1.0]),
            ..Epilogue::default()
        };
        let e = x
            .conv2d_fused(&k, None, cfg, &bad_scale)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("conv2d_fused") && e.contains("scale (3,)"),
            "{e}"
        );
        let r = Tensor::zeros(&[1, 4, 4, 2]);
        let bad_res = Epilogue {
            residual: Some(&r),
            ..Epilogue::default()
        };
        let e = x
            .conv2d_fused(&k, None, cfg, &bad_res)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("residual (1, 4, 4, 3)") && e.contains("(1, 4, 4, 2)"),
            "{e}"
        );
        let kg = Tensor::zeros(&[1, 1, 2, 3]).requires_grad_(true);
        let e = x
            .conv2d_fused(&kg, None, cfg, &Epilogue::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("requires grad"), "{e}");
        // under no_grad the same call is fine
        let y = crate::no_grad(|| x.conv2d_fused(&kg, None, cfg, &Epilogue::default()));
        assert_eq!(y.unwrap().shape(), &[1, 4, 4, 3]);
    }

    /// [`backward`] with its fast paths off (col2im dX, untiled dW).
    fn reference_backward(
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        p: &ConvPlan,
        want_dx: bool,
        want_dw: bool,
    ) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
        REFERENCE_PATHS_ONLY.with(|c| c.set(true));
        let r = backward(x, w, dy, p, (want_dx, want_dw), &mut None);
        REFERENCE_PATHS_ONLY.with(|c| c.set(false));
        r
    }

    /// An input that also feeds another op (a residual block's input, whose
    /// shortcut's gradient arrives first) gets the sum of both gradients,
    /// whether the convolution's dX is added into the other in its GEMM (a
    /// 1x1 stride-1 one, grouped or not) or by the engine (3x3, strided, or
    /// a gradient so far that another input still shares).
    #[test]
    fn dx_added_into_the_gradient_so_far_is_the_sum() {
        let mut rng = Rng::new(43);
        for (kh, stride, groups, cin, cout) in [
            (1, 1, 1, 64, 96),
            (1, 1, 2, 32, 64),
            (1, 2, 1, 16, 24),
            (3, 1, 1, 8, 16),
        ] {
            for (shared, other_first) in [(false, true), (false, false), (true, true)] {
                let cfg = Conv2dConfig::default()
                    .with_strides(stride, stride)
                    .with_groups(groups)
                    .with_padding(Padding::Same);
                let x = rand_t(&[2, 6, 5, cin], &mut rng).requires_grad_(true);
                let k = rand_t(&[kh, kh, cin / groups, cout], &mut rng).requires_grad_(true);
                let d1 = rand_t(
                    &[2, 6usize.div_ceil(stride), 5usize.div_ceil(stride), cout],
                    &mut rng,
                );
                let d2 = rand_t(&[2, 6, 5, cin], &mut rng);
                let other = rand_t(&[2, 6, 5, cin], &mut rng).requires_grad_(true);
                // x's other consumer: x * d2, or (x + other) * d2, whose Add
                // shares its gradient between x and `other`
                let second = match shared {
                    false => x.mul(&d2).unwrap(),
                    true => x.add(&other).unwrap().mul(&d2).unwrap(),
                };
                let y = x.conv2d(&k, None, cfg).unwrap();
                // the other gradient reaches x before the convolution's
                // backward runs, or after it
                let (first, second) = (y.mul(&d1).unwrap().sum_all(), second.sum_all());
                let loss = match other_first {
                    true => second.add(&first).unwrap(),
                    false => first.add(&second).unwrap(),
                };
                let added = DX_ADDED.with(|n| n.get());
                loss.backward().unwrap();
                let added = DX_ADDED.with(|n| n.get()) - added;
                // the backward runs on this thread: the GEMM added dX where it could
                let pointwise = kh == 1 && stride == 1;
                assert_eq!(
                    added == 1,
                    pointwise && other_first,
                    "k{kh} s{stride} g{groups}"
                );
                let p = plan(x.shape(), k.shape(), None, &cfg).unwrap();
                let (dx, _) = reference_backward(&x.data(), &k.data(), &d1.data(), &p, true, false);
                let want: Vec<f32> = dx
                    .unwrap()
                    .iter()
                    .zip(d2.to_vec())
                    .map(|(a, b)| a + b)
                    .collect();
                let got = x.grad().unwrap().to_vec();
                assert!(
                    close(&got, &want, 1e-4),
                    "k{kh} s{stride} g{groups} {shared} {other_first}"
                );
                if shared {
                    assert_eq!(other.grad().unwrap().to_vec(), d2.to_vec());
                }
            }
        }
    }

    /// Convolutions that read their input in place (one group, undilated, a
    /// kernel row of at least 64 values): every stride and padding, windows
    /// wholly in the padding, tiled and untiled, against the reference loops;
    /// and a stride-1 backward, whose dX is such a convolution, against the
    /// reference paths.
    #[test]
    fn implicit_gemm_matches_reference() {
        if crate::kernels::packed_gemm::skip_without_avx512() {
            return;
        }
        let mut rng = Rng::new(41);
        let cases = [
            // (n, h, w, c, kh, kw, cout, stride, padding)
            (2, 9, 11, 24, 3, 3, 7, 1, Padding::Same),
            (1, 10, 9, 22, 3, 3, 5, 2, Padding::Same),
            (2, 8, 8, 30, 3, 3, 9, 3, Padding::Valid),
            (
                1,
                6,
                7,
                32,
                2,
                2,
                4,
                1,
                Padding::Explicit {
                    top: 4,
                    bottom: 1,
                    left: 3,
                    right: 5,
                },
            ),
            (2, 7, 7, 64, 1, 1, 6, 2, Padding::Valid),
            (1, 12, 12, 96, 1, 1, 8, 2, Padding::Same),
            (2, 32, 32, 24, 3, 3, 70, 1, Padding::Same), // tiled
        ];
        for (case, &(n, h, w, c, kh, kw, cout, s, padding)) in cases.iter().enumerate() {
            let x = rand_t(&[n, h, w, c], &mut rng);
            let k = rand_t(&[kh, kw, c, cout], &mut rng);
            let b = rand_t(&[cout], &mut rng);
            let cfg = Conv2dConfig::default()
                .with_strides(s, s)
                .with_padding(padding);
            let p = plan(x.shape(), k.shape(), Some(b.shape()), &cfg).unwrap();
            assert!(implicit::applies(&p), "case {case}");
            let want = conv_reference(
                &x.data(),
                (n, h, w, c),
                &k.data(),
                (kh, kw, c, cout),
                Some(&b.data()),
                &p.geo,
                1,
            );
            let got = x.conv2d(&k, Some(&b), cfg).unwrap().to_vec();
            assert!(close(&got, &want, 1e-4), "case {case}");
            if s == 1 {
                assert_dx_matches_reference(&x, &k, &p, case, &mut rng);
            }
        }
    }

    /// dX of a random dY through the fast paths against the reference paths.
    fn assert_dx_matches_reference(
        x: &Tensor,
        k: &Tensor,
        p: &ConvPlan,
        case: usize,
        rng: &mut Rng,
    ) {
        let dy = rand_t(&[p.n, p.geo.out_h, p.geo.out_w, p.cout], rng);
        let (xd, kd, dyd) = (x.data(), k.data(), dy.data());
        let (dx, _) = backward(&xd, &kd, &dyd, p, (true, false), &mut None);
        let (dx_ref, _) = reference_backward(&xd, &kd, &dyd, p, true, false);
        assert!(
            close_to_scale(&dx.unwrap(), &dx_ref.unwrap(), 1e-4),
            "case {case} dX"
        );
    }

    /// Stride-1 3x3 convolutions that run as Winograd F(4x4, 3x3) or
    /// F(2x2, 3x3): paddings, output sides off the 4x4 tiles,
    /// channel counts off the 16-lane and 64-column blocks, one and several
    /// blocks of tiles, against the reference loops; the inference path with
    /// cached transformed weights gives the same; a backward whose dX runs
    /// as Winograd, and its dW by Winograd's transforms (one and several
    /// blocks of tiles per thread), against the reference paths.
    #[test]
    fn winograd_matches_reference() {
        if crate::kernels::packed_gemm::skip_without_avx512() {
            return;
        }
        let mut rng = Rng::new(43);
        let cases = [
            // (n, h, w, c, cout, padding)
            (2, 8, 10, 64, 72, Padding::Same),
            (1, 10, 8, 80, 64, Padding::Valid),
            (
                1,
                6,
                6,
                65,
                70,
                Padding::Explicit {
                    top: 2,
                    bottom: 0,
                    left: 1,
                    right: 1,
                },
            ),
            // 112 bands of tiles: several blocks per thread for dW up to 5 threads
            (8, 28, 28, 64, 64, Padding::Same),
            // too many channels for F(4x4, 3x3): F(2x2, 3x3)
            (2, 6, 10, 192, 96, Padding::Same),
        ];
        for (case, &shape) in cases.iter().enumerate() {
            let p = assert_3x3_matches_reference(shape, case, &mut rng);
            assert!(winograd::applies(&p), "case {case}");
            // F(4x4, 3x3), with tiles past the output's edge in cases 0-2
            assert_eq!(winograd_f4::blocked(&p), case < 4, "case {case}");
            assert_eq!(winograd_f4::applies(&p), case < 4, "case {case}");
        }
    }

    /// A stride-1 3x3 convolution of shape `(n, h, w, c, cout, padding)`
    /// through the fast paths against the reference loops: the forward
    /// (packed, then twice under no_grad: cached, the same values), dX, and
    /// dW (the same bits twice). Returns its plan, for the caller to check
    /// which path ran.
    fn assert_3x3_matches_reference(
        (n, h, w, c, cout, padding): (usize, usize, usize, usize, usize, Padding),
        case: usize,
        rng: &mut Rng,
    ) -> ConvPlan {
        let x = rand_t(&[n, h, w, c], rng);
        let k = rand_t(&[3, 3, c, cout], rng);
        let b = rand_t(&[cout], rng);
        let cfg = Conv2dConfig::default().with_padding(padding);
        let p = plan(x.shape(), k.shape(), Some(b.shape()), &cfg).unwrap();
        let want = conv_reference(
            &x.data(),
            (n, h, w, c),
            &k.data(),
            (3, 3, c, cout),
            Some(&b.data()),
            &p.geo,
            1,
        );
        let got = x.conv2d(&k, Some(&b), cfg).unwrap().to_vec();
        assert!(close_to_scale(&got, &want, 1e-4), "case {case}");
        for _ in 0..2 {
            let again = crate::autograd::no_grad(|| x.conv2d(&k, Some(&b), cfg));
            assert_eq!(again.unwrap().to_vec(), got, "case {case}");
        }
        assert_dx_matches_reference(&x, &k, &p, case, rng);
        let dy = rand_t(&[n, p.geo.out_h, p.geo.out_w, cout], rng);
        let (xd, kd, dyd) = (x.data(), k.data(), dy.data());
        let (_, dw) = backward(&xd, &kd, &dyd, &p, (false, true), &mut None);
        let (_, dw_ref) = reference_backward(&xd, &kd, &dyd, &p, false, true);
        let dw = dw.unwrap();
        // sums of thousands of products in another order: f32 rounding
        // only, at most 3.4e-5 of the gradient's root mean square with
        // F(4x4, 3x3) (2.6e-3 off in a gradient of rms 77), 1.9e-6 with F(2x2)
        assert!(
            close_to_scale(&dw, &dw_ref.unwrap(), 1e-4),
            "case {case} dW"
        );
        let (_, again) = backward(&xd, &kd, &dyd, &p, (false, true), &mut None);
        assert_eq!(again.unwrap(), dw, "case {case} dW again");
        p
    }

    /// Wider stride-1 3x3 convolutions that run as Winograd F(4x4, 3x3) over
    /// the whole batch: odd and even output sides, paddings, against the
    /// reference loops, forward (packed, then cached), dX and dW (by F(4x4)'s
    /// positions where a side is odd).
    #[test]
    fn winograd_f4_over_the_whole_batch_matches_reference() {
        if crate::kernels::packed_gemm::skip_without_avx512() {
            return;
        }
        let mut rng = Rng::new(44);
        let cases = [
            // (n, h, w, c, cout, padding): 32, 32 and 48 tiles
            (8, 7, 7, 160, 144, Padding::Same),
            (8, 10, 9, 144, 160, Padding::Valid),
            (4, 12, 16, 160, 144, Padding::Same),
        ];
        for (case, &shape) in cases.iter().enumerate() {
            let p = assert_3x3_matches_reference(shape, case, &mut rng);
            assert!(winograd_f4::applies(&p), "case {case}");
            assert!(!winograd_f4::blocked(&p), "case {case}");
            // dW by F(4x4)'s positions where a side is odd, else by F(2x2)
            let odd = p.geo.out_h % 2 == 1 || p.geo.out_w % 2 == 1;
            assert_eq!(winograd_dw::by_positions(&p), odd, "case {case}");
        }
    }

    /// Convolutions with too few output pixels for [`dw_tiled`]'s tiles: dW by
    /// blocks of kernel rows against the reference loops (dY read in place,
    /// or packed where its width is not whole panels), the same bits twice.
    #[test]
    fn dw_by_kernel_rows_matches_reference() {
        if crate::kernels::packed_gemm::skip_without_avx512() {
            return;
        }
        let mut rng = Rng::new(45);
        let cases = [
            // (n, h, w, c, cout, stride, padding)
            (2, 14, 14, 64, 64, 2, Padding::symmetric(1)),
            (1, 9, 7, 96, 70, 2, Padding::Same),
            (3, 6, 5, 80, 128, 1, Padding::Valid),
            (2, 8, 8, 512, 128, 2, Padding::symmetric(1)),
        ];
        for (case, &(n, h, w, c, cout, st, padding)) in cases.iter().enumerate() {
            let x = rand_t(&[n, h, w, c], &mut rng);
            let k = rand_t(&[3, 3, c, cout], &mut rng);
            let cfg = Conv2dConfig::default()
                .with_padding(padding)
                .with_strides(st, st);
            let p = plan(x.shape(), k.shape(), None, &cfg).unwrap();
            assert!(by_kernel_rows(&p), "case {case}");
            let dy = rand_t(&[n, p.geo.out_h, p.geo.out_w, cout], &mut rng);
            let (xd, kd, dyd) = (x.data(), k.data(), dy.data());
            let (_, dw) = backward(&xd, &kd, &dyd, &p, (false, true), &mut None);
            let (_, want) = reference_backward(&xd, &kd, &dyd, &p, false, true);
            let dw = dw.unwrap();
            assert!(close_to_scale(&dw, &want.unwrap(), 1e-5), "case {case}");
            let (_, again) = backward(&xd, &kd, &dyd, &p, (false, true), &mut None);
            assert_eq!(again.unwrap(), dw, "case {case}");
        }
    }

    /// 1x1 convolutions with strides above 1: dX written tile by tile among
    /// zeros against col2im, with windows past the last row and column, rows
    /// of the input no window reads, and windows wholly in the padding.
    #[test]
    fn strided_pointwise_dx_matches_col2im() {
        if crate::kernels::packed_gemm::skip_without_avx512() {
            return;
        }
        let mut rng = Rng::new(44);
        let pad = |bottom, right| Padding::Explicit {
            top: 0,
            bottom,
            left: 0,
            right,
        };
        let cases = [
            // (n, h, w, c, cout, strides, padding)
            (2, 8, 8, 16, 24, (2, 2), Padding::Valid),
            (1, 7, 9, 20, 70, (2, 3), Padding::Valid),
            (3, 5, 5, 8, 8, (3, 3), Padding::Same),
            (1, 6, 6, 64, 130, (2, 2), pad(3, 2)),
            (2, 28, 28, 32, 64, (2, 2), Padding::Valid),
        ];
        for (case, &(n, h, w, c, cout, (sh, sw), padding)) in cases.iter().enumerate() {
            let x = rand_t(&[n, h, w, c], &mut rng);
            let k = rand_t(&[1, 1, c, cout], &mut rng);
            let cfg = Conv2dConfig::default()
                .with_strides(sh, sw)
                .with_padding(padding);
            let p = plan(x.shape(), k.shape(), None, &cfg).unwrap();
            assert!(strided_pointwise_dx::applies(&p), "case {case}");
            assert_dx_matches_reference(&x, &k, &p, case, &mut rng);
        }
    }

    #[test]
    fn tiled_dw_matches_one_matrix_and_is_deterministic() {
        let mut rng = Rng::new(37);
        let cases = [
            ([6, 64, 64, 5], [3, 3, 5, 7], Conv2dConfig::default()),
            (
                [6, 90, 80, 4],
                [5, 3, 2, 6],
                Conv2dConfig::default()
                    .with_padding(Padding::Same)
                    .with_strides(2, 1)
                    .with_groups(2),
            ),
            (
                [4, 100, 100, 3],
                [3, 3, 3, 4],
                Conv2dConfig::default().with_dilation(2, 2),
            ),
            // a dW of 72 x 70 (on the packed kernel where the CPU has it),
            // with column tails in both panels and a partial row block
            (
                [8, 48, 48, 8],
                [3, 3, 8, 70],
                Conv2dConfig::default().with_padding(Padding::Same),
            ),
            // image rows of 14 pixels: colsᵀ turned in partial blocks
            (
                [40, 14, 14, 16],
                [3, 3, 16, 64],
                Conv2dConfig::default().with_padding(Padding::Same),
            ),
            // stride 2 on the packed kernel: input runs 2 * C apart, padding
            // on one side only
            (
                [24, 29, 29, 16],
                [3, 3, 16, 64],
                Conv2dConfig::default()
                    .with_padding(Padding::Same)
                    .with_strides(2, 2),
            ),
        ];
        for (i, (xs, ks, cfg)) in cases.into_iter().enumerate() {
            let p = plan(&xs, &ks, None, &cfg).unwrap();
            assert!(
                tile_pixels(&p).is_some(),
                "case {i} must take the tiled path"
            );
            let x = rand_t(&xs, &mut rng).to_vec();
            let w = rand_t(&ks, &mut rng).to_vec();
            let dy = rand_t(&[xs[0], p.geo.out_h, p.geo.out_w, ks[3]], &mut rng).to_vec();
            let tiled = backward(&x, &w, &dy, &p, (false, true), &mut None)
                .1
                .unwrap();
            assert_eq!(
                backward(&x, &w, &dy, &p, (false, true), &mut None)
                    .1
                    .unwrap(),
                tiled
            );
            let whole = reference_backward(&x, &w, &dy, &p, false, true).1.unwrap();
            // sums of thousands of products in another order: f32 rounding only
            assert!(close(&tiled, &whole, 1e-3), "case {i}");
        }
    }

    /// A 1x1 convolution big enough for [`pointwise_dw`], with more output
    /// channels than input ones and fewer (dWᵀ, transposed at the end): the
    /// backward's dW equals the crate path's, and repeats bitwise.
    #[test]
    fn pointwise_dw_matches_the_crate_path() {
        let mut rng = Rng::new(41);
        for (cin, cout) in [(64, 256), (300, 70)] {
            let xs = [2, 33, 32, cin];
            let ks = [1, 1, cin, cout];
            let p = plan(&xs, &ks, None, &Conv2dConfig::default()).unwrap();
            assert_eq!(pointwise_dw::applies(&p), packed_gemm::available());
            let x = rand_t(&xs, &mut rng).to_vec();
            let w = rand_t(&ks, &mut rng).to_vec();
            let dy = rand_t(&[2, 33, 32, cout], &mut rng).to_vec();
            let got = backward(&x, &w, &dy, &p, (false, true), &mut None)
                .1
                .unwrap();
            assert_eq!(
                backward(&x, &w, &dy, &p, (false, true), &mut None)
                    .1
                    .unwrap(),
                got
            );
            let want = reference_backward(&x, &w, &dy, &p, false, true).1.unwrap();
            assert!(close(&got, &want, 1e-3), "{cin} -> {cout}");
        }
    }

    #[test]
    fn direct_dx_matches_col2im() {
        let mut rng = Rng::new(31);
        let pads = [
            Padding::Same,
            Padding::Valid,
            Padding::Explicit {
                top: 2,
                bottom: 0,
                left: 1,
                right: 2,
            },
        ];
        let small = Padding::Explicit {
            top: 1,
            bottom: 0,
            left: 0,
            right: 1,
        };
        let cases = [
            (3, pads[0]),
            (4, pads[0]),
            (3, pads[1]),
            (5, pads[2]),
            (2, small),
        ];
        for (i, (k, pad)) in cases.into_iter().enumerate() {
            let (xs, ks) = ([2, 37, 29, 6], [k, k, 6, 11]);
            let cfg = Conv2dConfig::default().with_padding(pad);
            let p = plan(&xs, &ks, None, &cfg).unwrap();
            assert!(transposed_plan(&p).is_some(), "case {i}");
            let x = rand_t(&xs, &mut rng).to_vec();
            let w = rand_t(&ks, &mut rng).to_vec();
            let dy = rand_t(&[2, p.geo.out_h, p.geo.out_w, 11], &mut rng).to_vec();
            let direct = backward(&x, &w, &dy, &p, (true, false), &mut None)
                .0
                .unwrap();
            let col2im = reference_backward(&x, &w, &dy, &p, true, false).0.unwrap();
            // sums of up to 5*5*11 products in another order: f32 rounding only
            assert!(close(&direct, &col2im, 1e-4), "case {i}");
        }
    }

    #[test]
    fn conv2d_relu_is_bitwise_conv2d_then_relu() {
        let mut rng = Rng::new(41);
        let cases = [
            ([2, 9, 9, 3], [3, 3, 3, 5], Padding::Valid),
            ([2, 40, 36, 4], [3, 3, 4, 8], Padding::Same),
            ([1, 7, 7, 6], [1, 1, 6, 4], Padding::Valid),
        ];
        for (xs, ks, pad) in cases {
            let cfg = Conv2dConfig::default().with_padding(pad);
            let x = rand_t(&xs, &mut rng).requires_grad_(true);
            let k = rand_t(&ks, &mut rng).requires_grad_(true);
            let b = rand_t(&[ks[3]], &mut rng).requires_grad_(true);
            let run = |fused: bool| {
                [&x, &k, &b].iter().for_each(|t| t.zero_grad());
                let y = if fused {
                    x.conv2d_relu(&k, Some(&b), cfg).unwrap()
                } else {
                    x.conv2d(&k, Some(&b), cfg).unwrap().relu()
                };
                let dy = Tensor::rand_normal(y.shape(), 0.0, 1.0, &mut Rng::new(42));
                y.mul(&dy).unwrap().sum_all().backward().unwrap();
                let grads: Vec<Vec<f32>> = [&x, &k, &b]
                    .iter()
                    .map(|t| t.grad().unwrap().to_vec())
                    .collect();
                (y.to_vec(), grads)
            };
            let (fused, plain) = (run(true), run(false));
            assert!(fused.0.contains(&0.0) && fused.0.iter().any(|&v| v > 0.0));
            assert_eq!(fused, plain, "{xs:?} {ks:?}");
            // no graph: the same values, no mask kept
            let y = crate::no_grad(|| x.conv2d_relu(&k, Some(&b), cfg)).unwrap();
            assert_eq!(y.to_vec(), fused.0);
        }
        let x = rand_t(&[1, 5, 5, 2], &mut rng);
        let k = rand_t(&[3, 3, 2, 3], &mut rng);
        let b = rand_t(&[3], &mut rng);
        check_gradients(&[x, k, b], |t| {
            t[0].conv2d_relu(&t[1], Some(&t[2]), Conv2dConfig::default())
        });
    }

    /// `conv2d_moments` on every forward path (Winograd, in place, tiled,
    /// 1x1, im2col chunks, groups, strides, dilation, a bias): the output is
    /// bitwise `conv2d`'s, and the moments are the output's two-pass f64
    /// mean and biased variance up to f32 rounding of the partial sums.
    #[test]
    fn conv2d_moments_are_the_outputs_statistics() {
        let mut rng = Rng::new(41);
        // (n, hw, cin, cout, k, stride, dilation, groups)
        let cases: [[usize; 8]; 9] = [
            [2, 8, 64, 64, 3, 1, 1, 1],
            // Winograd F(4x4, 3x3) over the whole batch (32 tiles)
            [8, 7, 160, 144, 3, 1, 1, 1],
            [2, 9, 16, 24, 3, 1, 1, 1],
            [8, 14, 32, 40, 1, 1, 1, 1],
            [1, 5, 8, 12, 1, 1, 1, 1],
            [2, 11, 8, 16, 3, 2, 1, 1],
            [1, 9, 8, 8, 3, 1, 2, 1],
            [2, 7, 8, 12, 3, 1, 1, 4],
            [3, 30, 6, 20, 5, 1, 1, 1],
        ];
        for (case, &[n, hw, cin, cout, k, s, d, g]) in cases.iter().enumerate() {
            let x = Tensor::rand_normal(&[n, hw, hw, cin], 0.5, 1.0, &mut rng);
            let w = Tensor::rand_normal(&[k, k, cin / g, cout], 0.0, 0.2, &mut rng);
            let b = Tensor::rand_normal(&[cout], 3.0, 1.0, &mut rng);
            let cfg = Conv2dConfig {
                strides: (s, s),
                padding: Padding::Same,
                dilation: (d, d),
                groups: g,
            };
            let y = x.conv2d(&w, Some(&b), cfg).unwrap();
            let (y2, m) = x.conv2d_moments(&w, Some(&b), cfg).unwrap();
            assert_eq!(y.to_vec(), y2.to_vec(), "case {case}");
            let v = y.to_vec();
            let rows = v.len() / cout;
            assert_eq!(m.count, rows, "case {case}");
            for (ch, var) in m.variance().into_iter().enumerate() {
                let col = || v.iter().skip(ch).step_by(cout).map(|&t| t as f64);
                let mean = col().sum::<f64>() / rows as f64;
                let want = col().map(|t| (t - mean).powi(2)).sum::<f64>() / rows as f64;
                assert!(
                    (m.mean[ch] - mean).abs() <= 1e-6 * (1.0 + mean.abs()),
                    "case {case}"
                );
                assert!(
                    (var - want).abs() <= 1e-5 * want + 1e-9,
                    "case {case} ch {ch}: {var} vs {want}"
                );
            }
        }
    }

    /// `conv2d_relu`'s backward masks the gradient in place when it holds it
    /// alone, into a buffer of its own when it is shared (a residual Add's
    /// two inputs share one): bitwise `conv2d` then `relu` either way.
    #[test]
    fn conv2d_relu_masks_an_owned_or_shared_gradient_alike() {
        let mut rng = Rng::new(44);
        let x0 = Tensor::rand_normal(&[2, 6, 6, 3], 0.0, 1.0, &mut rng);
        let w0 = Tensor::rand_normal(&[3, 3, 3, 4], 0.0, 0.5, &mut rng);
        let z0 = Tensor::rand_normal(&[2, 6, 6, 4], 0.0, 1.0, &mut rng);
        let g = Tensor::rand_normal(&[2, 6, 6, 4], 0.0, 1.0, &mut rng);
        let cfg = Conv2dConfig::default().with_padding(Padding::Same);
        for shared in [false, true] {
            let run = |fused: bool| {
                let x = x0.detach().requires_grad_(true);
                let w = w0.detach().requires_grad_(true);
                let z = z0.detach().requires_grad_(shared);
                let y = match fused {
                    true => x.conv2d_relu(&w, None, cfg).unwrap(),
                    false => x.conv2d(&w, None, cfg).unwrap().relu(),
                };
                let out = y.add_relu(&z).unwrap();
                out.mul(&g).unwrap().sum_all().backward().unwrap();
                (x.grad().unwrap().to_vec(), w.grad().unwrap().to_vec())
            };
            assert_eq!(run(true), run(false), "shared {shared}");
        }
    }
}
