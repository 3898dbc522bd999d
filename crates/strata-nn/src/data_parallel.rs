//! What `fit` does differently on the ranks of a data-parallel run: the
//! checks at start, rank 0's weights and optimizer state for everyone, each
//! rank's slice of the global batch, the all-reduced gradients, loss,
//! metrics and validation. The global batch's update is the same on every
//! rank, bit for bit.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use strata_core::Tensor;

use crate::distributed::{hash_bytes, mix, Distributed, LayerDistribution, StepTiming};
use crate::error::{NnError, Result};
use crate::losses::Targets;
use crate::metrics::Metric;
use crate::model::{gather_rows, FitConfig, Model};

/// A global batch's loss sum, sample count and metric counts.
pub(crate) type StepTotals = (f64, usize, Vec<(usize, usize)>);

/// One `fit` call's distributed state.
pub(crate) struct DataParallel {
    pub(crate) d: Distributed,
    layers: Arc<LayerDistribution>,
    reducer: crate::grad_buckets::GradientReducer,
}

/// The contiguous part of `0..len` that `rank` of `size` takes.
pub fn rank_slice(len: usize, rank: usize, size: usize) -> Range<usize> {
    let size = size.max(1);
    (rank * len / size)..((rank + 1) * len / size)
}

/// The dropout key of the sample at global index `index` in `epoch`.
pub fn sample_key(seed: u64, epoch: usize, index: usize) -> u64 {
    mix(mix(seed ^ 0xD40F_5EED, epoch as u64 + 1), index as u64)
}

impl DataParallel {
    /// Checks that the ranks agree and the batches split, hands every rank
    /// rank 0's weights and optimizer state, and tells the layers.
    pub(crate) fn start(
        model: &mut Model,
        d: &Distributed,
        cfg: &FitConfig,
        samples: usize,
        batches_per_epoch: usize,
    ) -> Result<DataParallel> {
        let n = d.size();
        let spec = model.to_spec().to_string();
        let params = model.trainable_params();
        let state_len: usize = model
            .compiled
            .as_ref()
            .map(|c| {
                c.optimizer
                    .state(&params)
                    .iter()
                    .map(|(_, v)| v.len())
                    .sum()
            })
            .unwrap_or(0);
        let flags = format!(
            "epochs {} batch {} shuffle {} seed {} split {} max_steps {:?} from {}:{} sync_bn {}",
            cfg.epochs,
            cfg.batch_size,
            cfg.shuffle,
            cfg.seed,
            cfg.validation_split,
            cfg.max_steps,
            cfg.initial_epoch,
            cfg.initial_step,
            d.sync_batchnorm
        );
        let mut items = vec![
            ("the model spec".to_string(), hash_bytes(spec.as_bytes())),
            ("the data set size".to_string(), samples as u64),
            (
                "the training flags".to_string(),
                hash_bytes(flags.as_bytes()),
            ),
            ("the optimizer state size".to_string(), state_len as u64),
        ];
        items.extend(d.agree_on.iter().cloned());
        d.agree(&items)?;
        let bs = cfg.batch_size;
        if !bs.is_multiple_of(n) {
            return Err(NnError::Ranks(format!(
                "the global batch of {bs} does not divide by the {n} ranks: give a --batch-size that is a multiple of {n}"
            )));
        }
        let last = samples.saturating_sub(batches_per_epoch.saturating_sub(1) * bs);
        if last < n {
            return Err(NnError::Ranks(format!(
                "the last batch of an epoch holds {last} sample(s) ({samples} samples in batches of {bs}), fewer than the {n} ranks: every rank needs at least one"
            )));
        }
        // rank 0's weights (moving statistics included) and optimizer state
        let c = &d.collective;
        for layer in &model.layers {
            for w in layer.weights() {
                let mut data = w.value.data_mut();
                c.broadcast(0, &mut data[..])?;
            }
        }
        if let Some(comp) = model.compiled.as_mut() {
            let mut state = comp.optimizer.state(&params);
            for (_, v) in state.iter_mut() {
                c.broadcast(0, v)?;
            }
            if d.rank() != 0 && state.len() > 1 {
                comp.optimizer.load_state(&params, &state)?;
            }
        }
        let layers = Arc::new(LayerDistribution {
            collective: Arc::clone(c),
            sync_batchnorm: d.sync_batchnorm,
            sample_keys: Mutex::new(Vec::new()),
        });
        for l in model.layers.iter_mut() {
            l.set_distribution(Some(Arc::clone(&layers)));
        }
        let reducer = crate::grad_buckets::GradientReducer::new(d, &params)?;
        Ok(DataParallel {
            d: d.clone(),
            layers,
            reducer,
        })
    }

