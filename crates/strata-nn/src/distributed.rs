//! Data-parallel training, strata-nn's side: the [`Collective`] that the
//! ranks of a distributed run talk through (MPI in strata-dist, behind its
//! `mpi` feature), what `fit` needs of it, the all-reduce as an autograd op
//! (synchronised BatchNorm), and the per-sample keys that make dropout masks
//! independent of the number of ranks.

use std::sync::{Arc, Mutex};

use strata_core::Rng;

use crate::error::{NnError, Result};

/// Collective operations over the ranks of one run.
///
/// Every method is collective: all ranks call it, in the same order, with
/// buffers of the same length. Sums are fixed-order (rank 0's part, plus
/// rank 1's, ...), so every rank ends with the same bits and a run at a
/// given rank count and thread count is bitwise reproducible.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Replaces `data` with its sum over the ranks, added in rank order.
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()>;
    /// [`Collective::all_reduce_sum`] in double precision (loss and metric sums).
    fn all_reduce_sum_f64(&self, data: &mut [f64]) -> Result<()>;
    /// Replaces `data` with rank `root`'s.
    fn broadcast(&self, root: usize, data: &mut [f32]) -> Result<()>;
    /// Every rank's `values`, in rank order.
    fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<Vec<u64>>>;
    /// A second, independent channel over the same ranks, for a
    /// communication thread whose collectives must not interleave with the
    /// calling thread's; `None` where the engine has no such thing.
    fn split_off(&self) -> Option<Arc<dyn Collective>> {
        None
    }
}

/// Sums `parts` element by element, in the order given, into `out`: the
/// fixed-order reduction every [`Collective`] uses.
pub fn sum_in_order(parts: &[&[f32]], out: &mut [f32]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    for p in parts {
        out.iter_mut().zip(p.iter()).for_each(|(o, &v)| *o += v);
    }
}

/// How `fit` trains across ranks.
#[derive(Clone)]
pub struct Distributed {
    pub collective: Arc<dyn Collective>,
    /// BatchNormalization normalises with the global batch's statistics
    /// (one all-reduce of per-channel sums per layer); `false` keeps each
    /// rank's own (PyTorch DDP's default), rank 0's moving statistics then
    /// broadcast after every step.
    pub sync_batchnorm: bool,
    /// Named values every rank must hold alike (the command line's flags,
    /// say), checked at start beside the model spec and the data size.
    pub agree_on: Vec<(String, u64)>,
    /// Gradient bucket size in bytes (PyTorch DDP's 25 MB by default).
    pub bucket_bytes: usize,
    /// How each training step went, filled in as training goes (shared by
    /// the clones of these settings).
    pub timings: Arc<std::sync::Mutex<Vec<StepTiming>>>,
}

/// One data-parallel training step as this rank saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTiming {
    /// The whole step: forward, backward, sums, update.
    pub step: std::time::Duration,
    /// Time the step stood waiting for gradient sums after its backward
    /// (and for the loss and metrics): the communication not hidden.
    pub waited: std::time::Duration,
    /// Gradient bytes all-reduced.
    pub bytes: usize,
    /// Buckets, and those handed to the communication thread before the
    /// backward returned.
    pub buckets: usize,
    pub overlapped: usize,
}

