//! Training and inference loops: `fit`, `evaluate`, `predict`, one
//! `train_step`, and checkpoints that resume training exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use strata_core::{no_grad, Rng, Tensor};

use super::batch_source::BatchSource;
use super::callbacks::{Callback, TrainingControl};
use super::history::History;
use super::progress::Progress;
use super::{gather_rows, Model};
use crate::error::{NnError, Result};
use crate::losses::Targets;

/// Whether `fit` prints progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Silent,
    /// A progress bar on a terminal, one line per epoch otherwise.
    Auto,
}

/// The arguments of `fit`, with Keras's defaults.
#[derive(Clone)]
pub struct FitConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub shuffle: bool,
    /// Seeds the shuffling and the dropout masks (mixed with epoch and step).
    pub seed: u64,
    /// Fraction of the samples, taken from the end, held out for validation.
    pub validation_split: f32,
    pub validation_data: Option<(Vec<Tensor>, Targets)>,
    /// Loss weight per class id.
    pub class_weight: Option<HashMap<usize, f32>>,
    pub verbose: Verbosity,
    /// Stop after this many optimizer steps in total.
    pub max_steps: Option<u64>,
    /// First epoch to run (for resuming).
    pub initial_epoch: usize,
    /// Batches of `initial_epoch` already done (resuming mid-epoch).
    pub initial_step: usize,
    /// Train as one rank of a data-parallel run: `batch_size` is then the
    /// global batch, split into contiguous slices, one per rank.
    pub distributed: Option<crate::distributed::Distributed>,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            seed: 0,
            validation_split: 0.0,
            validation_data: None,
            class_weight: None,
            verbose: Verbosity::Auto,
            max_steps: None,
            initial_epoch: 0,
            initial_step: 0,
            distributed: None,
        }
    }
}

fn mix(a: u64, b: u64) -> u64 {
    // splitmix64 of the pair: independent streams per (seed, epoch, step)
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The order in which `fit` visits `n` samples in `epoch`: shuffled by
/// (seed, epoch), or as given. A batch source that follows it trains
/// exactly as `fit` on the same tensors.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        Rng::new(mix(seed, epoch as u64 + 1)).shuffle(&mut order);
    }
    order
}

/// Metadata key of the history a checkpoint carries.
pub const HISTORY_KEY: &str = "history";

/// The history saved in a checkpoint's metadata, if any.
pub fn checkpoint_history(path: impl AsRef<Path>) -> Result<Option<History>> {
    let path = path.as_ref();
    let (_, meta) = super::weights_io::read_safetensors(path)?;
    match meta.get(HISTORY_KEY) {
        None => Ok(None),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| NnError::Weights {
                path: path.display().to_string(),
                message: format!("metadata 'history' is not valid: {e}"),
            }),
    }
}

/// One training batch as `fit_loop` takes it.
struct Step {
    inputs: Vec<Tensor>,
    targets: Targets,
    sample_weights: Option<Vec<f32>>,
    skipped: usize,
    /// In a data-parallel run: the dropout key of each row, and the global
    /// batch's size (this rank holds a slice of it).
    keys: Vec<u64>,
    global_len: usize,
}

/// Where the validation metrics of each epoch come from.
enum Validation<'a> {
    Tensors((Vec<Tensor>, Targets)),
    Source(&'a dyn BatchSource),
}

fn sample_count(inputs: &[Tensor], targets: &Targets) -> Result<usize> {
    let n = inputs
        .first()
        .and_then(|x| x.shape().first().copied())
        .ok_or_else(|| NnError::Data("no input data".into()))?;
    for x in inputs {
        if x.shape().first() != Some(&n) {
            return Err(NnError::Data(format!(
                "inputs hold different sample counts ({} and {n})",
                strata_core::fmt_shape(x.shape())
            )));
        }
    }
    if targets.len() != n {
        return Err(NnError::Data(format!(
            "{n} input samples but {} targets",
            targets.len()
        )));
    }
    Ok(n)
}

impl Model {
    fn compiled_or_err(&self) -> Result<()> {
        if self.compiled.is_none() {
            return Err(NnError::Training(
                "the model must be compiled (loss, optimizer) before training or evaluating".into(),
            ));
        }
        Ok(())
    }

