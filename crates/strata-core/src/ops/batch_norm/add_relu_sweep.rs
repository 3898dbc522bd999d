//! The forward of BatchNorm followed by an Add and a ReLU in one sweep.

use rayon::prelude::*;

use crate::kernels::buffers;
use crate::kernels::parallel::PAR_THRESHOLD;
use crate::ops::relu_mask::{positive_bit, PositiveMask, MASK_BLOCK};
use crate::threads;

/// `max(x * a + b + r, 0)` with `a`, `b` per channel (the last axis, `a.len()`
/// channels), and (if `want_mask`) its [`PositiveMask`], in one pass: the
/// end of a residual block in training, a BatchNorm's affine map, the Add of
/// the shortcut `r` and the ReLU, without the normalised values written out
/// and read back. Bitwise [`add_relu`](crate::ops::relu_mask::add_relu) of the affine map's output and `r`.
pub fn normalise_add_relu(
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
