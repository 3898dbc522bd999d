//! im2col and its inverse: the receptive field of each output pixel as a
//! row of `cols`, ordered `(group, kh, kw, c)`, so that group `g` is a
//! contiguous column block that multiplies the kernel reshaped to
//! `(kh*kw*in_g, filters)`; colsᵀ built a block of rows at a time; col2im
//! summing `dCols` back into the input's shape; and Wᵀ per group.

use crate::kernels::buffers;
use crate::kernels::gemm::MatRef;
use crate::kernels::parallel;
use crate::kernels::transpose::transpose;
use crate::ops::conv2d::geometry::ConvPlan;
use crate::ops::padding::Geometry2d;

/// Fills `cols` (`n_img * out_h * out_w` rows of `groups*kg`) for images `n0..`.
pub fn im2col(x: &[f32], p: &ConvPlan, n0: usize, cols: &mut [f32]) {
    let row_len = p.geo.out_w * p.kt();
    parallel::for_each_chunk_mut(cols, row_len.max(1), |idx, row| {
        im2col_row(x, p, n0 * p.geo.out_h + idx, row)
    });
}

/// Fills `row` with the `out_w` im2col rows of output image row `image_row`
/// (`n * out_h + oh` over the whole batch).
pub fn im2col_row(x: &[f32], p: &ConvPlan, image_row: usize, row: &mut [f32]) {
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
pub fn im2col_row_t(
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
pub fn im2col_pixel(xi: &[f32], p: &ConvPlan, oh: usize, ow: usize, dst: &mut [f32]) {
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
pub fn col2im(dcols: &[f32], p: &ConvPlan, dx: &mut [f32]) {
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
/// threads: a straight gather would stride through `w` by `cout`, a cache
/// line per value.
pub fn pack_wt(w: &[f32], p: &ConvPlan) -> Vec<f32> {
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

/// Group `gr`'s `cout_g x kg` block of [`pack_wt`]'s Wᵀ.
pub fn wt_block<'a>(wt: &'a [f32], gr: usize, p: &ConvPlan) -> MatRef<'a> {
    MatRef::new(&wt[gr * p.cout_g * p.kg..], p.cout_g, p.kg)
}

thread_local! {
    /// Each worker thread's im2col tile, kept between calls (at most a few
    /// hundred KiB: one tile of `TILE_COLS_BYTES`, or more for one image row).
    pub static TILE_COLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each worker thread's block of colsᵀ for the tiled dW.
    pub static TILE_COLS_T: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}
