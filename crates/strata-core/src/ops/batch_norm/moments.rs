//! Per-channel mean and variance of rows that arrive in pieces: a training
//! BatchNorm's batch statistics, taken by the convolution before it while
//! each block of its output is still in cache ([`MomentSink`] in the
//! convolution's epilogue), instead of in a sweep of its own over the whole
//! activation.
//!
//! Each piece is summed about its own first row (a shift that keeps the
//! one-pass sums exact enough even when |mean| >> std), in f32 for
//! [`F32_ROWS`] rows at a time and f64 across them, and becomes a count, a
//! mean and a sum of squared deviations; pieces are merged with Chan et al.'s
//! pairwise update in the order of their first row, so the result depends on
//! how the rows were cut into pieces (the thread count) but not on which
//! thread finished first.

use std::sync::Mutex;

/// Rows summed in f32 before their sums join the f64 accumulators (32 terms
/// lose at most ~2e-6 of their sum).
const F32_ROWS: usize = 32;

/// Count, mean and sum of squared deviations from the mean, per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMoments {
    pub count: usize,
    pub mean: Vec<f64>,
    /// `sum((x - mean)^2)`: the biased variance times `count`.
    pub m2: Vec<f64>,
}

impl ChannelMoments {
    /// No rows yet, for `channels` channels.
    pub fn empty(channels: usize) -> Self {
        ChannelMoments {
            count: 0,
            mean: vec![0.0; channels],
            m2: vec![0.0; channels],
        }
    }

    /// The moments of `rows` (a whole number of rows of `channels` values).
    pub fn of_rows(rows: &[f32], channels: usize) -> Self {
        let c = channels;
        let n = rows.len().checked_div(c).unwrap_or(0);
        if n == 0 {
            return Self::empty(c);
        }
        let k = &rows[..c];
        let (mut s1, mut s2) = (vec![0f64; c], vec![0f64; c]);
        let (mut b1, mut b2) = (vec![0f32; c], vec![0f32; c]);
        for block in rows[..n * c].chunks(F32_ROWS * c) {
            block_sums(block, k, &mut b1, &mut b2);
            s1.iter_mut().zip(&b1).for_each(|(s, &b)| *s += b as f64);
            s2.iter_mut().zip(&b2).for_each(|(s, &b)| *s += b as f64);
        }
        let nf = n as f64;
        let mean = (0..c).map(|ch| k[ch] as f64 + s1[ch] / nf).collect();
        // sum (x-k)^2 - (sum (x-k))^2 / n, clamped at 0 against rounding
        let m2 = (0..c)
            .map(|ch| (s2[ch] - s1[ch] * s1[ch] / nf).max(0.0))
            .collect();
        ChannelMoments { count: n, mean, m2 }
    }

    /// Adds `other`'s rows (Chan et al.'s update).
    pub fn merge(&mut self, other: &ChannelMoments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        for ch in 0..self.mean.len() {
            let delta = other.mean[ch] - self.mean[ch];
            self.mean[ch] += delta * nb / n;
            self.m2[ch] += other.m2[ch] + delta * delta * na * nb / n;
        }
        self.count += other.count;
    }

    /// The biased variance per channel (`m2 / count`; 0 with no rows).
    pub fn variance(&self) -> Vec<f64> {
        let n = self.count.max(1) as f64;
        self.m2.iter().map(|&m| m / n).collect()
    }
}

/// `b1 = sum(x - k)`, `b2 = sum((x - k)^2)` per channel over the rows of
/// `block` (each as long as `k`), summed row after row in f32.
fn block_sums(block: &[f32], k: &[f32], b1: &mut [f32], b2: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::available() {
        // SAFETY: the CPU has AVX-512F (checked just above); `b1` and `b2`
        // are as long as `k` (both callers size them so).
        unsafe { crate::kernels::simd::moments::block_sums(block, k, b1, b2) };
        return;
    }
    block_sums_portable(block, k, b1, b2);
}

/// [`block_sums`] on any CPU.
fn block_sums_portable(block: &[f32], k: &[f32], b1: &mut [f32], b2: &mut [f32]) {
    b1.fill(0.0);
    b2.fill(0.0);
    for row in block.chunks_exact(k.len()) {
        for (((b1, b2), &v), &k) in b1.iter_mut().zip(b2.iter_mut()).zip(row).zip(k) {
            let d = v - k;
            *b1 += d;
            *b2 += d * d;
        }
    }
}

