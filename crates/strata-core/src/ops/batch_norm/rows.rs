//! Per-channel sweeps over rows of channels-last data, split into blocks
//! that depend only on the thread count and added in block order, so every
//! sum is reproducible.

use std::ops::Range;

use rayon::prelude::*;

use crate::threads;

/// Rows summed in f32 before their sums join the f64 accumulators: the f32
/// lanes run four times as many channels per instruction as f64 ones with no
/// conversion per element, and 32 terms lose at most ~2e-6 of their sum.
pub(super) const F32_ROWS: usize = 32;

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
pub(super) fn sweep_rows(rows: usize, width: usize) -> usize {
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
pub(super) fn channel_reduce(
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
pub(super) fn channel_reduce_mut(
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

/// `acc += part`, element by element, in f64.
pub(super) fn add_f64(acc: &mut [f64], part: &[f32]) {
    acc.iter_mut().zip(part).for_each(|(a, &p)| *a += p as f64);
}
