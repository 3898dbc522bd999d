//! Batch normalisation over every axis but the last (Keras `BatchNormalization`,
//! axis -1, channels-last), for rank 2 (N, C) and rank 4 (N, H, W, C) alike.
//!
//! Training mode normalises with the batch mean and the **biased** batch variance
//! and returns both, so the layer can update its moving statistics
//! ([`update_moving`]); inference mode uses the moving statistics it is given.
//! Per-channel sums run in f64 over fixed row blocks added in block order, so the
//! result depends only on the thread count.

use std::ops::Range;

use rayon::prelude::*;

use crate::autograd::Upstream;
use crate::error::{fmt_shape, CoreError, Result};
use crate::kernels::{buffers, parallel};
use crate::ops::relu_mask;
use crate::tensor::Tensor;
use crate::threads;
use moments::ChannelMoments;

/// `moving = moving * momentum + batch * (1 - momentum)`, Keras' update of the
/// moving mean and (biased) moving variance after a training-mode call.
pub fn update_moving(moving: &mut [f32], batch: &[f32], momentum: f32) {
    moving
        .iter_mut()
        .zip(batch)
        .for_each(|(m, &b)| *m = *m * momentum + b * (1.0 - momentum));
}

/// Rows per block of [`channel_reduce`] and [`channel_reduce_mut`].
fn reduce_block(rows: usize, width: usize) -> usize {
    threads::chunk_len(rows, min_rows(width, 512)).max(1)
}

/// Fewest rows per task of a per-channel sweep over rows of `width` values:
/// about 64K values, so a task is worth its cost, but never more than
/// `most` rows, which a narrow row needs. With wide rows the rows still
/// split among the threads (ResNet-50's 7x7 stage at batch 8 has only 392).
fn min_rows(width: usize, most: usize) -> usize {
    (1usize << 16).div_ceil(width.max(1)).clamp(8, most)
}

/// Rows per task of an element-wise sweep over `rows` rows of `width`
/// values (normalising, or BatchNorm's dx).
fn sweep_rows(rows: usize, width: usize) -> usize {
    threads::chunk_len(rows, min_rows(width, 256))
}

/// The blocks' partial sums added in block order.
fn add_partials(width: usize, partials: Vec<Vec<f64>>) -> Vec<f64> {
    let mut total = vec![0.0f64; width];
    for p in partials {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
    }
    total
}

/// Sums `k * width` f64 accumulators over `rows`, block by block in a fixed order.
fn channel_reduce(
    rows: usize,
    width: usize,
    f: impl Fn(Range<usize>, &mut [f64]) + Sync + Send,
) -> Vec<f64> {
    let block = reduce_block(rows, width);
    let starts: Vec<usize> = (0..rows).step_by(block).collect();
    let run = |&s: &usize| {
        let mut acc = vec![0.0f64; width];
        f(s..(s + block).min(rows), &mut acc);
        acc
    };
    let partials: Vec<Vec<f64>> = if starts.len() > 1 {
        threads::install(|| starts.par_iter().map(run).collect())
    } else {
        starts.iter().map(run).collect()
    };
    add_partials(width, partials)
}

/// [`channel_reduce`] (the same blocks, so the same sums) over the rows of
/// `data` (`row_len` values each), each block's `f` also given its rows to
/// write.
fn channel_reduce_mut(
    data: &mut [f32],
    row_len: usize,
    width: usize,
    f: impl Fn(Range<usize>, &mut [f32], &mut [f64]) + Sync + Send,
) -> Vec<f64> {
    let rows = data.len() / row_len.max(1);
    let block = reduce_block(rows, width);
    let run = |(b, part): (usize, &mut [f32])| {
        let mut acc = vec![0.0f64; width];
        let s = b * block;
        f(s..(s + block).min(rows), part, &mut acc);
        acc
    };
    let partials: Vec<Vec<f64>> = if rows > block {
        let parts = data.par_chunks_mut(block * row_len).enumerate();
        threads::install(|| parts.map(run).collect())
    } else {
        data.chunks_mut(block * row_len)
            .enumerate()
            .map(run)
            .collect()
    };
    add_partials(width, partials)
}