    /// A training step's start: `params`' gradients zeroed, the forward in
    /// training mode and the loss (from the logits where a crossentropy
    /// follows a softmax); returns the loss and the first output.
    pub(crate) fn forward_loss(
        &mut self,
        params: &[crate::model::Param],
        inputs: &[Tensor],
        targets: &Targets,
        sample_weights: Option<&[f32]>,
    ) -> Result<(Tensor, Tensor)> {
        self.compiled_or_err()?;
        for p in params {
            p.value.zero_grad();
        }
        let loss_fn = self
            .compiled
            .as_ref()
            .map(|c| c.loss)
            .ok_or_else(|| NnError::Training("not compiled".into()))?;
        let fused = loss_fn.fuses_with_softmax() && self.ends_in_softmax();
        let out = self.run(inputs, true, fused)?.remove(0);
        let loss = if fused {
            loss_fn.compute_from_logits(&out, targets, sample_weights)?
        } else {
            loss_fn.compute(&out, targets, sample_weights)?
        };
        Ok((loss, out))
    }

    /// One optimizer step on one batch; returns the loss and the batch outputs
    /// (logits when the fused crossentropy was used: same arg-max).
    pub fn train_step(
        &mut self,
        inputs: &[Tensor],
        targets: &Targets,
        sample_weights: Option<&[f32]>,
    ) -> Result<(f32, Tensor)> {
        // the whole step on one of the kernels' worker threads: every parallel
        // kernel then starts on a running thread and wakes only the others
        strata_core::threads::install(|| {
            self.train_step_on_this_thread(inputs, targets, sample_weights)
        })
    }

    fn train_step_on_this_thread(
        &mut self,
        inputs: &[Tensor],
        targets: &Targets,
        sample_weights: Option<&[f32]>,
    ) -> Result<(f32, Tensor)> {
        let params = self.trainable_params();
        let (loss, out) = self.forward_loss(&params, inputs, targets, sample_weights)?;
        let value = loss.item()?;
        if !value.is_finite() {
            return Err(NnError::Training(format!("the loss became {value}")));
        }
        if params.is_empty() {
            return Ok((value, out.detach()));
        }
        if !loss.requires_grad() {
            return Err(NnError::Training(
                "no trainable weight affects the loss".into(),
            ));
        }
        loss.backward()?;
        self.step_if_finite(&params)?;
        Ok((value, out.detach()))
    }

    /// The optimizer's step on `params`, refused (before any weight
    /// changes) when a gradient is not finite.
    pub(crate) fn step_if_finite(&mut self, params: &[crate::model::Param]) -> Result<()> {
        let all: Vec<usize> = (0..params.len()).collect();
        if let Some(bad) = first_non_finite(params, &all) {
            return Err(non_finite_gradient(bad));
        }
        self.compiled_optimizer()?.step(params)
    }

    /// The compiled optimizer, or the error that says the model is not compiled.
    pub(crate) fn compiled_optimizer(&mut self) -> Result<&mut crate::optimizers::Optimizer> {
        self.optimizer_mut()
            .ok_or_else(|| NnError::Training("not compiled".into()))
    }

    fn sample_weights(cfg: &FitConfig, targets: &Targets) -> Option<Vec<f32>> {
        let cw = cfg.class_weight.as_ref()?;
        let class_of = |i: usize| -> usize {
            match targets {
                Targets::Classes(c) => c[i],
                Targets::Dense(t) => {
                    let row: usize = t.shape().iter().skip(1).product();
                    let d = t.data();
                    let r = &d[i * row..(i + 1) * row];
                    (0..row).fold(0, |b, j| if r[j] > r[b] { j } else { b })
                }
            }
        };
        Some(
            (0..targets.len())
                .map(|i| cw.get(&class_of(i)).copied().unwrap_or(1.0))
                .collect(),
        )
    }

