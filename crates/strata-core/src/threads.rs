//! The thread count used by every parallel kernel.
//!
//! Set by `STRATA_NUM_THREADS` or [`set_num_threads`]; defaults to the number of
//! cores. Kernels split work in a way that depends only on this count, so a fixed
//! seed and thread count give bitwise identical results.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use rayon::prelude::*;

static REQUESTED: AtomicUsize = AtomicUsize::new(0);
/// Thread pools built so far, one per requested thread count.
type PoolCache = std::sync::Mutex<Vec<(usize, std::sync::Arc<rayon::ThreadPool>)>>;

static POOLS: OnceLock<PoolCache> = OnceLock::new();

/// Number of threads kernels use.
pub fn num_threads() -> usize {
    let n = REQUESTED.load(Ordering::Relaxed);
    if n > 0 {
        return n;
    }
    let n = std::env::var("STRATA_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
    REQUESTED.store(n, Ordering::Relaxed);
    n
}

/// Sets the thread count for all following kernels (0 restores the default).
pub fn set_num_threads(n: usize) {
    REQUESTED.store(n, Ordering::Relaxed);
}

/// Runs `f` inside a rayon pool with exactly [`num_threads`] threads (on the
/// calling thread when it is already one of them).
///
/// Every parallel kernel goes through it. Called from outside the pool, it
/// hands `f` to a worker and sleeps until `f` returns: three thread wake-ups
/// per kernel. A caller that runs many kernels in a row (a training step)
/// does better to run all of them inside one `install`: each kernel then
/// starts on a running worker and wakes only the others (a training step
/// does this: `Model::train_step`).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let n = num_threads();
    if rayon::current_thread_index().is_some() && rayon::current_num_threads() == n {
        return f();
    }
    let pools = POOLS.get_or_init(|| std::sync::Mutex::new(Vec::new()));
    let pool = {
        let mut pools = pools.lock().unwrap_or_else(|e| e.into_inner());
        match pools.iter().find(|(k, _)| *k == n) {
            Some((_, p)) => p.clone(),
            None => {
                let p = std::sync::Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(n)
                        .build()
                        .expect("building a rayon thread pool"),
                );
                pools.push((n, p.clone()));
                p
            }
        }
    };
    pool.install(f)
}

/// Splits `0..len` into `num_threads()` contiguous ranges (fewer if `len` is small).
pub fn chunk_len(len: usize, min_chunk: usize) -> usize {
    let t = num_threads().max(1);
    len.div_ceil(t).max(min_chunk).max(1)
}

/// Runs `f(chunk_index, chunk)` on the pool over `data` split into chunks of `chunk` elements.
pub fn for_each_chunk_mut(
    data: &mut [f32],
    chunk: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    let chunk = chunk.max(1);
    if data.len() <= chunk || num_threads() == 1 {
        data.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    install(|| {
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c))
    });
}