/// Medians over `timings` past the first `warmup` steps (all of them when
/// there are no more): (step, waited), and the last step's bytes, buckets
/// and overlapped buckets.
pub fn median_timing(timings: &[StepTiming], warmup: usize) -> Option<StepTiming> {
    let steady = if timings.len() > warmup {
        &timings[warmup..]
    } else {
        timings
    };
    let last = *steady.last()?;
    let median = |f: fn(&StepTiming) -> std::time::Duration| {
        let mut v: Vec<_> = steady.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    Some(StepTiming {
        step: median(|t| t.step),
        waited: median(|t| t.waited),
        ..last
    })
}

impl Distributed {
    pub fn new(collective: Arc<dyn Collective>) -> Self {
        Distributed {
            collective,
            sync_batchnorm: true,
            agree_on: Vec::new(),
            bucket_bytes: 25 * 1024 * 1024,
            timings: Arc::default(),
        }
    }

    pub fn rank(&self) -> usize {
        self.collective.rank()
    }

    pub fn size(&self) -> usize {
        self.collective.size()
    }

    /// Whether any rank says `flag` (one small all-reduce): for decisions
    /// that all ranks must take together, such as stopping on Ctrl-C.
    pub fn any(&self, flag: bool) -> Result<bool> {
        let mut v = [if flag { 1.0 } else { 0.0 }];
        self.collective.all_reduce_sum_f64(&mut v)?;
        Ok(v[0] > 0.0)
    }

    /// Checks that every rank holds the same value under each name; the
    /// error, the same on every rank, names the first that differs and the
    /// ranks that differ from rank 0.
    pub fn agree(&self, items: &[(String, u64)]) -> Result<()> {
        let values: Vec<u64> = items.iter().map(|(_, v)| *v).collect();
        let all = self.collective.all_gather_u64(&values)?;
        if all.iter().any(|v| v.len() != values.len()) {
            return Err(NnError::Ranks(
                "the ranks check different lists of settings (different strata builds?)".into(),
            ));
        }
        for (i, (name, _)) in items.iter().enumerate() {
            let differ: Vec<String> = all
                .iter()
                .enumerate()
                .filter(|(_, v)| v[i] != all[0][i])
                .map(|(r, _)| r.to_string())
                .collect();
            if !differ.is_empty() {
                return Err(NnError::Ranks(format!(
                    "the ranks disagree on {name}: rank{} {} differ{} from rank 0; start every rank with the same command and data",
                    if differ.len() == 1 { "" } else { "s" },
                    differ.join(", "),
                    if differ.len() == 1 { "s" } else { "" },
                )));
            }
        }
        Ok(())
    }
}

/// A stable 64-bit hash (FNV-1a) of bytes: for the values ranks compare.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What a distributed run's layers see: the collective for synchronised
/// BatchNorm, and the keys of the samples of the current step for dropout.
pub struct LayerDistribution {
    pub collective: Arc<dyn Collective>,
    pub sync_batchnorm: bool,
    /// One key per row of the step's local batch, from (seed, epoch, the
    /// sample's global index): dropout draws each row's mask from its key.
    pub sample_keys: Mutex<Vec<u64>>,
}

impl LayerDistribution {
    pub fn keys(&self) -> Vec<u64> {
        self.sample_keys
            .lock()
            .map(|k| k.clone())
            .unwrap_or_default()
    }
}

/// SplitMix64 of a pair: independent streams per (a, b).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The dropout mask of a batch whose rows have `keys`, for the layer named
/// `layer`: row `j` drawn from `(keys[j], layer)` alone, so a sample gets
/// the same mask whichever rank and batch position it lands on.
pub fn keyed_dropout_mask(keys: &[u64], row: usize, rate: f32, layer: &str) -> Vec<f32> {
    let salt = hash_bytes(layer.as_bytes());
    let scale = 1.0 / (1.0 - rate);
    let mut mask = vec![0.0; keys.len() * row];
    for (m, &k) in mask.chunks_mut(row.max(1)).zip(keys) {
        Rng::new(mix(k, salt)).fill_unit(m);
        m.iter_mut()
            .for_each(|v| *v = if *v < rate { 0.0 } else { scale });
    }
    mask
}

/// Sums `x` over the ranks as an autograd op: the backward sums the output
/// gradient over the ranks too (each rank's loss is its share of the
/// global loss, so the gradient of one rank's input is the sum of every
/// rank's upstream gradient).
/// The collective's f64 all-reduce as the core's [`ProcessSum`] (for a
/// synchronised BatchNorm). It may run inside a backward, which cannot
/// return an error, while the other ranks wait for this one: a failure
/// prints one error line and ends the process.
///
/// [`ProcessSum`]: strata_core::ops::batch_norm::ProcessSum
pub fn process_sum(collective: &Arc<dyn Collective>) -> strata_core::ops::batch_norm::ProcessSum {
    let c = Arc::clone(collective);
    Arc::new(move |v: &mut [f64]| {
        if let Err(e) = c.all_reduce_sum_f64(v) {
            eprintln!("error: train: the all-reduce of a synchronised BatchNorm failed: {e}");
            std::process::exit(1);
        }
    })
}

/// A [`Collective`] over the threads of one process, for tests of the
/// layer-level parts (synchronised BatchNorm) without MPI. Each rank is one
/// thread holding one member of [`ThreadGroup::new`]'s result.
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<ThreadShared>,
    /// How many channels this member has split off.
    splits: std::sync::atomic::AtomicUsize,
}

struct ThreadShared {
    size: usize,
    state: Mutex<ThreadState>,
    wake: std::sync::Condvar,
    /// The channels split off, the `k`-th shared by every rank's `k`-th
    /// [`Collective::split_off`].
    splits: Mutex<Vec<Arc<ThreadShared>>>,
}

impl ThreadShared {
    fn new(size: usize) -> ThreadShared {
        ThreadShared {
            size,
            state: Mutex::new(ThreadState {
                parts: vec![None; size],
                ..ThreadState::default()
            }),
            wake: std::sync::Condvar::new(),
            splits: Mutex::new(Vec::new()),
        }
    }
}

#[derive(Default)]
struct ThreadState {
    round: u64,
    parts: Vec<Option<Vec<f64>>>,
    result: Vec<Vec<f64>>,
    taken: usize,
}