    /// Trains with mini-batches; returns the per-epoch history.
    pub fn fit(
        &mut self,
        inputs: &[Tensor],
        targets: &Targets,
        cfg: &FitConfig,
        callbacks: &mut [Box<dyn Callback>],
    ) -> Result<History> {
        self.compiled_or_err()?;
        if cfg.batch_size == 0 {
            return Err(NnError::Training("batch_size must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&cfg.validation_split) {
            return Err(NnError::Training(format!(
                "validation_split must be in [0, 1), found {}",
                cfg.validation_split
            )));
        }
        let n_all = sample_count(inputs, targets)?;
        let n_val = (n_all as f64 * cfg.validation_split as f64).floor() as usize;
        let n = n_all - n_val;
        if n == 0 {
            return Err(NnError::Training(
                "no training samples (all held out for validation?)".into(),
            ));
        }
        let validation = if n_val > 0 {
            let idx: Vec<usize> = (n..n_all).collect();
            Some((
                inputs
                    .iter()
                    .map(|x| gather_rows(x, &idx))
                    .collect::<Result<Vec<_>>>()?,
                targets.gather(&idx)?,
            ))
        } else {
            cfg.validation_data.clone()
        };
        let weights = Self::sample_weights(cfg, targets);
        let bs = cfg.batch_size;
        let steps_per_epoch = n.div_ceil(bs);
        // a data-parallel rank takes its contiguous slice of each global batch
        let ranks = cfg
            .distributed
            .as_ref()
            .map(|d| (d.rank(), d.size(), cfg.seed));
        let batches = |epoch: usize, first: usize| {
            let order = epoch_order(n, cfg.shuffle, cfg.seed, epoch);
            let weights = weights.as_ref();
            (first..steps_per_epoch).map(move |b| {
                let global = &order[b * bs..((b + 1) * bs).min(n)];
                let (idx, keys) = match ranks {
                    None => (global, Vec::new()),
                    Some((rank, size, seed)) => {
                        let idx =
                            &global[crate::data_parallel::rank_slice(global.len(), rank, size)];
                        let keys = idx
                            .iter()
                            .map(|&i| crate::data_parallel::sample_key(seed, epoch, i))
                            .collect();
                        (idx, keys)
                    }
                };
                Ok(Step {
                    keys,
                    global_len: global.len(),
                    inputs: inputs
                        .iter()
                        .map(|x| gather_rows(x, idx))
                        .collect::<Result<_>>()?,
                    targets: targets.gather(idx)?,
                    sample_weights: weights.map(|w| idx.iter().map(|&i| w[i]).collect()),
                    skipped: 0,
                })
            })
        };
        let validation = validation.map(Validation::Tensors);
        self.fit_loop(cfg, (n, steps_per_epoch), validation, batches, callbacks)
    }

    /// Trains on batches from `source` (an image folder streamed from disk);
    /// `validation` is evaluated after every epoch. `cfg.batch_size` and
    /// `cfg.shuffle` are the source's business; `validation_split`, the
    /// validation data and the class weights of `cfg` must be left unset.
    pub fn fit_source(
        &mut self,
        source: &dyn BatchSource,
        validation: Option<&dyn BatchSource>,
        cfg: &FitConfig,
        callbacks: &mut [Box<dyn Callback>],
    ) -> Result<History> {
        self.compiled_or_err()?;
        if cfg.validation_split != 0.0 || cfg.validation_data.is_some() {
            return Err(NnError::Training(
                "fit_source takes its validation as a second source, not from the config".into(),
            ));
        }
        if cfg.class_weight.is_some() {
            return Err(NnError::Training(
                "class weights are not supported with a batch source".into(),
            ));
        }
        if source.samples() == 0 || source.batches_per_epoch() == 0 {
            return Err(NnError::Training(
                "the training source holds no samples".into(),
            ));
        }
        let ranks = cfg
            .distributed
            .as_ref()
            .map(|d| (d.rank(), d.size(), cfg.seed));
        let collective = cfg.distributed.as_ref().map(|d| Arc::clone(&d.collective));
        let batches = move |epoch: usize,
                            first: usize|
              -> Box<dyn Iterator<Item = Result<Step>> + '_> {
            let key = move |seed: u64, at: usize, j: usize| {
                crate::data_parallel::sample_key(seed, epoch, at * cfg.batch_size + j)
            };
            let (Some((rank, size, seed)), Some(collective)) = (ranks, collective.clone()) else {
                return Box::new(source.epoch(epoch, first).map(|batch| {
                    let batch = batch?;
                    Ok(Step {
                        global_len: batch.targets.len(),
                        inputs: batch.inputs,
                        targets: batch.targets,
                        sample_weights: None,
                        skipped: batch.skipped,
                        keys: Vec::new(),
                    })
                }));
            };
            if let Some(parts) = source.epoch_part(epoch, first, rank, size) {
                // each rank reads only its part; the global batch's size
                // (less what every rank skipped) comes from one small sum
                return Box::new(parts.zip(first..).map(move |(part, at)| {
                    let part = part?;
                    let local = part.batch.targets.len();
                    let mut counts = [local as f64, part.batch.skipped as f64];
                    collective.all_reduce_sum_f64(&mut counts)?;
                    Ok(Step {
                        keys: part.positions.iter().map(|&j| key(seed, at, j)).collect(),
                        inputs: part.batch.inputs,
                        targets: part.batch.targets,
                        sample_weights: None,
                        skipped: counts[1] as usize,
                        global_len: counts[0] as usize,
                    })
                }));
            }
            // every rank reads the global batch and keeps its slice
            Box::new(
                source
                    .epoch(epoch, first)
                    .zip(first..)
                    .map(move |(batch, at)| {
                        let batch = batch?;
                        let global_len = batch.targets.len();
                        let rows = crate::data_parallel::rank_slice(global_len, rank, size);
                        let keys = rows.clone().map(|j| key(seed, at, j)).collect();
                        let (inputs, targets) =
                            crate::data_parallel::slice_batch(&batch.inputs, &batch.targets, rows)?;
                        Ok(Step {
                            inputs,
                            targets,
                            sample_weights: None,
                            skipped: batch.skipped,
                            keys,
                            global_len,
                        })
                    }),
            )
        };
        let steps = source.batches_per_epoch();
        self.fit_loop(
            cfg,
            (source.samples(), steps),
            validation.map(Validation::Source),
            batches,
            callbacks,
        )
    }

    /// The epochs of `fit` and `fit_source`: `batches(epoch, first)` gives an
    /// epoch's batches from batch `first` on.
    fn fit_loop<I>(
        &mut self,
        cfg: &FitConfig,
        (samples, steps_per_epoch): (usize, usize),
        validation: Option<Validation<'_>>,
        batches: impl FnMut(usize, usize) -> I,
        callbacks: &mut [Box<dyn Callback>],
    ) -> Result<History>
    where
        I: Iterator<Item = Result<Step>>,
    {
        let mut dp = match &cfg.distributed {
            None => None,
            Some(d) => Some(crate::data_parallel::DataParallel::start(
                self,
                d,
                cfg,
                samples,
                steps_per_epoch,
            )?),
        };
        let result = self.fit_epochs(
            cfg,
            steps_per_epoch,
            validation,
            batches,
            callbacks,
            dp.as_mut(),
        );
        if let Some(dp) = dp {
            dp.finish(self);
        }
        result
    }

    fn fit_epochs<I>(
        &mut self,
        cfg: &FitConfig,
        steps_per_epoch: usize,
        validation: Option<Validation<'_>>,
        mut batches: impl FnMut(usize, usize) -> I,
        callbacks: &mut [Box<dyn Callback>],
        mut dp: Option<&mut crate::data_parallel::DataParallel>,
    ) -> Result<History>
    where
        I: Iterator<Item = Result<Step>>,
    {
        let metrics = self
            .compiled
            .as_ref()
            .map(|c| c.metrics.clone())
            .unwrap_or_default();
        let steps_per_epoch = steps_per_epoch as u64;
        let mut history = History::default();
        let mut control = TrainingControl::default();
        for cb in callbacks.iter_mut() {
            cb.on_train_begin(self)?;
        }
        let mut global_step = cfg.initial_epoch as u64 * steps_per_epoch + cfg.initial_step as u64;
        'epochs: for epoch in cfg.initial_epoch..cfg.epochs {
            for cb in callbacks.iter_mut() {
                cb.on_epoch_begin(epoch, self)?;
            }
            let mut progress = Progress::new(cfg.verbose, epoch, cfg.epochs, steps_per_epoch);
            let (mut loss_sum, mut seen) = (0.0f64, 0usize);
            let mut correct = vec![(0usize, 0usize); metrics.len()];
            let mut logs = BTreeMap::new();
            let skip = if epoch == cfg.initial_epoch {
                cfg.initial_step
            } else {
                0
            };
            let mut epoch_batches = batches(epoch, skip);
            let mut b = skip;
            loop {
                if cfg.max_steps.is_some_and(|m| global_step >= m) {
                    break;
                }
                let Some(step) = epoch_batches.next() else {
                    break;
                };
                let step = step?;
                progress.skipped += step.skipped;
                let batch_len = step.global_len;
                if batch_len == 0 {
                    b += 1;
                    continue;
                }
                self.rng = Rng::new(mix(cfg.seed ^ 0xD40F, global_step));
                let at_step = |e| match e {
                    NnError::Training(m) => NnError::Training(format!(
                        "{m} at step {} (epoch {}, batch {})",
                        global_step + 1,
                        epoch + 1,
                        b + 1
                    )),
                    other => other,
                };
                match dp.as_deref_mut() {
                    None => {
                        let (loss, out) = self
                            .train_step(&step.inputs, &step.targets, step.sample_weights.as_deref())
                            .map_err(at_step)?;
                        loss_sum += loss as f64 * batch_len as f64;
                        seen += batch_len;
                        for (m, c) in metrics.iter().zip(correct.iter_mut()) {
                            let (k, t) = m.count(&out, &step.targets)?;
                            c.0 += k;
                            c.1 += t;
                        }
                    }
                    Some(dp) => {
                        let (l, n, counts) = dp
                            .train_step(
                                self,
                                &step.inputs,
                                &step.targets,
                                step.sample_weights.as_deref(),
                                step.keys,
                                batch_len,
                                &metrics,
                            )
                            .map_err(at_step)?;
                        loss_sum += l;
                        seen += n;
                        for (c, (k, t)) in correct.iter_mut().zip(counts) {
                            c.0 += k;
                            c.1 += t;
                        }
                    }
                }
                global_step += 1;
                logs.insert("loss".to_string(), (loss_sum / seen as f64) as f32);
                for (m, c) in metrics.iter().zip(correct.iter()) {
                    logs.insert(m.name(), c.0 as f32 / c.1.max(1) as f32);
                }
                progress.step(batch_len, &logs);
                for cb in callbacks.iter_mut() {
                    cb.on_batch_end(epoch, b, &logs, self, &mut control)?;
                }
                b += 1;
                if control.stop_training {
                    if (b as u64) < steps_per_epoch {
                        progress.cut = Some((b, steps_per_epoch));
                    }
                    progress.finish(&logs);
                    break 'epochs;
                }
            }
            drop(epoch_batches);
            if (b as u64) < steps_per_epoch {
                progress.cut = Some((b, steps_per_epoch));
            }
            if seen == 0 && progress.skipped > 0 {
                return Err(NnError::Data(format!(
                    "no sample of epoch {} could be read ({} skipped)",
                    epoch + 1,
                    progress.skipped
                )));
            }
            match (&validation, dp.as_deref()) {
                (Some(Validation::Tensors((vx, vy))), Some(dp)) => {
                    for (k, v) in dp.evaluate_tensors(self, vx, vy, cfg.batch_size)? {
                        logs.insert(format!("val_{k}"), v);
                    }
                }
                (Some(Validation::Source(v)), Some(dp)) => {
                    // the ranks take the validation batches in turn
                    let (rank, size) = (dp.rank(), dp.size());
                    let mut skipped = 0;
                    let batches = v.epoch(0, 0).enumerate().filter_map(|(i, b)| {
                        (i % size == rank).then(|| {
                            b.map(|b| {
                                skipped += b.skipped;
                                (b.inputs, b.targets)
                            })
                        })
                    });
                    let batches: Vec<_> = batches.collect();
                    for (k, v) in dp.evaluate(self, batches.into_iter())? {
                        logs.insert(format!("val_{k}"), v);
                    }
                    progress.skipped += skipped;
                }
                (Some(Validation::Tensors((vx, vy))), None) => {
                    for (k, v) in self.evaluate(vx, vy, cfg.batch_size)? {
                        logs.insert(format!("val_{k}"), v);
                    }
                }
                (Some(Validation::Source(v)), None) => {
                    let (results, skipped) = self.evaluate_source(*v)?;
                    progress.skipped += skipped;
                    for (k, v) in results {
                        logs.insert(format!("val_{k}"), v);
                    }
                }
                (None, _) => {}
            }
            if let Some(c) = &self.compiled {
                logs.insert("learning_rate".into(), c.optimizer.current_learning_rate());
            }
            progress.finish(&logs);
            history.push(epoch, &logs);
            for cb in callbacks.iter_mut() {
                cb.on_epoch_end(epoch, &logs, self, &mut control)?;
            }
            if control.stop_training || cfg.max_steps.is_some_and(|m| global_step >= m) {
                break 'epochs;
            }
        }
        for cb in callbacks.iter_mut() {
            cb.on_train_end(self)?;
        }
        Ok(history)
    }

