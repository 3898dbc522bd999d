//! A process-wide pool of large buffers, so a training loop that allocates the same
//! multi-megabyte activations and gradients every step reuses warm memory instead
//! of fresh pages (the allocator returns big blocks to the kernel on free, and every
//! first touch of a fresh page is a page fault plus a kernel-side clear).
//!
//! Tensors give their data back when dropped, autograd gives back consumed output
//! gradients, and kernels give back their scratch. Only buffers of at least
//! [`MIN_POOLED`] elements are kept, and only as many as a high-water rule allows
//! (see [`Pool`]): the oldest go first. Contents never leak into results: [`zeroed`] clears, and [`dirty`] is
//! only used for buffers the caller overwrites completely. Reuse does not depend on
//! thread scheduling in a way that could change any value, so results stay bitwise
//! reproducible.

use std::sync::Mutex;

use crate::threads;

/// Smallest buffer (elements) worth pooling; smaller ones are cheap to allocate.
pub const MIN_POOLED: usize = 1 << 15;
/// A pooled buffer serves a request at most `1 / FIT_SLACK` smaller than its
/// capacity (see [`Pool`]).
pub const FIT_SLACK: usize = 4;
/// Upper bound on the bytes held by one pool (a backstop; the high-water rule
/// below is what bounds it in practice).
pub const MAX_POOLED_BYTES: usize = 4 << 30;

/// A pool of freed buffers, bounded by a high-water rule: the bytes it holds plus
/// the bytes it handed out that are not back yet ("outstanding") never exceed the
/// most that was ever outstanding at once, plus slack: half that mark, or twice
/// the largest buffer if more (so a narrow network alternating big sizes does
/// not evict the one it needs next, even when buffers the pool never handed
/// out, a data loader's batches, come back to it). When the bound is hit, the
/// buffers idle longest go back to the allocator first. A pooled buffer
/// dropped without being given back stays counted as outstanding, which only
/// loosens the bound.
///
/// A request takes the smallest pooled buffer that holds it and is at most
/// [`FIT_SLACK`] larger, so the same sizes asked in the same order each step
/// find the buffers that served them in the last one, and a steady training
/// loop allocates nothing from its second step on. A looser fit (a buffer up
/// to twice the request) let small requests take large buffers, whose own
/// requests then allocated afresh; the bound evicted the surplus, and the
/// allocator settled only after five or six training steps. With this fit
/// and slack the pool holds the same buffers after every step, and only the
/// second step faults pages in. The high-water rule keeps a pool bounded
/// only by [`MAX_POOLED_BYTES`] from holding gradient-sized buffers idle
/// through the forward (bench/RESULTS.md has the peak-memory figures).
struct Pool<T> {
    state: Mutex<PoolState<T>>,
}

struct PoolState<T> {
    /// Oldest first.
    bufs: Vec<Vec<T>>,
    pooled: usize,
    outstanding: usize,
    high_water: usize,
    /// The largest buffer handed out so far: twice it is the least slack
    /// over the high-water mark.
    largest: usize,
}

fn bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

impl<T> PoolState<T> {
    /// Frees the longest-idle buffers until the high-water rule holds.
    fn trim(&mut self) {
        let slack = (2 * self.largest).max(self.high_water / 2);
        let limit = (self.high_water + slack).min(MAX_POOLED_BYTES + self.outstanding);
        let mut drop_n = 0;
        while self.pooled + self.outstanding > limit && drop_n < self.bufs.len() {
            self.pooled -= bytes(&self.bufs[drop_n]);
            drop_n += 1;
        }
        self.bufs.drain(..drop_n);
    }
}

impl<T: Copy + Default> Pool<T> {
    const fn new() -> Self {
        Pool {
            state: Mutex::new(PoolState {
                bufs: Vec::new(),
                pooled: 0,
                outstanding: 0,
                high_water: 0,
                largest: 0,
            }),
        }
    }

