//! Element-wise loops split over threads in fixed-size chunks, so the result does
//! not depend on scheduling.

use rayon::prelude::*;

use crate::threads;

/// Below this many elements a loop runs on the calling thread.
pub const PAR_THRESHOLD: usize = 1 << 15;

/// `out[i] = f(x[i])`.
pub fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync + Send) -> Vec<f32> {
    if x.len() < PAR_THRESHOLD {
        return x.iter().map(|&v| f(v)).collect();
    }
    let mut out = super::buffers::dirty(x.len());
    let chunk = threads::chunk_len(x.len(), 4096);
    threads::install(|| {
        out.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &v)| *o = f(v)))
    });
    out
}

/// Whether every value of `x` is finite. A value is not when its exponent
/// bits are all ones (an infinity or a NaN): an integer test whose
/// or-reduction over a block vectorises, where `iter().any(|v|
/// !v.is_finite())` stops at every element to branch. Blocks go to the
/// threads; a training step checks its 25 million gradients this way.
pub fn all_finite(x: &[f32]) -> bool {
    const EXP: u32 = 0x7f80_0000;
    let block_ok = |b: &[f32]| {
        b.iter()
            .fold(0u32, |bad, v| bad | u32::from(v.to_bits() & EXP == EXP))
            == 0
    };
    if x.len() < PAR_THRESHOLD {
        return x.chunks(4096).all(block_ok);
    }
    let chunk = threads::chunk_len(x.len(), 4096);
    threads::install(|| x.par_chunks(chunk).all(|c| c.chunks(4096).all(block_ok)))
}

/// `out[i] = f(a[i], b[i])` for equal-length slices.
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Vec<f32> {
    debug_assert_eq!(a.len(), b.len());
    if a.len() < PAR_THRESHOLD {
        return a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect();
    }
    let mut out = super::buffers::dirty(a.len());
    let chunk = threads::chunk_len(a.len(), 4096);
    threads::install(|| {
        out.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
            .for_each(|(o, (x, y))| {
                o.iter_mut()
                    .zip(x.iter().zip(y))
                    .for_each(|(o, (&x, &y))| *o = f(x, y))
            })
    });
    out
}

/// Runs `f(chunk_index, chunk)` over `data` split into chunks of `chunk` elements.
pub fn for_each_chunk_mut(
    data: &mut [f32],
    chunk: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    let chunk = chunk.max(1);
    if data.len() <= chunk || threads::num_threads() == 1 {
        data.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    threads::install(|| {
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c))
    });
}

/// The sum of `len`-value partial results over `items` split into `parts`
/// (at least 1) contiguous ranges, `part(range)` computed as one task per
/// range on the thread pool (an empty range gives zeros) and the partials
/// added in range order, so the sum depends only on `parts`, not on
/// scheduling. The partials' buffers go back to the pool.
pub fn sum_over_parts(
    items: usize,
    parts: usize,
    len: usize,
    part: impl Fn(std::ops::Range<usize>) -> Vec<f32> + Sync + Send,
) -> Vec<f32> {
    let parts = parts.max(1);
    let task = |i: usize| {
        let range = items * i / parts..items * (i + 1) / parts;
        match range.is_empty() {
            true => super::buffers::zeroed(len),
            false => part(range),
        }
    };
    let mut partials: Vec<Vec<f32>> =
        threads::install(|| (0..parts).into_par_iter().map(task).collect());
    let mut sum = partials.remove(0);
    for other in partials {
        add_assign(&mut sum, &other);
        super::buffers::recycle(other);
    }
    sum
}

/// `acc[i] += x[i]` for equal-length slices (a gradient reaching a tensor twice).
pub fn add_assign(acc: &mut [f32], x: &[f32]) {
    debug_assert_eq!(acc.len(), x.len());
    if acc.len() < PAR_THRESHOLD {
        acc.iter_mut().zip(x).for_each(|(a, b)| *a += b);
        return;
    }
    let chunk = threads::chunk_len(acc.len(), 4096);
    threads::install(|| {
        acc.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(a, x)| a.iter_mut().zip(x).for_each(|(a, b)| *a += b))
    });
}

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
}

/// Bit `i` of a [`PositiveMask`] word, set where the ReLU's output `v` is positive.
#[inline(always)]
fn positive_bit(v: f32, i: usize) -> u64 {
    u64::from(v > 0.0) << i
}

/// The ReLU's gradient rule for value `i` of a mask word: `g * 1` where its
/// bit is set, else `g * 0` (signed zeros included).
#[inline(always)]
pub fn through_mask(g: f32, word: u64, i: usize) -> f32 {
    g * if (word >> i) & 1 != 0 { 1.0 } else { 0.0 }
}

/// Values per parallel task of the mask loops (a multiple of 64).
const MASK_BLOCK: usize = 1 << 14;

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
    let mut out = super::buffers::dirty(a.len());
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

/// `max(x * a + b + r, 0)` with `a`, `b` per channel (the last axis, `a.len()`
/// channels), and (if `want_mask`) its [`PositiveMask`], in one pass: the
/// end of a residual block in training, a BatchNorm's affine map, the Add of
/// the shortcut `r` and the ReLU, without the normalised values written out
/// and read back. Bitwise [`add_relu`] of the affine map's output and `r`.
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
    let mut out = super::buffers::dirty(x.len());
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
    let mask = want_mask.then_some(PositiveMask { bits, len: x.len() });
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
    let mut out = super::buffers::dirty(g.len());
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

    /// Infinities and NaNs anywhere (first, last, past a block, in a
    /// parallel-sized slice) are found; finite extremes are not flagged.
    #[test]
    fn all_finite_finds_every_non_finite_value() {
        let finite = [0.0, -0.0, f32::MAX, f32::MIN, f32::MIN_POSITIVE, 1e-45];
        assert!(all_finite(&finite));
        assert!(all_finite(&[]));
        for n in [1, 4097, PAR_THRESHOLD * 3 + 5] {
            for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN] {
                for at in [0, n / 2, n - 1] {
                    let mut x = vec![1.5f32; n];
                    assert!(all_finite(&x));
                    x[at] = bad;
                    assert!(!all_finite(&x), "{bad} at {at} of {n}");
                }
            }
        }
    }

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
