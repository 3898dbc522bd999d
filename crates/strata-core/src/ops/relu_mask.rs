//! A ReLU's mask: where its output is positive, one bit per value, taken in
//! the forward (alone, or fused with the Add before it) and applied to the
//! gradient in the backward. ReLU, Add-ReLU, the convolution with a ReLU and
//! BatchNorm's fused tails share it.

use rayon::prelude::*;

use crate::kernels::buffers;
use crate::kernels::parallel::PAR_THRESHOLD;
use crate::threads;

/// Where `y > 0`, one bit per value: all a ReLU's backward needs, at 1/32 of
/// the memory of keeping its input alive until then.
pub struct PositiveMask {
    bits: Vec<u64>,
    len: usize,
}

impl PositiveMask {
    /// The bits, value `i`'s at bit `i % 64` of word `i / 64`.
    pub fn words(&self) -> &[u64] {
        &self.bits
    }

    /// The mask of `len` values from its words (as [`PositiveMask::words`]).
    pub(crate) fn from_words(bits: Vec<u64>, len: usize) -> Self {
        PositiveMask { bits, len }
    }
}

/// Bit `i` of a [`PositiveMask`] word, set where the ReLU's output `v` is positive.
#[inline(always)]
pub(crate) fn positive_bit(v: f32, i: usize) -> u64 {
    u64::from(v > 0.0) << i
}

/// The ReLU's gradient rule for value `i` of a mask word: `g * 1` where its
/// bit is set, else `g * 0` (signed zeros included).
#[inline(always)]
pub fn through_mask(g: f32, word: u64, i: usize) -> f32 {
    g * if (word >> i) & 1 != 0 { 1.0 } else { 0.0 }
}

/// Values per parallel task of the mask loops (a multiple of 64).
pub(crate) const MASK_BLOCK: usize = 1 << 14;

/// The [`PositiveMask`] of `y`.
pub fn positive_mask(y: &[f32]) -> PositiveMask {
    let mut bits = vec![0u64; y.len().div_ceil(64)];
    let fill = |(words, ys): (&mut [u64], &[f32])| {
        for (w, vals) in words.iter_mut().zip(ys.chunks(64)) {
            *w = vals
                .iter()
                .enumerate()
                .fold(0u64, |b, (i, &v)| b | positive_bit(v, i));
        }
    };
    if y.len() < PAR_THRESHOLD {
        fill((&mut bits, y));
    } else {
        threads::install(|| {
            bits.par_chunks_mut(MASK_BLOCK / 64)
                .zip(y.par_chunks(MASK_BLOCK))
                .for_each(fill)
        });
    }
    PositiveMask { bits, len: y.len() }
}

/// `max(a + b, 0)` for equal-length slices, and (if `want_mask`) its
/// [`PositiveMask`], in one pass: a residual block's Add and ReLU without the
/// sum written out and read back, and the mask taken while the output is in
/// registers instead of in a third sweep.
pub fn add_relu(a: &[f32], b: &[f32], want_mask: bool) -> (Vec<f32>, Option<PositiveMask>) {
    debug_assert_eq!(a.len(), b.len());
    let mut out = buffers::dirty(a.len());
    let mut bits = vec![0u64; if want_mask { a.len().div_ceil(64) } else { 0 }];
    let run = |out: &mut [f32], a: &[f32], b: &[f32], words: &mut [u64]| {
        for (k, ((o, x), y)) in out
            .chunks_mut(64)
            .zip(a.chunks(64))
            .zip(b.chunks(64))
            .enumerate()
        {
            let mut w = 0u64;
            for (i, ((o, &x), &y)) in o.iter_mut().zip(x).zip(y).enumerate() {
                *o = (x + y).max(0.0);
                w |= positive_bit(*o, i);
            }
            if let Some(slot) = words.get_mut(k) {
                *slot = w;
            }
        }
    };
    if a.len() < PAR_THRESHOLD {
        run(&mut out, a, b, &mut bits);
    } else {
        let word_block = if want_mask { MASK_BLOCK / 64 } else { 0 };
        threads::install(|| {
            let tasks = out
                .par_chunks_mut(MASK_BLOCK)
                .zip(a.par_chunks(MASK_BLOCK).zip(b.par_chunks(MASK_BLOCK)));
            if want_mask {
                tasks
                    .zip(bits.par_chunks_mut(word_block))
                    .for_each(|((o, (x, y)), w)| run(o, x, y, w));
            } else {
                tasks.for_each(|(o, (x, y))| run(o, x, y, &mut []));
            }
        });
    }
    let mask = want_mask.then_some(PositiveMask { bits, len: a.len() });
    (out, mask)
}

/// The ReLU's gradient rule through a [`PositiveMask`]: `g * 1` where the bit is
/// set, else `g * 0` (bitwise what `g * relu'(x)` gives, signed zeros included).
pub fn masked(g: &[f32], mask: &PositiveMask) -> Vec<f32> {
    debug_assert_eq!(g.len(), mask.len);
    let rule = |((out, gs), words): ((&mut [f32], &[f32]), &[u64])| {
        for ((o, gv), &w) in out.chunks_mut(64).zip(gs.chunks(64)).zip(words) {
            for (i, (o, &gv)) in o.iter_mut().zip(gv).enumerate() {
                *o = through_mask(gv, w, i);
            }
        }
    };
    let mut out = buffers::dirty(g.len());
    if g.len() < PAR_THRESHOLD {
        rule(((&mut out, g), &mask.bits));
        return out;
    }
    threads::install(|| {
        out.par_chunks_mut(MASK_BLOCK)
            .zip(g.par_chunks(MASK_BLOCK))
            .zip(mask.bits.par_chunks(MASK_BLOCK / 64))
            .for_each(rule)
    });
    out
}

/// [`masked`] written over `g` itself (for a gradient the caller owns: no
/// second buffer to allocate and fill).
pub fn masked_in_place(g: &mut [f32], mask: &PositiveMask) {
    debug_assert_eq!(g.len(), mask.len);
    let rule = |(gs, words): (&mut [f32], &[u64])| {
        for (gv, &w) in gs.chunks_mut(64).zip(words) {
            for (i, gv) in gv.iter_mut().enumerate() {
                *gv = through_mask(*gv, w, i);
            }
        }
    };
    if g.len() < PAR_THRESHOLD {
        rule((g, &mask.bits));
        return;
    }
    threads::install(|| {
        g.par_chunks_mut(MASK_BLOCK)
            .zip(mask.bits.par_chunks(MASK_BLOCK / 64))
            .for_each(rule)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_gradient_is_the_relu_rule_bitwise() {
        for len in [
            0,
            1,
            63,
            64,
            65,
            1000,
            PAR_THRESHOLD + 77,
            3 * MASK_BLOCK + 5,
        ] {
            let y: Vec<f32> = (0..len)
                .map(|i| match i % 5 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => (i as f32).sin(),
                    3 => f32::NAN,
                    _ => -(i as f32),
                })
                .collect();
            let g: Vec<f32> = (0..len).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let want: Vec<u32> = y
                .iter()
                .zip(&g)
                .map(|(&y, &g)| (g * if y > 0.0 { 1.0 } else { 0.0 }).to_bits())
                .collect();
            let got: Vec<u32> = masked(&g, &positive_mask(&y))
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(got, want, "len {len}");
        }
    }
}
