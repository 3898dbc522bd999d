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

/// Where `y > 0`, one byte per value: all a ReLU's backward needs, at a quarter
/// of the memory of keeping its input alive until then.
pub fn positive_mask(y: &[f32]) -> Vec<u8> {
    if y.len() < PAR_THRESHOLD {
        return y.iter().map(|&v| (v > 0.0) as u8).collect();
    }
    threads::install(|| y.par_iter().map(|&v| (v > 0.0) as u8).collect())
}

/// The ReLU's gradient rule through a [`positive_mask`]: `g * 1` where the mask is
/// set, else `g * 0` (bitwise what `g * relu'(x)` gives, signed zeros included).
pub fn masked(g: &[f32], mask: &[u8]) -> Vec<f32> {
    debug_assert_eq!(g.len(), mask.len());
    let rule = |(o, (&g, &m)): (&mut f32, (&f32, &u8))| *o = g * if m != 0 { 1.0 } else { 0.0 };
    let mut out = super::buffers::dirty(g.len());
    if g.len() < PAR_THRESHOLD {
        out.iter_mut().zip(g.iter().zip(mask)).for_each(rule);
        return out;
    }
    threads::install(|| {
        out.par_iter_mut()
            .zip(g.par_iter().zip(mask.par_iter()))
            .for_each(rule)
    });
    out
}