impl ThreadGroup {
    /// `size` members, one per rank.
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(ThreadShared::new(size));
        (0..size)
            .map(|rank| ThreadGroup {
                rank,
                shared: Arc::clone(&shared),
                splits: Default::default(),
            })
            .collect()
    }

    /// Every rank's `data`, in rank order, once all have given theirs.
    fn exchange(&self, data: Vec<f64>) -> Result<Vec<Vec<f64>>> {
        let poisoned = |_| NnError::Ranks("a rank thread panicked".into());
        let s = &self.shared;
        let mut st = s.state.lock().map_err(poisoned)?;
        // wait until the previous round's results have all been taken
        while st.taken != 0 && st.taken < s.size {
            st = s.wake.wait(st).map_err(poisoned)?;
        }
        if st.taken == s.size {
            st.taken = 0;
            st.result.clear();
        }
        let round = st.round;
        st.parts[self.rank] = Some(data);
        if st.parts.iter().all(Option::is_some) {
            st.result = st.parts.iter_mut().filter_map(Option::take).collect();
            st.round += 1;
            s.wake.notify_all();
        }
        while st.round == round {
            st = s.wake.wait(st).map_err(poisoned)?;
        }
        let out = st.result.clone();
        st.taken += 1;
        s.wake.notify_all();
        Ok(out)
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()> {
        let all = self.exchange(data.iter().map(|&v| v as f64).collect())?;
        let parts: Vec<Vec<f32>> = all
            .iter()
            .map(|p| p.iter().map(|&v| v as f32).collect())
            .collect();
        let refs: Vec<&[f32]> = parts.iter().map(|p| p.as_slice()).collect();
        sum_in_order(&refs, data);
        Ok(())
    }
    fn all_reduce_sum_f64(&self, data: &mut [f64]) -> Result<()> {
        let all = self.exchange(data.to_vec())?;
        data.iter_mut().for_each(|d| *d = 0.0);
        for p in all {
            data.iter_mut().zip(p).for_each(|(d, v)| *d += v);
        }
        Ok(())
    }
    fn broadcast(&self, root: usize, data: &mut [f32]) -> Result<()> {
        let all = self.exchange(data.iter().map(|&v| v as f64).collect())?;
        data.iter_mut()
            .zip(&all[root])
            .for_each(|(d, &v)| *d = v as f32);
        Ok(())
    }
    fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<Vec<u64>>> {
        // u64 through f64 bits, exactly
        let all = self.exchange(values.iter().map(|&v| f64::from_bits(v)).collect())?;
        Ok(all
            .into_iter()
            .map(|p| p.into_iter().map(f64::to_bits).collect())
            .collect())
    }
    fn split_off(&self) -> Option<Arc<dyn Collective>> {
        let k = self
            .splits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut splits = self.shared.splits.lock().ok()?;
        while splits.len() <= k {
            splits.push(Arc::new(ThreadShared::new(self.shared.size)));
        }
        Some(Arc::new(ThreadGroup {
            rank: self.rank,
            shared: Arc::clone(&splits[k]),
            splits: Default::default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_ranks<R: Send + 'static>(
        n: usize,
        f: impl Fn(ThreadGroup) -> R + Send + Sync + 'static,
    ) -> Vec<R> {
        let f = Arc::new(f);
        let handles: Vec<_> = ThreadGroup::new(n)
            .into_iter()
            .map(|g| {
                let f = Arc::clone(&f);
                std::thread::spawn(move || f(g))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn thread_group_sums_in_rank_order_and_agrees() {
        let out = on_ranks(3, |g| {
            let mut v = vec![g.rank() as f32 + 0.5, 1e8, -1e8];
            g.all_reduce_sum(&mut v).unwrap();
            let mut w = vec![g.rank() as f32];
            g.broadcast(2, &mut w).unwrap();
            (v, w)
        });
        for (v, w) in &out {
            assert_eq!(v, &out[0].0);
            assert_eq!(v[0], 0.5 + 1.5 + 2.5);
            assert_eq!(w, &vec![2.0]);
        }
    }

    #[test]
    fn agreement_names_what_differs() {
        let out = on_ranks(3, |g| {
            let d = Distributed::new(Arc::new(g));
            let r = d.rank() as u64;
            let same = d.agree(&[("the model spec".into(), 7), ("the data size".into(), 9)]);
            let differ = d.agree(&[
                ("the model spec".into(), 7),
                ("the data size".into(), 9 + r / 2),
            ]);
            (same.is_ok(), differ.map_err(|e| e.to_string()))
        });
        for (same, differ) in out {
            assert!(same);
            let e = differ.unwrap_err();
            assert!(
                e.contains("the data size") && e.contains("rank 2 differs"),
                "{e}"
            );
        }
    }

    #[test]
    fn keyed_masks_follow_the_sample_not_the_position() {
        let a = keyed_dropout_mask(&[11, 22, 33], 50, 0.5, "dropout");
        let b = keyed_dropout_mask(&[22], 50, 0.5, "dropout");
        assert_eq!(&a[50..100], &b[..]);
        let other = keyed_dropout_mask(&[22], 50, 0.5, "dropout_1");
        assert_ne!(b, other);
        assert!(a.iter().all(|&m| m == 0.0 || m == 2.0));
    }
}