    /// Loss and metrics over a dataset, in inference mode, without a graph.
    pub fn evaluate(
        &mut self,
        inputs: &[Tensor],
        targets: &Targets,
        batch_size: usize,
    ) -> Result<BTreeMap<String, f32>> {
        self.compiled_or_err()?;
        let n = sample_count(inputs, targets)?;
        let idx: Vec<usize> = (0..n).collect();
        let batches = idx.chunks(batch_size.max(1)).map(|chunk| {
            Ok((
                inputs
                    .iter()
                    .map(|x| gather_rows(x, chunk))
                    .collect::<Result<Vec<_>>>()?,
                targets.gather(chunk)?,
                0,
            ))
        });
        Ok(self.evaluate_batches(batches)?.0)
    }

    /// Loss and metrics over one epoch of `source`, in inference mode, and
    /// the number of samples the source could not read.
    pub fn evaluate_source(
        &mut self,
        source: &dyn BatchSource,
    ) -> Result<(BTreeMap<String, f32>, usize)> {
        self.compiled_or_err()?;
        let batches = source
            .epoch(0, 0)
            .map(|b| b.map(|b| (b.inputs, b.targets, b.skipped)));
        self.evaluate_batches(batches)
    }

    /// Loss and metrics over `batches` of (inputs, targets, samples skipped).
    fn evaluate_batches(
        &mut self,
        batches: impl Iterator<Item = Result<(Vec<Tensor>, Targets, usize)>>,
    ) -> Result<(BTreeMap<String, f32>, usize)> {
        let (loss_fn, metrics) = {
            let c = self
                .compiled
                .as_ref()
                .ok_or_else(|| NnError::Training("not compiled".into()))?;
            (c.loss, c.metrics.clone())
        };
        let (mut loss_sum, mut n) = (0.0f64, 0usize);
        let mut correct = vec![(0usize, 0usize); metrics.len()];
        let mut skipped = 0;
        for batch in batches {
            let (xs, ys, lost) = batch?;
            skipped += lost;
            if ys.is_empty() {
                continue;
            }
            let out = no_grad(|| self.run(&xs, false, false))?.remove(0);
            let l = no_grad(|| loss_fn.compute(&out, &ys, None))?.item()?;
            loss_sum += l as f64 * ys.len() as f64;
            n += ys.len();
            for (m, c) in metrics.iter().zip(correct.iter_mut()) {
                let (k, t) = m.count(&out, &ys)?;
                c.0 += k;
                c.1 += t;
            }
        }
        let mut logs = BTreeMap::new();
        logs.insert("loss".to_string(), (loss_sum / n.max(1) as f64) as f32);
        for (m, c) in metrics.iter().zip(correct) {
            logs.insert(m.name(), c.0 as f32 / c.1.max(1) as f32);
        }
        Ok((logs, skipped))
    }