    /// Leaves the run: the layers back to single-process behaviour.
    pub(crate) fn finish(self, model: &mut Model) {
        for l in model.layers.iter_mut() {
            l.set_distribution(None);
        }
    }

    pub(crate) fn rank(&self) -> usize {
        self.d.rank()
    }

    pub(crate) fn size(&self) -> usize {
        self.d.size()
    }

    /// This rank's rows of a global batch of `len`.
    pub(crate) fn my_rows(&self, len: usize) -> Range<usize> {
        rank_slice(len, self.rank(), self.size())
    }

    /// One optimizer step on this rank's slice of a global batch of
    /// `global_len` samples; returns the global batch's (loss sum, samples,
    /// metric counts), the same on every rank.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn train_step(
        &mut self,
        model: &mut Model,
        inputs: &[Tensor],
        targets: &Targets,
        sample_weights: Option<&[f32]>,
        keys: Vec<u64>,
        global_len: usize,
        metrics: &[Metric],
    ) -> Result<StepTotals> {
        let started = std::time::Instant::now();
        let (waited_before, overlapped_before) = (self.reducer.waited, self.reducer.overlapped);
        if let Ok(mut k) = self.layers.sample_keys.lock() {
            *k = keys;
        }
        let params = model.trainable_params();
        let local = targets.len();
        let reducer = &mut self.reducer;
        let (value, out) = strata_core::threads::install(|| -> Result<(f32, Tensor)> {
            let (loss, out) = model.forward_loss(&params, inputs, targets, sample_weights)?;
            let value = loss.item()?;
            if !params.is_empty() {
                if !loss.requires_grad() {
                    return Err(NnError::Training(
                        "no trainable weight affects the loss".into(),
                    ));
                }
                // this rank's share of the global batch's mean: the summed
                // gradients are then the global batch's gradient. A
                // non-finite loss still runs the backward, so every rank
                // reaches the same collectives; the check below stops all.
                reducer.backward(&loss.mul_scalar(local as f32 / global_len as f32), &params)?;
            }
            Ok((value, out.detach()))
        })?;
        if !params.is_empty() {
            self.reducer.send_rest(&params)?;
        }
        // while the sums travel: loss, metrics and whether any rank's own
        // gradients were non-finite, on the main communicator
        let local_bad = (!self.reducer.local_finite()) as u8 as f64;
        let mut stats = vec![value as f64 * local as f64, local as f64, local_bad];
        let stats_sent = std::time::Instant::now();
        for m in metrics {
            let (k, t) = m.count(&out, targets)?;
            stats.push(k as f64);
            stats.push(t as f64);
        }
        self.d.collective.all_reduce_sum_f64(&mut stats)?;
        let stats_wait = stats_sent.elapsed();
        let (loss_sum, seen, bad_ranks) = (stats[0], stats[1], stats[2]);
        let totals = (loss_sum, seen as usize, counts(&stats[3..]));
        if params.is_empty() {
            return Ok(totals);
        }
        if !(loss_sum / seen.max(1.0)).is_finite() {
            self.reducer.finish(&params)?;
            return Err(NnError::Training(format!(
                "the loss became {}",
                (loss_sum / seen.max(1.0)) as f32
            )));
        }
        if bad_ranks > 0.0 || model.compiled_optimizer()?.needs_every_gradient() {
            // all sums first: the check names the weight, a global clip norm
            // needs every gradient
            self.reducer.finish(&params)?;
            model.step_if_finite(&params)?;
        } else {
            // each bucket's weights updated as soon as its sums are in
            let optimizer = model.compiled_optimizer()?;
            optimizer.begin_step(&params)?;
            self.reducer.finish_each(&params, |bucket| {
                if let Some(bad) = crate::model::first_non_finite(&params, bucket) {
                    return Err(crate::model::non_finite_gradient(bad));
                }
                optimizer.update_some(&params, bucket)
            })?;
            optimizer.end_step();
        }
        if let Ok(mut t) = self.d.timings.lock() {
            t.push(StepTiming {
                step: started.elapsed(),
                waited: self.reducer.waited - waited_before + stats_wait,
                bytes: params.iter().map(|p| p.value.numel() * 4).sum(),
                buckets: self.reducer.buckets(),
                overlapped: self.reducer.overlapped - overlapped_before,
            });
        }
        if !self.d.sync_batchnorm {
            // DDP's per-rank statistics: rank 0's moving statistics for all
            self.broadcast_frozen(model)?;
        }
        Ok(totals)
    }

    /// Rank 0's non-trainable weights (moving statistics) on every rank.
    fn broadcast_frozen(&self, model: &Model) -> Result<()> {
        for layer in &model.layers {
            for w in layer.weights() {
                if !w.value.requires_grad() {
                    let mut data = w.value.data_mut();
                    self.d.collective.broadcast(0, &mut data[..])?;
                }
            }
        }
        Ok(())
    }

    /// Loss and metrics over `batches`, each rank taking its own, summed
    /// over the ranks.
    pub(crate) fn evaluate(
        &self,
        model: &mut Model,
        batches: impl Iterator<Item = Result<(Vec<Tensor>, Targets)>>,
    ) -> Result<std::collections::BTreeMap<String, f32>> {
        let (loss_fn, metrics) = {
            let c = model
                .compiled
                .as_ref()
                .ok_or_else(|| NnError::Training("not compiled".into()))?;
            (c.loss, c.metrics.clone())
        };
        let mut stats = vec![0.0f64; 2 + 2 * metrics.len()];
        for batch in batches {
            let (xs, ys) = batch?;
            if ys.is_empty() {
                continue;
            }
            let out = strata_core::no_grad(|| model.run(&xs, false, false))?.remove(0);
            let l = strata_core::no_grad(|| loss_fn.compute(&out, &ys, None))?.item()?;
            stats[0] += l as f64 * ys.len() as f64;
            stats[1] += ys.len() as f64;
            for (i, m) in metrics.iter().enumerate() {
                let (k, t) = m.count(&out, &ys)?;
                stats[2 + 2 * i] += k as f64;
                stats[3 + 2 * i] += t as f64;
            }
        }
        self.d.collective.all_reduce_sum_f64(&mut stats)?;
        let mut logs = std::collections::BTreeMap::new();
        logs.insert("loss".to_string(), (stats[0] / stats[1].max(1.0)) as f32);
        for (i, m) in metrics.iter().enumerate() {
            logs.insert(
                m.name(),
                (stats[2 + 2 * i] / stats[3 + 2 * i].max(1.0)) as f32,
            );
        }
        Ok(logs)
    }

    /// This rank's contiguous share of validation tensors, as batches.
    pub(crate) fn evaluate_tensors(
        &self,
        model: &mut Model,
        inputs: &[Tensor],
        targets: &Targets,
        batch_size: usize,
    ) -> Result<std::collections::BTreeMap<String, f32>> {
        let n = targets.len();
        let mine: Vec<usize> = self.my_rows(n).collect();
        let batches = mine.chunks(batch_size.max(1)).map(|chunk| {
            Ok((
                inputs
                    .iter()
                    .map(|x| gather_rows(x, chunk))
                    .collect::<Result<Vec<_>>>()?,
                targets.gather(chunk)?,
            ))
        });
        let batches: Vec<_> = batches.collect();
        self.evaluate(model, batches.into_iter())
    }
}

fn counts(stats: &[f64]) -> Vec<(usize, usize)> {
    stats
        .chunks(2)
        .map(|c| (c[0] as usize, c[1] as usize))
        .collect()
}

/// This rank's rows of a global batch, with their dropout keys.
pub(crate) fn slice_batch(
    inputs: &[Tensor],
    targets: &Targets,
    rows: Range<usize>,
) -> Result<(Vec<Tensor>, Targets)> {
    let idx: Vec<usize> = rows.collect();
    Ok((
        inputs
            .iter()
            .map(|x| gather_rows(x, &idx))
            .collect::<Result<_>>()?,
        targets.gather(&idx)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_slices_cover_a_batch_in_order() {
        let parts: Vec<Range<usize>> = (0..4).map(|r| rank_slice(10, r, 4)).collect();
        assert_eq!(parts, vec![0..2, 2..5, 5..7, 7..10]);
        assert_eq!(rank_slice(8, 1, 2), 4..8);
    }
}