/// Collects [`ChannelMoments`] of pieces of a matrix's rows, from any thread,
/// and merges them in row order at the end.
#[derive(Debug)]
pub struct MomentSink {
    channels: usize,
    pieces: Mutex<Vec<(usize, ChannelMoments)>>,
}

impl MomentSink {
    pub fn new(channels: usize) -> Self {
        MomentSink {
            channels,
            pieces: Mutex::new(Vec::new()),
        }
    }

    /// Records the moments of `rows`, which start at element `offset` of the
    /// matrix.
    pub fn add(&self, offset: usize, rows: &[f32]) {
        let m = ChannelMoments::of_rows(rows, self.channels);
        let mut pieces = self.pieces.lock().unwrap_or_else(|e| e.into_inner());
        pieces.push((offset, m));
    }

    /// All pieces merged in the order of their offsets.
    pub fn finish(self) -> ChannelMoments {
        let mut pieces = self.pieces.into_inner().unwrap_or_else(|e| e.into_inner());
        pieces.sort_by_key(|(offset, _)| *offset);
        let mut total = ChannelMoments::empty(self.channels);
        for (_, m) in &pieces {
            total.merge(m);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Two-pass f64 mean and biased variance.
    fn reference(x: &[f32], c: usize) -> (Vec<f64>, Vec<f64>) {
        let n = (x.len() / c) as f64;
        let mean: Vec<f64> = (0..c)
            .map(|ch| x.iter().skip(ch).step_by(c).map(|&v| v as f64).sum::<f64>() / n)
            .collect();
        let var = (0..c)
            .map(|ch| {
                let sq = x.iter().skip(ch).step_by(c);
                sq.map(|&v| (v as f64 - mean[ch]).powi(2)).sum::<f64>() / n
            })
            .collect();
        (mean, var)
    }

    /// Pieces of any sizes (one row, uneven, past a block of f32 rows), added
    /// in any order, give the two-pass statistics, also with |mean| >> std;
    /// the same cut gives the same bits whatever the order of arrival.
    #[test]
    fn pieces_in_any_order_match_two_pass_statistics() {
        let mut rng = Rng::new(3);
        let c = 5;
        for offset in [0.0f32, 1000.0] {
            let rows = 203;
            let x: Vec<f32> = (0..rows * c)
                .map(|i| offset + (i % c) as f32 + rng.normal())
                .collect();
            let (want_mean, want_var) = reference(&x, c);
            let cuts = [0, 1, 40, 41, 150, 203];
            let run = |order: &[usize]| {
                let sink = MomentSink::new(c);
                for &i in order {
                    let (r0, r1) = (cuts[i], cuts[i + 1]);
                    sink.add(r0 * c, &x[r0 * c..r1 * c]);
                }
                sink.finish()
            };
            let m = run(&[0, 1, 2, 3, 4]);
            assert_eq!(m.count, rows);
            for ch in 0..c {
                assert!((m.mean[ch] - want_mean[ch]).abs() <= 1e-6 * (1.0 + want_mean[ch].abs()));
                let var = m.variance()[ch];
                assert!(
                    (var - want_var[ch]).abs() <= 1e-5 * want_var[ch],
                    "{var} vs {}",
                    want_var[ch]
                );
            }
            assert_eq!(m, run(&[3, 1, 4, 0, 2]));
        }
        let empty = MomentSink::new(3).finish();
        // the AVX-512 sums are bitwise the portable ones, for channel counts
        // that fill the vectors and ones that leave partial vectors
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::simd::available() {
            for c in [1, 16, 70, 130] {
                let block: Vec<f32> = (0..F32_ROWS * c).map(|_| 3.0 + rng.normal()).collect();
                let k = &block[..c];
                let (mut a1, mut a2, mut p1, mut p2) =
                    (vec![9.0; c], vec![9.0; c], vec![0.0; c], vec![0.0; c]);
                // SAFETY: the CPU has AVX-512F (checked above).
                unsafe { crate::kernels::simd::moments::block_sums(&block, k, &mut a1, &mut a2) };
                block_sums_portable(&block, k, &mut p1, &mut p2);
                assert_eq!((a1, a2), (p1, p2), "{c} channels");
            }
        }
        assert_eq!((empty.count, empty.variance()), (0, vec![0.0; 3]));
    }
}
