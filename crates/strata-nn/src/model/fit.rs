//! Training and inference loops: `fit`, `evaluate`, `predict`, one
//! `train_step`, and checkpoints that resume training exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use strata_core::{no_grad, Rng, Tensor};

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

fn sample_count(inputs: &[Tensor], targets: &Targets) -> Result<usize> {
    let n = inputs
        .first()
        .and_then(|x| x.shape().first().copied())
        .ok_or_else(|| NnError::Training("no input data".into()))?;
    for x in inputs {
        if x.shape().first() != Some(&n) {
            return Err(NnError::Training(format!(
                "inputs hold different sample counts ({} and {n})",
                strata_core::fmt_shape(x.shape())
            )));
        }
    }
    if targets.len() != n {
        return Err(NnError::Training(format!(
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
        self.compiled_or_err()?;
        let params = self.trainable_params();
        for p in &params {
            p.value.zero_grad();
        }
        let loss_fn = self
            .compiled
            .as_ref()
            .map(|c| c.loss)
            .ok_or_else(|| NnError::Training("not compiled".into()))?;
        let fused = loss_fn.fuses_with_softmax() && self.ends_in_softmax();
        let mut outs = self.run(inputs, true, fused)?;
        let out = outs.remove(0);
        let loss = if fused {
            loss_fn.compute_from_logits(&out, targets, sample_weights)?
        } else {
            loss_fn.compute(&out, targets, sample_weights)?
        };
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
        if let Some(bad) = params.iter().find(|p| {
            p.value
                .with_grad(|g| g.is_some_and(|g| !strata_core::kernels::parallel::all_finite(g)))
        }) {
            return Err(NnError::Training(format!(
                "the gradient of {} became non-finite",
                bad.name
            )));
        }
        let c = self
            .compiled
            .as_mut()
            .ok_or_else(|| NnError::Training("not compiled".into()))?;
        c.optimizer.step(&params)?;
        Ok((value, out.detach()))
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
        let metrics = self
            .compiled
            .as_ref()
            .map(|c| c.metrics.clone())
            .unwrap_or_default();
        let steps_per_epoch = n.div_ceil(cfg.batch_size) as u64;
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
            let mut order: Vec<usize> = (0..n).collect();
            if cfg.shuffle {
                Rng::new(mix(cfg.seed, epoch as u64 + 1)).shuffle(&mut order);
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
            for (b, idx) in order.chunks(cfg.batch_size).enumerate().skip(skip) {
                if cfg.max_steps.is_some_and(|m| global_step >= m) {
                    break;
                }
                self.rng = Rng::new(mix(cfg.seed ^ 0xD40F, global_step));
                let xs: Vec<Tensor> = inputs
                    .iter()
                    .map(|x| gather_rows(x, idx))
                    .collect::<Result<_>>()?;
                let ys = targets.gather(idx)?;
                let sw: Option<Vec<f32>> = weights
                    .as_ref()
                    .map(|w| idx.iter().map(|&i| w[i]).collect());
                let (loss, out) =
                    self.train_step(&xs, &ys, sw.as_deref())
                        .map_err(|e| match e {
                            NnError::Training(m) => NnError::Training(format!(
                                "{m} at step {} (epoch {}, batch {})",
                                global_step + 1,
                                epoch + 1,
                                b + 1
                            )),
                            other => other,
                        })?;
                global_step += 1;
                loss_sum += loss as f64 * idx.len() as f64;
                seen += idx.len();
                logs.insert("loss".to_string(), (loss_sum / seen as f64) as f32);
                for (m, c) in metrics.iter().zip(correct.iter_mut()) {
                    let (k, t) = m.count(&out, &ys)?;
                    c.0 += k;
                    c.1 += t;
                    logs.insert(m.name(), c.0 as f32 / c.1.max(1) as f32);
                }
                progress.step(idx.len(), &logs);
                for cb in callbacks.iter_mut() {
                    cb.on_batch_end(epoch, b, &logs, self, &mut control)?;
                }
                if control.stop_training {
                    progress.finish(&logs);
                    break 'epochs;
                }
            }
            if let Some((vx, vy)) = &validation {
                for (k, v) in self.evaluate(vx, vy, cfg.batch_size)? {
                    logs.insert(format!("val_{k}"), v);
                }
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
        let (loss_fn, metrics) = {
            let c = self
                .compiled
                .as_ref()
                .ok_or_else(|| NnError::Training("not compiled".into()))?;
            (c.loss, c.metrics.clone())
        };
        let bs = batch_size.max(1);
        let (mut loss_sum, mut correct) = (0.0f64, vec![(0usize, 0usize); metrics.len()]);
        let idx: Vec<usize> = (0..n).collect();
        for chunk in idx.chunks(bs) {
            let xs: Vec<Tensor> = inputs
                .iter()
                .map(|x| gather_rows(x, chunk))
                .collect::<Result<_>>()?;
            let ys = targets.gather(chunk)?;
            let out = no_grad(|| self.run(&xs, false, false))?.remove(0);
            let l = no_grad(|| loss_fn.compute(&out, &ys, None))?.item()?;
            loss_sum += l as f64 * chunk.len() as f64;
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
        Ok(logs)
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
            return Err(NnError::Training("predict: no samples".into()));
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