    /// Outputs for every sample, in inference mode, batched, without a graph.
    pub fn predict(&mut self, inputs: &[Tensor], batch_size: usize) -> Result<Vec<Tensor>> {
        let n = inputs
            .first()
            .and_then(|x| x.shape().first().copied())
            .unwrap_or(0);
        let idx: Vec<usize> = (0..n).collect();
        let mut parts: Vec<Vec<Tensor>> = Vec::new();
        for chunk in idx.chunks(batch_size.max(1)) {
            let xs: Vec<Tensor> = inputs
                .iter()
                .map(|x| gather_rows(x, chunk))
                .collect::<Result<_>>()?;
            parts.push(no_grad(|| self.run(&xs, false, false))?);
        }
        let outputs = self.outputs.len();
        if parts.is_empty() {
            return Err(NnError::Data("predict: no samples".into()));
        }
        (0..outputs)
            .map(|o| {
                let ts: Vec<Tensor> = parts.iter().map(|p| p[o].clone()).collect();
                Ok(Tensor::concat(&ts, 0)?)
            })
            .collect()
    }

    /// Saves weights, optimizer state and where to resume: `epoch`, after
    /// `step` of its batches (0 at an epoch boundary).
    pub fn save_checkpoint(&self, path: impl AsRef<Path>, epoch: usize, step: usize) -> Result<()> {
        self.save_checkpoint_with_history(path, epoch, step, None)
    }

