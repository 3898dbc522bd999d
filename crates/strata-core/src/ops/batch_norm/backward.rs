//! BatchNorm's training backward from the gradient at its affine map's
//! output: the per-channel sums `[sum dy | sum dy * xhat]` (which are also
//! dbeta and dgamma), then `dx`. A ReLU right after the map has its rule
//! applied inside both sweeps, its mask recomputed from `x`, instead of a
//! masked copy of `dy` written out first; a kept mask (after an Add) is
//! applied by the caller first, in the sweep that sums ([`masked_sums`]).

use super::rows::{add_f64, channel_reduce, channel_reduce_mut, sweep_rows, F32_ROWS};
use crate::kernels::{buffers, parallel};
use crate::ops::relu_mask::{self, PositiveMask};
use crate::tensor::Tensor;

/// What the backward keeps of a training forward.
pub(super) struct Saved {
    pub x: Tensor,
    /// Rows and channels.
    pub m: usize,
    pub c: usize,
    /// Rows the statistics are over: `m`, or every process's rows for a
    /// synchronised BatchNorm.
    pub count: f32,
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
    pub gamma: Vec<f32>,
    /// The affine map `x * scale + shift` (the ReLU's mask is recomputed from it).
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

/// The gradient the BatchNorm's backward starts from.
pub(super) enum Dy<'a> {
    /// The backward's own: `dx` is written over it.
    Owned(Vec<f32>),
    /// Read only.
    Read(&'a [f32]),
}

impl Saved {
    /// `[sum dy | sum dy * xhat]` per channel, `dy` through the ReLU of the
    /// affine map first if `relu`.
    pub fn sums(&self, x: &[f32], dy: &[f32], relu: bool) -> Vec<f64> {
        let (m, c) = (self.m, self.c);
        let (mean, inv) = (&self.mean[..], &self.inv_std[..]);
        let (a, b) = (&self.scale[..], &self.shift[..]);
        channel_reduce(m, 2 * c, |r, acc| {
            let (xs, gs) = (&x[r.start * c..r.end * c], &dy[r.start * c..r.end * c]);
            match relu {
                true => sum_dy_and_dy_xhat::<true>(xs, gs, mean, inv, a, b, acc),
                false => sum_dy_and_dy_xhat::<false>(xs, gs, mean, inv, a, b, acc),
            }
        })
    }

    /// `dy` through `mask` (given as `src`, or already in `g`), written to
    /// `g`, and [`Saved::sums`] of it (no ReLU), in one sweep. Needs rows of
    /// whole mask words (`c` a multiple of 64).
    pub fn masked_sums(
        &self,
        x: &[f32],
        mask: &PositiveMask,
        g: &mut [f32],
        src: Option<&[f32]>,
    ) -> Vec<f64> {
        let c = self.c;
        let words = mask.words();
        let (mean, inv) = (&self.mean[..], &self.inv_std[..]);
        channel_reduce_mut(g, c, 2 * c, |r, rows, acc| {
            let (f0, f1) = (r.start * c, r.end * c);
            let src = src.map(|s| &s[f0..f1]);
            let (w, xs) = (&words[f0 / 64..f1 / 64], &x[f0..f1]);
            masked_sums(rows, src, w, xs, mean, inv, acc)
        })
    }

