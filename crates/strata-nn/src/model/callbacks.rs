//! Callbacks run by `fit` at epoch boundaries: EarlyStopping, ModelCheckpoint,
//! ReduceLROnPlateau, LearningRateScheduler, or your own [`Callback`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::weights_io::NamedTensor;
use super::Model;
use crate::error::{NnError, Result};

/// Lets a callback stop training.
#[derive(Debug, Default)]
pub struct TrainingControl {
    pub stop_training: bool,
}

/// Hooks into `fit`. Every method has a do-nothing default.
pub trait Callback {
    fn on_train_begin(&mut self, _model: &mut Model) -> Result<()> {
        Ok(())
    }
    fn on_epoch_begin(&mut self, _epoch: usize, _model: &mut Model) -> Result<()> {
        Ok(())
    }
    /// After each optimizer step: `batch` is the 0-based batch of `epoch` just
    /// done. Setting `control.stop_training` here stops at once (mid-epoch).
    fn on_batch_end(
        &mut self,
        _epoch: usize,
        _batch: usize,
        _logs: &BTreeMap<String, f32>,
        _model: &mut Model,
        _control: &mut TrainingControl,
    ) -> Result<()> {
        Ok(())
    }
    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        _logs: &BTreeMap<String, f32>,
        _model: &mut Model,
        _control: &mut TrainingControl,
    ) -> Result<()> {
        Ok(())
    }
    fn on_train_end(&mut self, _model: &mut Model) -> Result<()> {
        Ok(())
    }
}

fn lower_is_better(monitor: &str) -> bool {
    !(monitor.contains("acc") || monitor.contains("auc"))
}

fn monitored(logs: &BTreeMap<String, f32>, monitor: &str) -> Result<f32> {
    logs.get(monitor).copied().ok_or_else(|| {
        NnError::Training(format!(
            "callback monitors '{monitor}', which is not among the logs ({})",
            logs.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })
}

fn improved(current: f32, best: Option<f32>, min_delta: f32, lower: bool) -> bool {
    match best {
        None => true,
        Some(b) if lower => current < b - min_delta,
        Some(b) => current > b + min_delta,
    }
}

/// Stops when `monitor` has not improved for `patience` epochs.
pub struct EarlyStopping {
    pub monitor: String,
    pub patience: usize,
    pub min_delta: f32,
    pub restore_best_weights: bool,
    best: Option<f32>,
    wait: usize,
    best_weights: Option<Vec<NamedTensor>>,
    /// The epoch at which training stopped, if it did.
    pub stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    pub fn new(monitor: &str, patience: usize, restore_best_weights: bool) -> Self {
        EarlyStopping {
            monitor: monitor.to_string(),
            patience,
            min_delta: 0.0,
            restore_best_weights,
            best: None,
            wait: 0,
            best_weights: None,
            stopped_epoch: None,
        }
    }
}

impl Callback for EarlyStopping {
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &BTreeMap<String, f32>,
        model: &mut Model,
        control: &mut TrainingControl,
    ) -> Result<()> {
        let v = monitored(logs, &self.monitor)?;
        if improved(v, self.best, self.min_delta, lower_is_better(&self.monitor)) {
            self.best = Some(v);
            self.wait = 0;
            if self.restore_best_weights {
                self.best_weights = Some(model.weight_tensors());
            }
            return Ok(());
        }
        self.wait += 1;
        if self.wait >= self.patience {
            control.stop_training = true;
            self.stopped_epoch = Some(epoch);
            if let Some(w) = self.best_weights.take() {
                model.set_weight_tensors(std::path::Path::new("<best weights>"), w)?;
            }
        }
        Ok(())
    }
}

/// Saves the weights after each epoch (or only when `monitor` improves).
pub struct ModelCheckpoint {
    pub path: PathBuf,
    pub monitor: String,
    pub save_best_only: bool,
    best: Option<f32>,
}

impl ModelCheckpoint {
    pub fn new(path: impl Into<PathBuf>, monitor: &str, save_best_only: bool) -> Self {
        ModelCheckpoint {
            path: path.into(),
            monitor: monitor.to_string(),
            save_best_only,
            best: None,
        }
    }
}

impl Callback for ModelCheckpoint {
    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        logs: &BTreeMap<String, f32>,
        model: &mut Model,
        _c: &mut TrainingControl,
    ) -> Result<()> {
        if self.save_best_only {
            let v = monitored(logs, &self.monitor)?;
            if !improved(v, self.best, 0.0, lower_is_better(&self.monitor)) {
                return Ok(());
            }
            self.best = Some(v);
        }
        model.save_weights(&self.path)
    }
}

/// Multiplies the learning rate by `factor` when `monitor` stalls for `patience` epochs.
pub struct ReduceLROnPlateau {
    pub monitor: String,
    pub factor: f32,
    pub patience: usize,
    pub min_lr: f32,
    pub min_delta: f32,
    pub cooldown: usize,
    best: Option<f32>,
    wait: usize,
    cooldown_left: usize,
}

impl ReduceLROnPlateau {
    pub fn new(monitor: &str, factor: f32, patience: usize) -> Self {
        ReduceLROnPlateau {
            monitor: monitor.to_string(),
            factor,
            patience,
            min_lr: 0.0,
            min_delta: 1e-4,
            cooldown: 0,
            best: None,
            wait: 0,
            cooldown_left: 0,
        }
    }
}

impl Callback for ReduceLROnPlateau {
    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        logs: &BTreeMap<String, f32>,
        model: &mut Model,
        _c: &mut TrainingControl,
    ) -> Result<()> {
        let v = monitored(logs, &self.monitor)?;
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            self.wait = 0;
        }
        if improved(v, self.best, self.min_delta, lower_is_better(&self.monitor)) {
            self.best = Some(v);
            self.wait = 0;
        } else if self.cooldown_left == 0 {
            self.wait += 1;
            if self.wait >= self.patience {
                if let Some(opt) = model.optimizer_mut() {
                    let lr = opt.current_learning_rate();
                    opt.set_learning_rate((lr * self.factor).max(self.min_lr));
                }
                self.cooldown_left = self.cooldown;
                self.wait = 0;
            }
        }
        Ok(())
    }
}

/// Sets the learning rate at each epoch start from `schedule(epoch, lr)`.
pub struct LearningRateScheduler<F: FnMut(usize, f32) -> f32> {
    pub schedule: F,
}

impl<F: FnMut(usize, f32) -> f32> Callback for LearningRateScheduler<F> {
    fn on_epoch_begin(&mut self, epoch: usize, model: &mut Model) -> Result<()> {
        if let Some(opt) = model.optimizer_mut() {
            let lr = (self.schedule)(epoch, opt.current_learning_rate());
            opt.set_learning_rate(lr);
        }
        Ok(())
    }
}
