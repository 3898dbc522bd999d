//! Element-wise loops split over threads in fixed-size chunks, so the result does
//! not depend on scheduling.

use rayon::prelude::*;

use super::buffers;
use crate::threads;

/// Below this many elements a loop runs on the calling thread.
pub const PAR_THRESHOLD: usize = 1 << 15;

/// `out[i] = f(x[i])`.
pub fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync + Send) -> Vec<f32> {
    if x.len() < PAR_THRESHOLD {
        return x.iter().map(|&v| f(v)).collect();
    }
    let mut out = buffers::dirty(x.len());
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
    let mut out = buffers::dirty(a.len());
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

pub use crate::threads::for_each_chunk_mut;

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
            true => buffers::zeroed(len),
            false => part(range),
        }
    };
    let mut partials: Vec<Vec<f32>> =
        threads::install(|| (0..parts).into_par_iter().map(task).collect());
    let mut sum = partials.remove(0);
    for other in partials {
        add_assign(&mut sum, &other);
        buffers::recycle(other);
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
}