    /// [`Model::save_checkpoint`], with the history of the epochs done so
    /// far, so a resumed run's history starts where this one stopped.
    pub fn save_checkpoint_with_history(
        &self,
        path: impl AsRef<Path>,
        epoch: usize,
        step: usize,
        history: Option<&History>,
    ) -> Result<()> {
        let mut tensors = self.weight_tensors();
        if let Some(c) = &self.compiled {
            for (k, v) in c.optimizer.state(&self.trainable_params()) {
                let len = v.len();
                tensors.push((format!("optimizer/{k}"), vec![len], v));
            }
        }
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), "strata-checkpoint".to_string());
        meta.insert("epoch".to_string(), epoch.to_string());
        meta.insert("step".to_string(), step.to_string());
        meta.insert("spec".to_string(), self.to_spec().to_string());
        self.info().write_to(&mut meta);
        if let Some(h) = history {
            let text = serde_json::to_string(h).map_err(|e| NnError::Training(e.to_string()))?;
            meta.insert(HISTORY_KEY.to_string(), text);
        }
        super::weights_io::write_safetensors_atomic(path, &tensors, Some(meta))
    }

    /// Restores a checkpoint; returns (epoch, step) to resume from, for
    /// `FitConfig::initial_epoch` and `initial_step`.
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<(usize, usize)> {
        let path = path.as_ref();
        let (tensors, meta) = super::weights_io::read_safetensors(path)?;
        let epoch = meta
            .get("epoch")
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| NnError::Weights {
                path: path.display().to_string(),
                message: "not a checkpoint (no epoch in its metadata)".into(),
            })?;
        let step = meta.get("step").and_then(|e| e.parse().ok()).unwrap_or(0);
        let (opt, weights): (Vec<_>, Vec<_>) = tensors
            .into_iter()
            .partition(|(n, _, _)| n.starts_with("optimizer/"));
        self.set_weight_tensors(path, weights)?;
        let params = self.trainable_params();
        if let Some(c) = self.compiled.as_mut() {
            let state: Vec<(String, Vec<f32>)> = opt
                .into_iter()
                .map(|(n, _, v)| (n["optimizer/".len()..].to_string(), v))
                .collect();
            if !state.is_empty() {
                c.optimizer.load_state(&params, &state)?;
            }
        }
        Ok((epoch, step))
    }
}

/// The first of `params[which]` whose gradient holds a NaN or an infinity.
pub(crate) fn first_non_finite<'p>(
    params: &'p [crate::model::Param],
    which: &[usize],
) -> Option<&'p crate::model::Param> {
    which.iter().map(|&i| &params[i]).find(|p| {
        p.value
            .with_grad(|g| g.is_some_and(|g| !strata_core::kernels::parallel::all_finite(g)))
    })
}

/// The error that stops training at a non-finite gradient.
pub(crate) fn non_finite_gradient(p: &crate::model::Param) -> NnError {
    NnError::Training(format!("the gradient of {} became non-finite", p.name))
}