/// Checks `x` (rank >= 2, non-empty) and an optional per-channel parameter.
fn check(op: &str, x: &Tensor, params: &[(&str, Option<&[usize]>)]) -> Result<(usize, usize)> {
    let s = x.shape();
    if s.len() < 2 || x.numel() == 0 {
        return Err(CoreError::shape(
            op,
            "a non-empty input of rank >= 2 with channels last",
            fmt_shape(s),
        ));
    }
    let c = s[s.len() - 1];
    for (name, p) in params {
        if let Some(p) = p {
            if *p != [c] {
                return Err(CoreError::shape(
                    op,
                    format!("{name} {} for input {}", fmt_shape(&[c]), fmt_shape(s)),
                    fmt_shape(p),
                ));
            }
        }
    }
    Ok((x.numel() / c, c))
}

fn check_epsilon(op: &str, epsilon: f32) -> Result<()> {
    if !(epsilon >= 0.0 && epsilon.is_finite()) {
        return Err(CoreError::arg(
            op,
            "epsilon",
            format!("must be finite and >= 0, found {epsilon}"),
        ));
    }
    Ok(())
}

/// The per-channel affine map `y = x * a + b` that batch normalisation with fixed
/// statistics is: `a = gamma / sqrt(var + eps)`, `b = beta - mean * a`. Inference
/// uses it directly, and a convolution followed by an inference-mode BatchNorm can
/// apply it in its epilogue with bitwise the same result.
pub fn affine_of(
    mean: &[f32],
    variance: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>) {
    let a: Vec<f32> = variance
        .iter()
        .enumerate()
        .map(|(ch, &v)| {
            let inv = (1.0 / (v as f64 + epsilon as f64).sqrt()) as f32;
            inv * gamma.map_or(1.0, |g| g[ch])
        })
        .collect();
    let b = shift_of(mean, &a, beta);
    (a, b)
}

/// `b = beta - mean * a` per channel.
fn shift_of(mean: &[f32], a: &[f32], beta: Option<&[f32]>) -> Vec<f32> {
    (0..a.len())
        .map(|ch| beta.map_or(0.0, |b| b[ch]) - mean[ch] * a[ch])
        .collect()
}

/// `y = x * a + b` per channel (the last axis), rows in parallel.
fn normalise(x: &[f32], a: &[f32], b: &[f32]) -> Vec<f32> {
    normalise_act(x, a, b, false)
}

/// [`normalise`], then `max(y, 0)` when `relu`, in the same sweep.
fn normalise_act(x: &[f32], a: &[f32], b: &[f32], relu: bool) -> Vec<f32> {
    let c = a.len();
    let mut y = buffers::dirty(x.len());
    let rows = sweep_rows(x.len() / c, c);
    parallel::for_each_chunk_mut(&mut y, rows * c, |i, out| {
        let xs = &x[i * rows * c..][..out.len()];
        for (o, xr) in out.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
            // zipped slices of equal length: no bounds checks, so this vectorises
            for (((o, &x), &a), &b) in o.iter_mut().zip(xr).zip(a).zip(b) {
                *o = x * a + b;
            }
            if relu {
                o.iter_mut().for_each(|o| *o = o.max(0.0));
            }
        }
    });
    y
}

/// Rows summed in f32 before their sums join the f64 accumulators: the f32
/// lanes run four times as many channels per instruction as f64 ones with no
/// conversion per element, and 32 terms lose at most ~2e-6 of their sum.
const F32_ROWS: usize = 32;

