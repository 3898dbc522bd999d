//! Gradient buckets of a data-parallel run: the trainable weights grouped,
//! in the order the backward finishes them (the reverse of the forward's),
//! into buckets of about `Distributed::bucket_bytes`, each all-reduced as
//! one message (PyTorch DDP's layout). Where the collective has a second
//! channel ([`Collective::split_off`]), a communication thread all-reduces
//! each bucket as soon as the backward has finished all its gradients,
//! while the backward goes on; the buckets go out in bucket order on every
//! rank, each the same message as without the thread, so the sums are the
//! same bits.

use crate::distributed::{Collective, Distributed};
use crate::error::{NnError, Result};
use crate::optimizers::Param;
use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use strata_core::Tensor;

/// The bucket layout of one model's trainable weights, and the reduction.
pub(crate) struct GradientReducer {
    collective: Arc<dyn Collective>,
    /// Parameter indices per bucket, in backward order.
    buckets: Vec<Vec<usize>>,
    /// The thread that all-reduces buckets during the backward, if any.
    comm: Option<CommThread>,
    /// The current step's buckets: those handed to the thread so far,
    /// with the spans of their parameters' gradients in the message.
    sent: Vec<Sent>,
    /// Buckets handed to the thread before the backward returned, over all
    /// steps (the overlap, for tests and diagnostics).
    pub(crate) overlapped: usize,
    /// Whether every gradient this rank sent in the current step was finite.
    local_finite: bool,
    /// Time spent waiting for sums after the backward, over all steps: the
    /// communication the backward did not hide.
    pub(crate) waited: std::time::Duration,
}

/// A bucket on its way: `(offset, length)` of each parameter's gradient in
/// the message, `None` for one without a gradient.
type Sent = Vec<Option<(usize, usize)>>;

/// A bucket's message, or its sum back.
type Message = (usize, Vec<f32>);

struct CommThread {
    to: Option<Sender<Message>>,
    from: Receiver<Result<Message>>,
    handle: Option<JoinHandle<()>>,
    /// Buckets handed over whose sums are not back (a step cut short by
    /// an error): the thread may be waiting for ranks that never come.
    busy: bool,
}

