//! The batch statistics a training BatchNorm normalises with: taken in a
//! sweep of its own, or given by the convolution before it
//! ([`ChannelMoments`], summed while its output was in cache).

use std::ops::Range;

use super::moments::ChannelMoments;
use super::rows::{add_f64, channel_reduce, F32_ROWS};
use crate::error::{CoreError, Result};

/// Per-channel batch mean, biased variance and `1 / sqrt(var + eps)`.
pub(super) struct Statistics {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub inv_std: Vec<f32>,
}

impl Statistics {
    /// The statistics of `m` rows of `c` channels, in one pass of shifted
    /// sums (f64 across blocks of rows).
    pub fn of(x: &[f32], m: usize, c: usize, epsilon: f32) -> Self {
        let k = &x[..c];
        let moments = channel_reduce(m, 2 * c, |r, acc| shifted_moments(x, c, k, r, acc));
        let (s1, s2) = moments.split_at(c);
        let mf = m as f64;
        let mean64: Vec<f64> = (0..c).map(|ch| k[ch] as f64 + s1[ch] / mf).collect();
        // biased variance: E[(x-k)^2] - (E[x-k])^2, clamped at 0 against rounding
        let var64: Vec<f64> = (0..c)
            .map(|ch| (s2[ch] / mf - (s1[ch] / mf) * (s1[ch] / mf)).max(0.0))
            .collect();
        Self::from_f64(&mean64, &var64, epsilon)
    }

    /// The statistics in `given`, checked to be of `m` rows of `c` channels.
    pub fn given(
        given: &ChannelMoments,
        m: usize,
        c: usize,
        epsilon: f32,
        op: &str,
    ) -> Result<Self> {
        if (given.count, given.mean.len(), given.m2.len()) != (m, c, c) {
            return Err(CoreError::arg(
                op,
                "moments",
                format!(
                    "must be of the input's {m} rows of {c} channels, found {} rows of {}",
                    given.count,
                    given.mean.len()
                ),
            ));
        }
        Ok(Self::from_f64(&given.mean, &given.variance(), epsilon))
    }

    /// The count, mean and sum of squared deviations of `m` rows of `c`
    /// channels, in the sweep [`Statistics::of`] takes.
    pub fn moments_of(x: &[f32], m: usize, c: usize) -> ChannelMoments {
        let k = &x[..c];
        let moments = channel_reduce(m, 2 * c, |r, acc| shifted_moments(x, c, k, r, acc));
        let (s1, s2) = moments.split_at(c);
        let mf = m as f64;
        ChannelMoments {
            count: m,
            mean: (0..c).map(|ch| k[ch] as f64 + s1[ch] / mf).collect(),
            m2: (0..c)
                .map(|ch| (s2[ch] - s1[ch] * s1[ch] / mf).max(0.0))
                .collect(),
        }
    }

    pub fn from_f64(mean64: &[f64], var64: &[f64], epsilon: f32) -> Self {
        Statistics {
            mean: mean64.iter().map(|&v| v as f32).collect(),
            var: var64.iter().map(|&v| v as f32).collect(),
            inv_std: var64
                .iter()
                .map(|v| (1.0 / (v + epsilon as f64).sqrt()) as f32)
                .collect(),
        }
    }
}

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