/// Per-channel `[sum(x - k) | sum((x - k)^2)]` over rows `r`, in f32 for
/// [`F32_ROWS`] rows at a time and f64 across them, with `k` a per-channel
/// shift (one row of `x`) that keeps the one-pass variance exact enough even
/// when |mean| >> std.
fn shifted_moments(x: &[f32], c: usize, k: &[f32], r: Range<usize>, acc: &mut [f64]) {
    let (s1, s2) = acc.split_at_mut(c);
    let (mut b1, mut b2) = (vec![0f32; c], vec![0f32; c]);
    for block in x[r.start * c..r.end * c].chunks(F32_ROWS * c) {
        b1.fill(0.0);
        b2.fill(0.0);
        for row in block.chunks_exact(c) {
            for (((b1, b2), &v), &k) in b1.iter_mut().zip(b2.iter_mut()).zip(row).zip(k) {
                let d = v - k;
                *b1 += d;
                *b2 += d * d;
            }
        }
        add_f64(s1, &b1);
        add_f64(s2, &b2);
    }
}

/// `acc += part`, element by element, in f64.
fn add_f64(acc: &mut [f64], part: &[f32]) {
    acc.iter_mut().zip(part).for_each(|(a, &p)| *a += p as f64);
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
fn sum_dy_and_dy_xhat<const RELU: bool>(
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

/// What follows the BatchNorm's affine map in one training-mode op.
#[derive(Clone, Copy)]
enum Tail<'a> {
    None,
    /// A ReLU, its mask recomputed from the input in the backward.
    Relu,
    /// The Add of a residual, then a ReLU, its mask kept as bits.
    AddRelu(&'a Tensor),
}

fn values_or(t: Option<&Tensor>, c: usize, v: f32) -> Vec<f32> {
    t.map_or_else(|| vec![v; c], |t| t.to_vec())
}

impl Tensor {
    /// Training-mode batch normalisation over all axes but the last.
    /// Returns `(y, batch_mean, batch_variance)` with the biased variance; `gamma`
    /// (scale) and `beta` (center) default to 1 and 0 when absent.
    pub fn batch_norm_train(
        &self,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        epsilon: f32,
    ) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
        self.batch_norm_train_act(gamma, beta, epsilon, Tail::None, None)
    }

    /// [`Tensor::batch_norm_train`] followed by a ReLU, as one op: the forward
    /// writes `max(y, 0)` in the normalising sweep and the backward applies the
    /// ReLU's mask from `x`, so `y` is neither kept nor swept again. Bitwise the
    /// two separate ops.
    pub fn batch_norm_train_relu(
        &self,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        epsilon: f32,
    ) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
        self.batch_norm_train_act(gamma, beta, epsilon, Tail::Relu, None)
    }

    /// [`Tensor::batch_norm_train`] (then a ReLU when `relu`, as
    /// [`Tensor::batch_norm_train_relu`]) with the batch statistics given:
    /// `moments` of `self`, as [`Tensor::conv2d_moments`] returns them with
    /// its output. The same op and gradients; the statistics differ from the
    /// ones it would take itself by rounding only (other partial sums).
    pub fn batch_norm_train_with(
        &self,
        moments: &ChannelMoments,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        epsilon: f32,
        relu: bool,
    ) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
        let tail = if relu { Tail::Relu } else { Tail::None };
        self.batch_norm_train_act(gamma, beta, epsilon, tail, Some(moments))
    }

    /// `relu(batch_norm_train(self) + residual)`, a residual block's end while
    /// training, as one op: one sweep normalises, adds the shortcut and
    /// applies the ReLU, keeping only the ReLU's mask (one bit per value) for
    /// the backward, which gives `residual` its gradient and runs the
    /// BatchNorm's on the same values. With `moments` (of `self`, as
    /// [`Tensor::batch_norm_train_with`] takes them) the batch statistics are
    /// not swept again. Bitwise [`Tensor::batch_norm_train`] then
    /// [`Tensor::add_relu`] when the statistics are the same.
    pub fn batch_norm_train_add_relu(
        &self,
        residual: &Tensor,
        moments: Option<&ChannelMoments>,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        epsilon: f32,
    ) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
        if residual.shape() != self.shape() {
            return Err(CoreError::arg(
                "batch_norm_train_add_relu",
                "residual",
                format!(
                    "must have the input's shape {}, found {}",
                    fmt_shape(self.shape()),
                    fmt_shape(residual.shape())
                ),
            ));
        }
        self.batch_norm_train_act(gamma, beta, epsilon, Tail::AddRelu(residual), moments)
    }

    fn batch_norm_train_act(
        &self,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        epsilon: f32,
        tail: Tail,
        given: Option<&ChannelMoments>,
    ) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
        const OP: &str = "batch_norm_train";
        let op: &'static str = match tail {
            Tail::None => OP,
            Tail::Relu => "batch_norm_train_relu",
            Tail::AddRelu(_) => "batch_norm_train_add_relu",
        };
        // the ReLU's mask is recomputed from x where it follows the affine map alone
        let relu = matches!(tail, Tail::Relu);
        let (m, c) = check(
            OP,
            self,
            &[
                ("gamma", gamma.map(|t| t.shape())),
                ("beta", beta.map(|t| t.shape())),
            ],
        )?;
        check_epsilon(OP, epsilon)?;
        if let Some(g) = given {
            if (g.count, g.mean.len(), g.m2.len()) != (m, c, c) {
                return Err(CoreError::arg(
                    op,
                    "moments",
                    format!(
                        "must be of the input's {m} rows of {c} channels, found {} rows of {}",
                        g.count,
                        g.mean.len()
                    ),
                ));
            }
        }
        let x = self.data();
        let (mean64, var64) = match given {
            Some(g) => (g.mean.clone(), g.variance()),
            None => {
                let k = &x[..c];
                let moments = channel_reduce(m, 2 * c, |r, acc| shifted_moments(&x, c, k, r, acc));
                let (s1, s2) = moments.split_at(c);
                let mf = m as f64;
                let mean64: Vec<f64> = (0..c).map(|ch| k[ch] as f64 + s1[ch] / mf).collect();
                // biased variance: E[(x-k)^2] - (E[x-k])^2, clamped at 0 against rounding
                let var64: Vec<f64> = (0..c)
                    .map(|ch| (s2[ch] / mf - (s1[ch] / mf) * (s1[ch] / mf)).max(0.0))
                    .collect();
                (mean64, var64)
            }
        };
        let var: Vec<f32> = var64.iter().map(|&v| v as f32).collect();
        let mean: Vec<f32> = mean64.iter().map(|&v| v as f32).collect();
        let inv_std: Vec<f32> = var64
            .iter()
            .map(|v| (1.0 / (v + epsilon as f64).sqrt()) as f32)
            .collect();
        let g = values_or(gamma, c, 1.0);
        let scale: Vec<f32> = inv_std.iter().zip(&g).map(|(i, g)| i * g).collect();
        let shift = shift_of(&mean, &scale, beta.map(|b| b.to_vec()).as_deref());
        let mut inputs = vec![self];
        inputs.extend(gamma);
        inputs.extend(beta);
        let (y, mask) = match tail {
            Tail::AddRelu(r) => {
                inputs.push(r);
                let record = crate::autograd::should_record(&inputs);
                add_relu_sweep::normalise_add_relu(&x, &scale, &shift, &r.data(), record)
            }
            _ => (normalise_act(&x, &scale, &shift, relu), None),
        };
        drop(x);
        let want_r = match tail {
            Tail::AddRelu(r) => Some(r.requires_grad()),
            _ => None,
        };
        let xt = self.clone();
        let (has_g, has_b) = (gamma.is_some(), beta.is_some());
        let want_g = gamma.is_some_and(|t| t.requires_grad());
        let want_b = beta.is_some_and(|t| t.requires_grad());
        let (mean_s, inv_s) = (mean.clone(), inv_std);
        let out = Tensor::from_op_either(y, self.shape().to_vec(), op, &inputs, move |up| {
            // after an Add and a ReLU: dy through the ReLU's mask is the
            // residual's gradient, and the BatchNorm's upstream, read only
            let x = xt.data();
            let (mean, inv) = (&mean_s, &inv_s);
            // rows of whole mask words: the mask applied in the sweep that
            // sums (else in one of its own first)
            let words_per_row = c.is_multiple_of(64);
            let (up, residual_g, s) = match (&mask, up) {
                (Some(mask), up) if words_per_row => {
                    let words = mask.words();
                    let sweep = |g: &mut [f32], src: Option<&[f32]>| {
                        channel_reduce_mut(g, c, 2 * c, |r, rows, acc| {
                            let (f0, f1) = (r.start * c, r.end * c);
                            let src = src.map(|s| &s[f0..f1]);
                            let (w, xs) = (&words[f0 / 64..f1 / 64], &x[f0..f1]);
                            masked_sums(rows, src, w, xs, mean, inv, acc)
                        })
                    };
                    let (s, g) = match up {
                        Upstream::Owned(mut g) => (sweep(&mut g, None), g),
                        Upstream::Shared(dy) => {
                            let mut g = buffers::dirty(dy.len());
                            (sweep(&mut g, Some(&dy)), g)
                        }
                    };
                    (None, Some(g), Some(s))
                }
                (Some(mask), up) => {
                    let through = match up {
                        Upstream::Owned(mut g) => {
                            relu_mask::masked_in_place(&mut g, mask);
                            g
                        }
                        Upstream::Shared(dy) => relu_mask::masked(&dy, mask),
                    };
                    (None, Some(through), None)
                }
                (None, up) => (Some(up), None, None),
            };
            let dy: &[f32] = match (&up, &residual_g) {
                (Some(up), _) => up.as_slice(),
                (None, Some(through)) => through,
                (None, None) => unreachable!("a gradient without an upstream"),
            };
            // the ReLU's mask is recomputed from x in both passes below
            // instead of written out as a masked copy of dy
            let (a, b) = (&scale[..], &shift[..]);
            // [sum dy | sum dy * xhat] per channel
            let s = s.unwrap_or_else(|| {
                channel_reduce(m, 2 * c, |r, acc| {
                    let (xs, gs) = (&x[r.start * c..r.end * c], &dy[r.start * c..r.end * c]);
                    match relu {
                        true => sum_dy_and_dy_xhat::<true>(xs, gs, mean, inv, a, b, acc),
                        false => sum_dy_and_dy_xhat::<false>(xs, gs, mean, inv, a, b, acc),
                    }
                })
            });
            let (sum_g, sum_gx): (Vec<f32>, Vec<f32>) = (
                s[..c].iter().map(|&v| v as f32).collect(),
                s[c..].iter().map(|&v| v as f32).collect(),
            );
            let dx = xt.requires_grad().then(|| {
                // dx = gamma * inv / M * (M * dy - sum dy - xhat * sum(dy * xhat))
                let mf = m as f32;
                let k: Vec<f32> = (0..c).map(|ch| g[ch] * inv[ch] / mf).collect();
                // o = k*mf*dy - k*sum_g - k*inv*sum_gx*(x - mean) = p*dy + q*x + r
                let p: Vec<f32> = (0..c).map(|ch| k[ch] * mf).collect();
                let q: Vec<f32> = (0..c).map(|ch| -k[ch] * inv[ch] * sum_gx[ch]).collect();
                let r: Vec<f32> = (0..c)
                    .map(|ch| -k[ch] * sum_g[ch] - q[ch] * mean[ch])
                    .collect();
                let pqr = [&p[..], &q[..], &r[..]];
                let rows = sweep_rows(m, c);
                // dx from a dy it only reads
                let read_only = |dy: &[f32]| {
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
                };
                match up {
                    // dy is this backward's alone: dx is written over it
                    Some(Upstream::Owned(mut dx)) => {
                        parallel::for_each_chunk_mut(&mut dx, rows * c, |i, io| {
                            let xs = &x[i * rows * c..][..io.len()];
                            match relu {
                                true => dx_rows_in_place::<true>(io, xs, pqr, a, b),
                                false => dx_rows_in_place::<false>(io, xs, pqr, a, b),
                            }
                        });
                        dx
                    }
                    Some(Upstream::Shared(dy)) => read_only(&dy),
                    None => read_only(residual_g.as_deref().unwrap_or_default()),
                }
            });
            let mut grads = vec![dx];
            if has_g {
                grads.push(want_g.then(|| sum_gx.clone()));
            }
            if has_b {
                grads.push(want_b.then(|| sum_g.clone()));
            }
            if let Some(want_r) = want_r {
                grads.push(match (want_r, residual_g) {
                    (true, g) => g,
                    (false, g) => {
                        if let Some(g) = g {
                            buffers::recycle(g);
                        }
                        None
                    }
                });
            }
            grads
        });
        Ok((out, mean, var))
    }

    /// Inference-mode batch normalisation with given moving statistics (no gradient
    /// flows to them): `y = (x - moving_mean) / sqrt(moving_variance + eps) * gamma + beta`.
    pub fn batch_norm_infer(
        &self,
        moving_mean: &[f32],
        moving_variance: &[f32],
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        epsilon: f32,
    ) -> Result<Tensor> {
        const OP: &str = "batch_norm_infer";
        let (m, c) = check(
            OP,
            self,
            &[
                ("moving_mean", Some(&[moving_mean.len()])),
                ("moving_variance", Some(&[moving_variance.len()])),
                ("gamma", gamma.map(|t| t.shape())),
                ("beta", beta.map(|t| t.shape())),
            ],
        )?;
        check_epsilon(OP, epsilon)?;
        let inv: Vec<f32> = moving_variance
            .iter()
            .map(|&v| (1.0 / (v as f64 + epsilon as f64).sqrt()) as f32)
            .collect();
        let g = values_or(gamma, c, 1.0);
        let bv = beta.map(|b| b.to_vec());
        let (scale, shift) = affine_of(
            moving_mean,
            moving_variance,
            Some(&g),
            bv.as_deref(),
            epsilon,
        );
        let y = normalise(&self.data(), &scale, &shift);
        let mut inputs = vec![self];
        inputs.extend(gamma);
        inputs.extend(beta);
        let xt = self.clone();
        let mean = moving_mean.to_vec();
        let (has_g, has_b) = (gamma.is_some(), beta.is_some());
        let want_g = gamma.is_some_and(|t| t.requires_grad());
        let want_b = beta.is_some_and(|t| t.requires_grad());
        Ok(Tensor::from_op(
            y,
            self.shape().to_vec(),
            OP,
            &inputs,
            move |dy| {
                let dx = xt.requires_grad().then(|| {
                    // dx = dy * gamma * inv_std per channel
                    let mut dx = buffers::dirty(dy.len());
                    let rows = sweep_rows(m, c);
                    parallel::for_each_chunk_mut(&mut dx, rows * c, |i, out| {
                        let gs = &dy[i * rows * c..][..out.len()];
                        for (o, gr) in out.chunks_exact_mut(c).zip(gs.chunks_exact(c)) {
                            for ((o, &g), &s) in o.iter_mut().zip(gr).zip(&scale) {
                                *o = g * s;
                            }
                        }
                    });
                    dx
                });
                let mut grads = vec![dx];
                if has_g || has_b {
                    let x = xt.data();
                    let s = channel_reduce(m, 2 * c, |r, acc| {
                        let (xs, gs) = (&x[r.start * c..r.end * c], &dy[r.start * c..r.end * c]);
                        // (no ReLU: the last two per-channel slices go unread)
                        sum_dy_and_dy_xhat::<false>(xs, gs, &mean, &inv, &mean, &inv, acc)
                    });
                    if has_g {
                        grads.push(want_g.then(|| s[c..].iter().map(|&v| v as f32).collect()));
                    }
                    if has_b {
                        grads.push(want_b.then(|| s[..c].iter().map(|&v| v as f32).collect()));
                    }
                }
                grads
            },
        ))
    }
}

mod add_relu_sweep;
pub mod moments;
#[cfg(test)]
mod tests;