    /// The smallest pooled buffer with capacity in `len..=len + len /
    /// FIT_SLACK`, if any; else `len` fresh values made by `fresh`. Either way the buffer counts
    /// as outstanding until it is given back.
    fn take(&self, len: usize, fresh: impl FnOnce() -> Vec<T>) -> Vec<T> {
        if len < MIN_POOLED {
            return fresh();
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let max_cap = len.saturating_add(len / FIT_SLACK);
        // prefer a buffer that already holds `len` values (handing it out is a
        // truncate, where a shorter one would be zero-filled up to `len` first)
        let best = st
            .bufs
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len && b.capacity() <= max_cap)
            .min_by_key(|(_, b)| (b.len() < len, b.capacity()))
            .map(|(i, _)| i);
        let v = match best {
            Some(i) => {
                let v = st.bufs.remove(i);
                st.pooled -= bytes(&v);
                v
            }
            None => fresh(),
        };
        st.outstanding += bytes(&v);
        st.high_water = st.high_water.max(st.outstanding);
        st.largest = st.largest.max(bytes(&v));
        st.trim();
        v
    }

    fn give(&self, v: Vec<T>) {
        if v.capacity() < MIN_POOLED {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // a buffer the pool never handed out (a `collect`, say) counts as returned
        // from nothing: saturate rather than guess
        st.outstanding = st.outstanding.saturating_sub(bytes(&v));
        st.pooled += bytes(&v);
        st.bufs.push(v);
        st.trim();
    }
}

static F32: Pool<f32> = Pool::new();
static U32: Pool<u32> = Pool::new();

/// A buffer of `len` zeros.
pub fn zeroed(len: usize) -> Vec<f32> {
    let mut fresh = false;
    let mut v = F32.take(len, || {
        fresh = true;
        vec![0.0; len]
    });
    if fresh {
        // zero pages from the allocator: the first writer touches them
        return v;
    }
    if v.len() >= len {
        v.truncate(len);
        threads::for_each_chunk_mut(&mut v, BLOCK, |_, d| d.fill(0.0));
    } else {
        v.clear();
        v.resize(len, 0.0);
    }
    v
}

/// Values per block of a parallel fill or copy: a fill or copy of tens of
/// megabytes is bandwidth one core cannot use alone.
const BLOCK: usize = 1 << 16;

/// A buffer of `len` values with unspecified (but initialised) contents, for a
/// caller that overwrites every element before reading any.
pub fn dirty(len: usize) -> Vec<f32> {
    let mut v = F32.take(len, || vec![0.0; len]);
    if v.len() >= len {
        v.truncate(len);
    } else {
        v.resize(len, 0.0);
    }
    v
}

/// A copy of `src` in a pooled buffer.
pub fn copy_of(src: &[f32]) -> Vec<f32> {
    let mut v = F32.take(src.len(), || Vec::with_capacity(src.len()));
    if v.len() >= src.len() {
        v.truncate(src.len());
        threads::for_each_chunk_mut(&mut v, BLOCK, |i, d| {
            d.copy_from_slice(&src[i * BLOCK..i * BLOCK + d.len()])
        });
    } else {
        v.clear();
        v.extend_from_slice(src);
    }
    v
}

/// Gives a buffer back for reuse (small ones are simply freed).
pub fn recycle(v: Vec<f32>) {
    F32.give(v);
}

/// `u32` buffer of `len` values with unspecified contents (see [`dirty`]).
pub fn dirty_u32(len: usize) -> Vec<u32> {
    let mut v = U32.take(len, || vec![0; len]);
    if v.len() >= len {
        v.truncate(len);
    } else {
        v.resize(len, 0);
    }
    v
}

/// Gives a `u32` buffer back for reuse.
pub fn recycle_u32(v: Vec<u32>) {
    U32.give(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_never_holds_more_than_the_high_water_mark_allows() {
        let pool: Pool<f32> = Pool::new();
        let n = MIN_POOLED;
        let unit = n * 4;
        let fresh = || vec![0.0f32; n];
        // a step that needs three buffers at once, then a phase that needs one
        let (a, b, c) = (
            pool.take(n, fresh),
            pool.take(n, fresh),
            pool.take(n, fresh),
        );
        let ptrs = [a.as_ptr(), b.as_ptr(), c.as_ptr()];
        for v in [a, b, c] {
            pool.give(v);
        }
        {
            let st = pool.state.lock().unwrap();
            assert_eq!(
                (st.outstanding, st.pooled, st.high_water),
                (0, 3 * unit, 3 * unit)
            );
        }
        // the next step gets the same buffers back: no fresh allocation
        let again: Vec<Vec<f32>> = (0..3).map(|_| pool.take(n, fresh)).collect();
        assert!(again.iter().all(|v| ptrs.contains(&v.as_ptr())));
        // a fourth, bigger-than-ever demand raises the mark; a foreign buffer
        // given back (never handed out) is kept only while the rule allows
        let big = pool.take(2 * n + MIN_POOLED + 1, || vec![0.0; 3 * n + 1]);
        for v in again {
            pool.give(v);
        }
        pool.give(vec![0.0; n]);
        pool.give(vec![0.0; n]);
        let st = pool.state.lock().unwrap();
        let slack = (2 * st.largest).max(st.high_water / 2);
        assert!(st.pooled + st.outstanding <= st.high_water + slack);
        // the foreign buffers count as two returns: the bound loosens, never tightens
        assert_eq!(st.outstanding, bytes(&big) - 2 * unit);
        assert_eq!(st.pooled, st.bufs.iter().map(bytes).sum::<usize>());
    }

    /// A request does not take a buffer more than a quarter larger than it,
    /// so a step whose sizes interleave (a small one asked while only a large
    /// one is free) finds every buffer it needs in its second run.
    #[test]
    fn a_repeated_step_allocates_nothing_the_second_time() {
        let pool: Pool<f32> = Pool::new();
        let n = MIN_POOLED;
        let fresh_count = std::cell::Cell::new(0);
        let step = || {
            let fresh = |len: usize| {
                fresh_count.set(fresh_count.get() + 1);
                vec![0.0f32; len]
            };
            let big = pool.take(2 * n, || fresh(2 * n));
            pool.give(big);
            // a loose fit would hand this one the big buffer just freed
            let small = pool.take(n, || fresh(n));
            let big = pool.take(2 * n, || fresh(2 * n));
            let odd = pool.take(n + n / 5, || fresh(n + n / 5));
            assert!(small.capacity() < 2 * n && odd.capacity() <= n + n / 4);
            for v in [small, big, odd] {
                pool.give(v);
            }
        };
        step();
        let first = fresh_count.get();
        step();
        step();
        assert_eq!(fresh_count.get(), first, "later steps allocated afresh");
    }

    #[test]
    fn reused_buffers_are_zeroed_or_sized() {
        let n = MIN_POOLED + 7;
        let mut v = zeroed(n);
        v.iter_mut().for_each(|x| *x = 3.0);
        recycle(v);
        let z = zeroed(n - 5);
        assert_eq!(z.len(), n - 5);
        assert!(z.iter().all(|&x| x == 0.0));
        recycle(z);
        let d = dirty(n + 3);
        assert_eq!(d.len(), n + 3);
        recycle(d);
        let c = copy_of(&vec![2.0; n]);
        assert!(c.len() == n && c.iter().all(|&x| x == 2.0));
        let s = zeroed(10);
        assert_eq!(s, vec![0.0; 10]);
        recycle(s);
        // big enough for the parallel fill and copy
        let big = BLOCK * 3 + 5;
        let mut v = dirty(big);
        v.iter_mut().for_each(|x| *x = 7.0);
        recycle(v);
        let z = zeroed(big - 3);
        assert!(z.len() == big - 3 && z.iter().all(|&x| x == 0.0));
        recycle(z);
        let src: Vec<f32> = (0..big).map(|i| i as f32).collect();
        assert_eq!(copy_of(&src), src);
        let mut u = dirty_u32(n);
        u[0] = 9;
        recycle_u32(u);
        assert_eq!(dirty_u32(n - 1).len(), n - 1);
    }
}