impl CommThread {
    fn start(c: Arc<dyn Collective>) -> Result<CommThread> {
        let (to, inbox) = channel::<Message>();
        let (outbox, from) = channel::<Result<Message>>();
        let handle = std::thread::Builder::new()
            .name("strata-allreduce".into())
            .spawn(move || {
                for (k, mut flat) in inbox {
                    let r = c.all_reduce_sum(&mut flat).map(|()| (k, flat));
                    if outbox.send(r).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| NnError::Ranks(format!("cannot start the all-reduce thread: {e}")))?;
        Ok(CommThread {
            to: Some(to),
            from,
            handle: Some(handle),
            busy: false,
        })
    }
}

impl Drop for CommThread {
    fn drop(&mut self) {
        // closing the channel ends the thread once it has sent what it has
        self.to.take();
        if let Some(h) = self.handle.take() {
            if !self.busy {
                let _ = h.join();
            }
        }
    }
}

/// `sizes` (bytes per parameter, in forward order) grouped from the last
/// parameter backwards into buckets of at most `cap` bytes (a larger
/// parameter gets a bucket of its own).
pub fn bucket_layout(sizes: &[usize], cap: usize) -> Vec<Vec<usize>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for i in (0..sizes.len()).rev() {
        if !current.is_empty() && bytes + sizes[i] > cap {
            buckets.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += sizes[i];
    }
    if !current.is_empty() {
        buckets.push(current);
    }
    buckets
}

/// The gradients of `bucket`'s parameters end to end, and their spans.
fn flatten(bucket: &[usize], params: &[Param]) -> (Vec<f32>, Sent) {
    let mut flat = Vec::new();
    let mut spans = Vec::with_capacity(bucket.len());
    for &i in bucket {
        params[i].value.with_grad(|g| match g {
            Some(g) => {
                spans.push(Some((flat.len(), g.len())));
                flat.extend_from_slice(g);
            }
            None => spans.push(None),
        });
    }
    (flat, spans)
}

/// The summed gradients back into `bucket`'s parameters.
fn scatter(bucket: &[usize], params: &[Param], flat: &[f32], spans: Sent) {
    for (&i, span) in bucket.iter().zip(spans) {
        if let Some((at, len)) = span {
            params[i].value.set_grad(Some(flat[at..at + len].to_vec()));
        }
    }
}

impl GradientReducer {
    /// Collective over the ranks (a second communicator is split off for
    /// the communication thread, where the collective has one).
    /// Buckets in the layout.
    pub(crate) fn buckets(&self) -> usize {
        self.buckets.len()
    }

    pub(crate) fn new(d: &Distributed, params: &[Param]) -> Result<GradientReducer> {
        let sizes: Vec<usize> = params.iter().map(|p| p.value.numel() * 4).collect();
        let buckets = bucket_layout(&sizes, d.bucket_bytes.max(1));
        let comm = match d.collective.split_off() {
            Some(c) if d.size() > 1 && !buckets.is_empty() => Some(CommThread::start(c)?),
            _ => None,
        };
        Ok(GradientReducer {
            collective: Arc::clone(&d.collective),
            buckets,
            comm,
            sent: Vec::new(),
            overlapped: 0,
            local_finite: true,
            waited: std::time::Duration::ZERO,
        })
    }

    /// The backward of `loss`, the buckets handed to the communication
    /// thread in bucket order as their gradients become final.
    pub(crate) fn backward(&mut self, loss: &Tensor, params: &[Param]) -> Result<()> {
        self.sent.clear();
        self.local_finite = true;
        let Some(comm) = self.comm.as_mut() else {
            loss.backward()?;
            return Ok(());
        };
        if comm.busy {
            return Err(NnError::Ranks(
                "an earlier step's all-reduce did not finish".into(),
            ));
        }
        comm.busy = true;
        let to = comm.to.as_ref().expect("the all-reduce thread's channel");
        // per parameter id: its bucket; per bucket: the gradients still to come
        let mut bucket_of: HashMap<u64, usize> = HashMap::new();
        let mut left: Vec<usize> = self.buckets.iter().map(Vec::len).collect();
        for (k, b) in self.buckets.iter().enumerate() {
            for &i in b {
                if bucket_of.insert(params[i].value.id(), k).is_some() {
                    // a weight twice in the list: counted once, so no early send
                    left[k] = usize::MAX;
                }
            }
        }
        let buckets = &self.buckets;
        let sent = &mut self.sent;
        let finite = &mut self.local_finite;
        let mut failed = false;
        loss.backward_with_hook(|id| {
            let Some(&k) = bucket_of.get(&id) else {
                return;
            };
            left[k] = left[k].saturating_sub(1);
            while sent.len() < buckets.len() && left[sent.len()] == 0 {
                let k = sent.len();
                let (flat, spans) = flatten(&buckets[k], params);
                *finite &= all_finite(&flat);
                sent.push(spans);
                failed |= to.send((k, flat)).is_err();
            }
        })?;
        self.overlapped += self.sent.len();
        if failed {
            return Err(NnError::Ranks("the all-reduce thread stopped".into()));
        }
        Ok(())
    }

    /// After the backward: the buckets it did not complete (weights the loss
    /// does not reach) go out too, so that [`GradientReducer::local_finite`]
    /// speaks for every gradient of this rank.
    pub(crate) fn send_rest(&mut self, params: &[Param]) -> Result<()> {
        let Some(comm) = self.comm.as_mut() else {
            self.local_finite = params.iter().all(|p| {
                p.value
                    .with_grad(|g| g.is_none_or(strata_core::kernels::parallel::all_finite))
            });
            return Ok(());
        };
        let to = comm.to.as_ref().ok_or_else(stopped)?;
        while self.sent.len() < self.buckets.len() {
            let k = self.sent.len();
            let (flat, spans) = flatten(&self.buckets[k], params);
            self.local_finite &= all_finite(&flat);
            self.sent.push(spans);
            to.send((k, flat)).map_err(|_| stopped())?;
        }
        Ok(())
    }

    /// Whether this rank's own gradients of the step (before the sum) are
    /// all finite; known once [`GradientReducer::send_rest`] has run.
    pub(crate) fn local_finite(&self) -> bool {
        self.local_finite
    }

    /// After the backward: every gradient summed over the ranks. A weight
    /// without a gradient (the loss does not reach it, on every rank alike)
    /// keeps none.
    pub(crate) fn finish(&mut self, params: &[Param]) -> Result<()> {
        self.finish_each(params, |_| Ok(()))
    }

    /// [`GradientReducer::finish`], calling `ready` with each bucket's
    /// parameter indices as soon as its sums are in place, in bucket order:
    /// an optimizer updates the weights of one bucket while later ones are
    /// still on the wire. After an error from `ready` the remaining buckets
    /// are still reduced (every rank takes part in every collective, and the
    /// sums are the same on every rank, so every rank stops at the same
    /// bucket), then the first error is returned.
    pub(crate) fn finish_each(
        &mut self,
        params: &[Param],
        mut ready: impl FnMut(&[usize]) -> Result<()>,
    ) -> Result<()> {
        let mut first_error: Option<NnError> = None;
        let mut call = |bucket: &[usize]| {
            if first_error.is_none() {
                first_error = ready(bucket).err();
            }
        };
        if self.collective.size() == 1 {
            // a sum over one rank is the gradient itself
            self.buckets.iter().for_each(|b| call(b));
            return first_error.map_or(Ok(()), Err);
        }
        let Some(_) = self.comm.as_ref() else {
            for bucket in &self.buckets {
                let (mut flat, spans) = flatten(bucket, params);
                let t = std::time::Instant::now();
                self.collective.all_reduce_sum(&mut flat)?;
                self.waited += t.elapsed();
                scatter(bucket, params, &flat, spans);
                call(bucket);
            }
            return first_error.map_or(Ok(()), Err);
        };
        self.send_rest(params)?;
        let comm = self.comm.as_mut().ok_or_else(stopped)?;
        let sent = std::mem::take(&mut self.sent);
        for (k, spans) in sent.into_iter().enumerate() {
            let t = std::time::Instant::now();
            let (got, flat) = comm.from.recv().map_err(|_| stopped())??;
            self.waited += t.elapsed();
            debug_assert_eq!(got, k, "buckets come back in order");
            scatter(&self.buckets[k], params, &flat, spans);
            call(&self.buckets[k]);
        }
        comm.busy = false;
        first_error.map_or(Ok(()), Err)
    }
}

fn stopped() -> NnError {
    NnError::Ranks("the all-reduce thread stopped".into())
}

fn all_finite(v: &[f32]) -> bool {
    strata_core::kernels::parallel::all_finite(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::ThreadGroup;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// A collective that notes when each all-reduce starts, on itself and
    /// on what it splits off; with `split: false` it has no second channel
    /// (the reduction after the backward).
    struct Recording {
        inner: Arc<dyn Collective>,
        split: bool,
        starts: Arc<Mutex<Vec<Instant>>>,
        /// Added to every all-reduce: a slow link.
        delay: Duration,
    }

    impl Collective for Recording {
        fn rank(&self) -> usize {
            self.inner.rank()
        }
        fn size(&self) -> usize {
            self.inner.size()
        }
        fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()> {
            self.starts.lock().unwrap().push(Instant::now());
            std::thread::sleep(self.delay);
            self.inner.all_reduce_sum(data)
        }
        fn all_reduce_sum_f64(&self, data: &mut [f64]) -> Result<()> {
            self.inner.all_reduce_sum_f64(data)
        }
        fn broadcast(&self, root: usize, data: &mut [f32]) -> Result<()> {
            self.inner.broadcast(root, data)
        }
        fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<Vec<u64>>> {
            self.inner.all_gather_u64(values)
        }
        fn split_off(&self) -> Option<Arc<dyn Collective>> {
            if !self.split {
                return None;
            }
            Some(Arc::new(Recording {
                inner: self.inner.split_off()?,
                split: false,
                starts: Arc::clone(&self.starts),
                delay: self.delay,
            }))
        }
    }

    /// Three layers, rank-dependent inputs, a slow backward in the first
    /// layer; the summed gradients, the buckets handed over during the
    /// backward, and whether an all-reduce started before it returned.
    fn step(c: ThreadGroup, split: bool) -> (Vec<Vec<f32>>, usize, bool) {
        let (params, loss, d, starts) = three_layers(c, split, Duration::ZERO);
        let mut r = GradientReducer::new(&d, &params).unwrap();
        assert_eq!(r.buckets, vec![vec![2], vec![1], vec![0]]);
        r.backward(&loss, &params).unwrap();
        let ended = Instant::now();
        r.finish(&params).unwrap();
        let early = starts.lock().unwrap().iter().any(|&t| t < ended);
        let grads = params
            .iter()
            .map(|p| p.value.grad().unwrap().to_vec())
            .collect();
        (grads, r.overlapped, early)
    }

    /// Three layers (buckets of one weight each), rank-dependent inputs, a
    /// slow backward in the first layer: the weights, the loss, the
    /// settings and the start times of the all-reduces.
    #[allow(clippy::type_complexity)]
    fn three_layers(
        c: ThreadGroup,
        split: bool,
        delay: Duration,
    ) -> (Vec<Param>, Tensor, Distributed, Arc<Mutex<Vec<Instant>>>) {
        let rank = c.rank() as f32;
        let starts = Arc::new(Mutex::new(Vec::new()));
        let rec = Recording {
            inner: Arc::new(c),
            split,
            starts: Arc::clone(&starts),
            delay,
        };
        let mut d = Distributed::new(Arc::new(rec));
        d.bucket_bytes = 256;
        let leaf = |n: usize, s: &[usize], k: f32| {
            let v = (0..n).map(|i| (i as f32 * 0.37 + k).sin()).collect();
            Tensor::from_vec(v, s).unwrap().requires_grad_(true)
        };
        let params: Vec<Param> = [(64, [8, 8]), (64, [8, 8]), (8, [8, 1])]
            .iter()
            .enumerate()
            .map(|(i, (n, s))| Param {
                name: format!("w{i}"),
                value: leaf(*n, s, i as f32),
            })
            .collect();
        let x =
            Tensor::from_vec((0..32).map(|i| (i as f32 + rank) * 0.1).collect(), &[4, 8]).unwrap();
        let h1 = x.matmul(&params[0].value).unwrap();
        let slow = Tensor::custom_op(h1.to_vec(), h1.shape(), "slow", &[&h1], |g| {
            std::thread::sleep(Duration::from_millis(200));
            vec![Some(g.to_vec())]
        })
        .unwrap();
        let h2 = slow.relu().matmul(&params[1].value).unwrap().relu();
        let loss = h2.matmul(&params[2].value).unwrap().sum_all();
        (params, loss, d, starts)
    }

    fn on_two(split: bool) -> Vec<(Vec<Vec<f32>>, usize, bool)> {
        let hs: Vec<_> = ThreadGroup::new(2)
            .into_iter()
            .map(|c| std::thread::spawn(move || step(c, split)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn buckets_are_all_reduced_during_the_backward_with_the_same_bits() {
        let after = on_two(false);
        let during = on_two(true);
        for ((g_after, n_after, early_after), (g_during, n_during, early_during)) in
            after.iter().zip(&during)
        {
            assert_eq!(g_after, &after[0].0, "ranks agree");
            assert_eq!(g_during, g_after, "the same sums, bit for bit");
            assert_eq!((*n_after, *early_after), (0, false));
            // every bucket is final before the backward returns (the last
            // two before the slow first layer's), and an all-reduce starts
            // during it
            assert_eq!(*n_during, 3);
            assert!(
                *early_during,
                "an all-reduce started before the backward returned"
            );
        }
    }

    /// On a slow link (every all-reduce delayed) the first bucket's weights are
    /// handed on while the last bucket is still on the wire, and the sums
    /// handed on are those `finish` gives.
    #[test]
    fn each_bucket_is_handed_on_as_soon_as_its_sums_are_in() {
        let run = |c: ThreadGroup| {
            let delay = Duration::from_millis(150);
            let (params, loss, d, _) = three_layers(c, true, delay);
            let mut r = GradientReducer::new(&d, &params).unwrap();
            r.backward(&loss, &params).unwrap();
            let t0 = Instant::now();
            let mut seen = Vec::new();
            r.finish_each(&params, |bucket| {
                let grads: Vec<Vec<f32>> = bucket
                    .iter()
                    .map(|&i| params[i].value.grad().unwrap().to_vec())
                    .collect();
                seen.push((bucket.to_vec(), t0.elapsed(), grads));
                Ok(())
            })
            .unwrap();
            (seen, t0.elapsed())
        };
        let hs: Vec<_> = ThreadGroup::new(2)
            .into_iter()
            .map(|c| std::thread::spawn(move || run(c)))
            .collect();
        let runs: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let reference = on_two(false);
        for ((seen, total), (want, ..)) in runs.iter().zip(&reference) {
            let order: Vec<Vec<usize>> = seen.iter().map(|s| s.0.clone()).collect();
            assert_eq!(order, vec![vec![2], vec![1], vec![0]]);
            for (bucket, _, grads) in seen {
                assert_eq!(grads[0], want[bucket[0]], "the summed gradient");
            }
            // the first bucket went on at least one all-reduce before the end
            assert!(
                seen[0].1 + Duration::from_millis(100) < *total,
                "first bucket at {:?}, all done at {total:?}",
                seen[0].1
            );
        }
        let bad = |c: ThreadGroup| {
            let (params, loss, d, _) = three_layers(c, true, Duration::ZERO);
            let mut r = GradientReducer::new(&d, &params).unwrap();
            r.backward(&loss, &params).unwrap();
            let mut calls = 0;
            let e = r.finish_each(&params, |_| {
                calls += 1;
                Err(NnError::Training("stop".into()))
            });
            // every bucket still reduced, the first error kept, the thread free
            let busy = r.comm.as_ref().unwrap().busy;
            (e.unwrap_err().to_string(), calls, busy)
        };
        let hs: Vec<_> = ThreadGroup::new(2)
            .into_iter()
            .map(|c| std::thread::spawn(move || bad(c)))
            .collect();
        for h in hs {
            let (e, calls, busy) = h.join().unwrap();
            assert!(e.contains("stop"), "{e}");
            assert_eq!(calls, 1);
            assert!(!busy, "every sum came back");
        }
    }

    #[test]
    fn buckets_follow_the_backward_and_the_cap() {
        assert_eq!(
            bucket_layout(&[10, 20, 30, 5, 100], 40),
            vec![vec![4], vec![3, 2], vec![1, 0]]
        );
        assert_eq!(bucket_layout(&[1, 1, 1], 1 << 20), vec![vec![2, 1, 0]]);
        assert!(bucket_layout(&[], 8).is_empty());
    }
}
