//! The forward sweeps: the per-channel affine map `y = x * a + b` that a
//! BatchNorm with fixed statistics is, alone, with a ReLU, or with the Add
//! of a residual and a ReLU, each in one pass over the rows.

use rayon::prelude::*;

use super::rows::sweep_rows;
use crate::kernels::parallel::PAR_THRESHOLD;
use crate::kernels::{buffers, parallel};
use crate::ops::relu_mask::{positive_bit, PositiveMask, MASK_BLOCK};
use crate::threads;

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
pub(super) fn shift_of(mean: &[f32], a: &[f32], beta: Option<&[f32]>) -> Vec<f32> {
    (0..a.len())
        .map(|ch| beta.map_or(0.0, |b| b[ch]) - mean[ch] * a[ch])
        .collect()
}

/// `y = x * a + b` per channel (the last axis), rows in parallel.
pub(super) fn normalise(x: &[f32], a: &[f32], b: &[f32]) -> Vec<f32> {
    normalise_act(x, a, b, false)
}

/// [`normalise`], then `max(y, 0)` when `relu`, in the same sweep.
pub(super) fn normalise_act(x: &[f32], a: &[f32], b: &[f32], relu: bool) -> Vec<f32> {
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

/// `max(x * a + b + r, 0)` with `a`, `b` per channel (the last axis, `a.len()`
/// channels), and (if `want_mask`) its [`PositiveMask`], in one pass: the
/// end of a residual block in training, a BatchNorm's affine map, the Add of
/// the shortcut `r` and the ReLU, without the normalised values written out
/// and read back. Bitwise [`add_relu`](crate::ops::relu_mask::add_relu) of the affine map's output and `r`.
pub(super) fn normalise_add_relu(
    x: &[f32],
    a: &[f32],
    b: &[f32],
    r: &[f32],
    want_mask: bool,
) -> (Vec<f32>, Option<PositiveMask>) {
    debug_assert_eq!(x.len(), r.len());
    debug_assert_eq!(a.len(), b.len());
    let c = a.len().max(1);
    let mut out = buffers::dirty(x.len());
    let mut bits = vec![0u64; if want_mask { x.len().div_ceil(64) } else { 0 }];
    // values f0.. of the output, and their mask words when there are any
    let run = |f0: usize, out: &mut [f32], words: &mut [u64]| {
        let (xs, rs) = (&x[f0..f0 + out.len()], &r[f0..f0 + out.len()]);
        // channel by channel within each row; a task may start and end mid-row
        let (mut i, mut ch) = (0, f0 % c);
        while i < out.len() {
            let len = (c - ch).min(out.len() - i);
            let span = i..i + len;
            let per_ch = out[span.clone()]
                .iter_mut()
                .zip(&xs[span.clone()])
                .zip(&rs[span])
                .zip(&a[ch..ch + len])
                .zip(&b[ch..ch + len]);
            for ((((o, &x), &r), &a), &b) in per_ch {
                *o = (x * a + b + r).max(0.0);
            }
            (i, ch) = (i + len, 0);
        }
        for (w, vals) in words.iter_mut().zip(out.chunks(64)) {
            *w = vals
                .iter()
                .enumerate()
                .fold(0u64, |bits, (i, &v)| bits | positive_bit(v, i));
        }
    };
    if x.len() < PAR_THRESHOLD {
        run(0, &mut out, &mut bits);
    } else {
        let word_block = if want_mask { MASK_BLOCK / 64 } else { 0 };
        threads::install(|| {
            let tasks = out.par_chunks_mut(MASK_BLOCK).enumerate();
            if want_mask {
                tasks
                    .zip(bits.par_chunks_mut(word_block))
                    .for_each(|((k, o), w)| run(k * MASK_BLOCK, o, w));
            } else {
                tasks.for_each(|(k, o)| run(k * MASK_BLOCK, o, &mut []));
            }
        });
    }
    let mask = want_mask.then_some(PositiveMask::from_words(bits, x.len()));
    (out, mask)
}
