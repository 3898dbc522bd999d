//! Implicit GEMM: the forward reads its input in place instead of an im2col copy.
//!
//! With one group and no dilation, the im2col row of an output pixel is, for
//! each kernel row, `kw * C_in` consecutive values of one input row (the
//! window's pixels are adjacent and NHWC keeps each pixel's channels
//! together). So the packed kernel can read those runs straight from the input
//! ([`ConvRows`]): im2col wrote kh*kw times the input's size per call, this
//! path at most one padded copy of it (none for an unpadded convolution).

use std::borrow::Cow;

use crate::kernels::packed_gemm::{gemm_rows, gemm_rows_serial, PackedB, RowSource};
use crate::kernels::{buffers, parallel};
use crate::ops::conv2d::epilogue::{self, EpilogueRef};
use crate::ops::conv2d::geometry::{tile_pixels, ConvPlan};

/// The input as the im2col matrix of output rows `row0..row0 + rows`: run `r`
/// (kernel row `r`) of output pixel `(b, y, x)` starts at input pixel
/// `(b, y * sh + r, x * sw)` of an input padded to `hp x wp`.
struct ConvRows<'a> {
    xp: &'a [f32],
    hp: usize,
    wp: usize,
    c: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    out_h: usize,
    out_w: usize,
    depth: usize,
    row0: usize,
    rows: usize,
}

impl<'a> ConvRows<'a> {
    /// Checks every bound that [`RowSource`] relies on.
    fn new(xp: &'a [f32], hp: usize, wp: usize, p: &ConvPlan, row0: usize, rows: usize) -> Self {
        let g = &p.geo;
        assert!(g.out_h > 0 && g.out_w > 0 && g.kh > 0 && g.kw > 0);
        assert!(hp >= (g.out_h - 1) * g.sh + g.kh && wp >= (g.out_w - 1) * g.sw + g.kw);
        assert!(
            xp.len() >= p.n * hp * wp * p.c,
            "implicit conv: padded input too short"
        );
        assert!(
            row0 + rows <= p.n * g.out_h * g.out_w,
            "implicit conv: rows past the output"
        );
        ConvRows {
            xp,
            hp,
            wp,
            c: p.c,
            kw: g.kw,
            sh: g.sh,
            sw: g.sw,
            out_h: g.out_h,
            out_w: g.out_w,
            depth: g.kh * g.kw * p.c,
            row0,
            rows,
        }
    }
}

// SAFETY: for row i < rows (pixel px = row0 + i < n*out_h*out_w, so b < n,
// y < out_h, x < out_w) and k0 in kernel row r < kh, the run ends at input
// pixel (b, y*sh + r, x*sw + kw) exclusive: y*sh + r < hp and x*sw + kw <= wp
// (checked in `new`), so its last value lies before (b + 1) * hp * wp * c <=
// xp.len(). `xp` is a shared borrow, so nothing writes it meanwhile.
unsafe impl RowSource for ConvRows<'_> {
    fn rows(&self) -> usize {
        self.rows
    }
    fn depth(&self) -> usize {
        self.depth
    }
    fn run(&self) -> usize {
        self.kw * self.c
    }
    fn row_ptr(&self, i: usize, k0: usize) -> *const f32 {
        let px = self.row0 + i;
        let per_image = self.out_h * self.out_w;
        let (b, r) = (px / per_image, px % per_image);
        let (y, x) = (r / self.out_w, r % self.out_w);
        let run = self.kw * self.c;
        let (kr, off) = (k0 / run, k0 % run);
        let pixel = (b * self.hp + y * self.sh + kr) * self.wp + x * self.sw;
        self.xp.as_ptr().wrapping_add(pixel * self.c + off)
    }
}

/// The input with its padding written out, `(n, hp, wp, c)` with
/// `hp = (out_h - 1) * sh + kh` and `wp` likewise: every window lies inside.
/// An unpadded convolution borrows the input as it is.
pub fn padded<'a>(x: &'a [f32], p: &ConvPlan) -> (Cow<'a, [f32]>, usize, usize) {
    let g = &p.geo;
    let hp = (g.out_h - 1) * g.sh + g.kh;
    let wp = (g.out_w - 1) * g.sw + g.kw;
    if g.pad_top == 0 && g.pad_left == 0 && hp <= g.in_h && wp <= g.in_w {
        return (Cow::Borrowed(x), g.in_h, g.in_w);
    }
    let c = p.c;
    let mut xp = buffers::dirty(p.n * hp * wp * c);
    // one chunk per padded row: its input row's values, zeros around them
    parallel::for_each_chunk_mut(&mut xp, wp * c, |row, dst| {
        let (b, yy) = (row / hp, row % hp);
        let iy = yy.checked_sub(g.pad_top).filter(|&iy| iy < g.in_h);
        let Some(iy) = iy else {
            dst.fill(0.0);
            return;
        };
        let x0 = g.pad_left.min(wp);
        let x1 = (g.pad_left + g.in_w).min(wp);
        dst[..x0 * c].fill(0.0);
        let src = &x[((b * g.in_h + iy) * g.in_w) * c..];
        dst[x0 * c..x1 * c].copy_from_slice(&src[..(x1 - x0) * c]);
        dst[x1 * c..].fill(0.0);
    });
    (Cow::Owned(xp), hp, wp)
}

/// The forward of a one-group undilated convolution: tiles of output rows on
/// each thread where there are enough, else one GEMM split over the threads;
/// then the epilogue, as the im2col path does.
pub fn forward(x: &[f32], w: &PackedB, p: &ConvPlan, ep: &EpilogueRef, out: &mut [f32]) {
    use rayon::prelude::*;
    let (xp, hp, wp) = padded(x, p);
    let rows = p.n * p.out_pixels();
    if let Some(tile_px) = tile_pixels(p) {
        crate::threads::install(|| {
            out.par_chunks_mut(tile_px * p.cout)
                .enumerate()
                .for_each(|(ti, out_t)| {
                    let px0 = ti * tile_px;
                    let src = ConvRows::new(&xp, hp, wp, p, px0, out_t.len() / p.cout);
                    gemm_rows_serial(&src, w, out_t, p.cout, false);
                    epilogue::apply_serial(out_t, p.cout, px0 * p.cout, ep);
                })
        });
    } else {
        gemm_rows(
            &ConvRows::new(&xp, hp, wp, p, 0, rows),
            w,
            out,
            p.cout,
            false,
        );
        epilogue::apply(out, p.cout, 0, ep);
    }
    if let Cow::Owned(v) = xp {
        buffers::recycle(v);
    }
}