    /// `dx` from `dy` and its [`Saved::sums`] `s`, `dy` through the ReLU of
    /// the affine map first if `relu`:
    /// `dx = gamma * inv / M * (M * dy - sum dy - xhat * sum(dy * xhat))`.
    pub fn dx(&self, x: &[f32], dy: Dy, s: &Sums, relu: bool) -> Vec<f32> {
        let (m, c) = (self.m, self.c);
        let (g, mean, inv) = (&self.gamma, &self.mean, &self.inv_std);
        let (a, b) = (&self.scale[..], &self.shift[..]);
        let mf = self.count;
        let k: Vec<f32> = (0..c).map(|ch| g[ch] * inv[ch] / mf).collect();
        // o = k*mf*dy - k*sum_g - k*inv*sum_gx*(x - mean) = p*dy + q*x + r
        let p: Vec<f32> = (0..c).map(|ch| k[ch] * mf).collect();
        let q: Vec<f32> = (0..c).map(|ch| -k[ch] * inv[ch] * s.dy_xhat[ch]).collect();
        let r: Vec<f32> = (0..c)
            .map(|ch| -k[ch] * s.dy[ch] - q[ch] * mean[ch])
            .collect();
        let pqr = [&p[..], &q[..], &r[..]];
        let rows = sweep_rows(m, c);
        match dy {
            Dy::Owned(mut dx) => {
                parallel::for_each_chunk_mut(&mut dx, rows * c, |i, io| {
                    let xs = &x[i * rows * c..][..io.len()];
                    match relu {
                        true => dx_rows_in_place::<true>(io, xs, pqr, a, b),
                        false => dx_rows_in_place::<false>(io, xs, pqr, a, b),
                    }
                });
                dx
            }
            Dy::Read(dy) => {
                let mut dx = buffers::dirty(x.len());
                parallel::for_each_chunk_mut(&mut dx, rows * c, |i, out| {
                    let off = i * rows * c;
                    let (xs, gs) = (&x[off..off + out.len()], &dy[off..off + out.len()]);
                    match relu {
                        true => dx_rows::<true>(out, xs, gs, pqr, a, b),
                        false => dx_rows::<false>(out, xs, gs, pqr, a, b),
                    }
                });
                dx
            }
        }
    }
}

/// The per-channel sums in f32: `sum dy` (dbeta) and `sum dy * xhat` (dgamma).
pub(super) struct Sums {
    pub dy: Vec<f32>,
    pub dy_xhat: Vec<f32>,
}

impl Sums {
    /// From the f64 accumulators `[sum dy | sum dy * xhat]` of `c` channels.
    pub fn of(s: &[f64], c: usize) -> Self {
        Sums {
            dy: s[..c].iter().map(|&v| v as f32).collect(),
            dy_xhat: s[c..].iter().map(|&v| v as f32).collect(),
        }
    }
}

/// `dy` through the ReLU that followed `y = x * a + b` if `RELU` (the ReLU's
/// own gradient rule, `g * 1` where `y > 0`, else `g * 0`, recomputing `y`),
/// else `dy` itself.
#[inline(always)]
fn through_relu<const RELU: bool>(g: f32, x: f32, a: f32, b: f32) -> f32 {
    if RELU {
        g * if x * a + b > 0.0 { 1.0 } else { 0.0 }
    } else {
        g
    }
}

/// Per-channel `[sum dy | sum dy * xhat]` with `xhat = (x - mean) * inv`, in
/// f32 for [`F32_ROWS`] rows at a time and f64 across them; `dy` taken
/// through the ReLU of `x * a + b` first if `RELU`.
#[allow(clippy::too_many_arguments)]
pub(super) fn sum_dy_and_dy_xhat<const RELU: bool>(
    x: &[f32],
    dy: &[f32],
    mean: &[f32],
    inv: &[f32],
    a: &[f32],
    b: &[f32],
    acc: &mut [f64],
) {
    let c = mean.len();
    let (sg, sgx) = acc.split_at_mut(c);
    let (mut bg, mut bgx) = (vec![0f32; c], vec![0f32; c]);
    for (xb, gb) in x.chunks(F32_ROWS * c).zip(dy.chunks(F32_ROWS * c)) {
        bg.fill(0.0);
        bgx.fill(0.0);
        for (xr, gr) in xb.chunks_exact(c).zip(gb.chunks_exact(c)) {
            let per_ch = bg
                .iter_mut()
                .zip(bgx.iter_mut())
                .zip(xr)
                .zip(gr)
                .zip(mean)
                .zip(inv)
                .zip(a)
                .zip(b);
            for (((((((bg, bgx), &x), &g), &mu), &inv), &a), &b) in per_ch {
                let g = through_relu::<RELU>(g, x, a, b);
                *bg += g;
                *bgx += g * ((x - mu) * inv);
            }
        }
        add_f64(sg, &bg);
        add_f64(sgx, &bgx);
    }
}

/// [`sum_dy_and_dy_xhat`] (no ReLU) of `g`, `dy` taken through a ReLU's
/// mask (`words`, the bits of these rows, whose width is a whole number of
/// words), writing `g` to `out` as it goes, so the masked gradient is not
/// swept once to be written and again to be summed. `dy` is `src`, or `out`
/// itself when that holds it. The same sums bit for bit.
#[allow(clippy::too_many_arguments)]
fn masked_sums(
    out: &mut [f32],
    src: Option<&[f32]>,
    words: &[u64],
    x: &[f32],
    mean: &[f32],
    inv: &[f32],
    acc: &mut [f64],
) {
    let c = mean.len();
    debug_assert!(c.is_multiple_of(64) && words.len() * 64 == out.len());
    let (sg, sgx) = acc.split_at_mut(c);
    let (mut bg, mut bgx) = (vec![0f32; c], vec![0f32; c]);
    let block = F32_ROWS * c;
    let rows = out.chunks_mut(block).zip(x.chunks(block)).enumerate();
    for (bi, (ob, xb)) in rows {
        bg.fill(0.0);
        bgx.fill(0.0);
        for (ri, (or, xr)) in ob.chunks_exact_mut(c).zip(xb.chunks_exact(c)).enumerate() {
            // the row through the mask, into `out` (in L1 for the sums below)
            let r0 = (bi * F32_ROWS + ri) * c;
            let row_words = &words[r0 / 64..(r0 + c) / 64];
            for (k, (o, &w)) in or.chunks_exact_mut(64).zip(row_words).enumerate() {
                match src {
                    Some(src) => {
                        let s = &src[r0 + 64 * k..r0 + 64 * (k + 1)];
                        for (i, (o, &d)) in o.iter_mut().zip(s).enumerate() {
                            *o = relu_mask::through_mask(d, w, i);
                        }
                    }
                    None => {
                        for (i, o) in o.iter_mut().enumerate() {
                            *o = relu_mask::through_mask(*o, w, i);
                        }
                    }
                }
            }
            let per_ch = bg
                .iter_mut()
                .zip(bgx.iter_mut())
                .zip(&*or)
                .zip(xr)
                .zip(mean)
                .zip(inv);
            for (((((bg, bgx), &g), &x), &mu), &inv) in per_ch {
                *bg += g;
                *bgx += g * ((x - mu) * inv);
            }
        }
        add_f64(sg, &bg);
        add_f64(sgx, &bgx);
    }
}

/// `out = p * g + q * x + r` per channel, row by row, with `g` the rows of `dy`
/// taken through the ReLU of `x * a + b` first if `RELU`: BatchNorm's dx.
fn dx_rows<const RELU: bool>(
    out: &mut [f32],
    x: &[f32],
    dy: &[f32],
    [p, q, r]: [&[f32]; 3],
    a: &[f32],
    b: &[f32],
) {
    let c = p.len();
    let rows = out.chunks_exact_mut(c).zip(x.chunks_exact(c));
    for ((o, xr), gr) in rows.zip(dy.chunks_exact(c)) {
        let per_ch = o
            .iter_mut()
            .zip(xr)
            .zip(gr)
            .zip(p)
            .zip(q)
            .zip(r)
            .zip(a)
            .zip(b);
        for (((((((o, &x), &g), &p), &q), &r), &a), &b) in per_ch {
            let g = through_relu::<RELU>(g, x, a, b);
            *o = p * g + q * x + r;
        }
    }
}

/// [`dx_rows`] written over `io`, which holds `dy` on entry (a gradient the
/// backward owns); bitwise the same values.
fn dx_rows_in_place<const RELU: bool>(
    io: &mut [f32],
    x: &[f32],
    [p, q, r]: [&[f32]; 3],
    a: &[f32],
    b: &[f32],
) {
    let c = p.len();
    for (o, xr) in io.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        let per_ch = o.iter_mut().zip(xr).zip(p).zip(q).zip(r).zip(a).zip(b);
        for ((((((o, &x), &p), &q), &r), &a), &b) in per_ch {
            let g = through_relu::<RELU>(*o, x, a, b);
            *o = p * g + q * x + r;
        }
    }
}
