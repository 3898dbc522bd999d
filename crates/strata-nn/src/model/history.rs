//! History: per-epoch loss and metrics, train and validation, as `fit` returns it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Epoch numbers (0-based) in order.
    pub epoch: Vec<usize>,
    /// `loss`, `accuracy`, `val_loss`, `val_accuracy`, `learning_rate`, ... per epoch.
    pub history: BTreeMap<String, Vec<f32>>,
}

impl History {
    pub fn push(&mut self, epoch: usize, logs: &BTreeMap<String, f32>) {
        self.epoch.push(epoch);
        for (k, v) in logs {
            self.history.entry(k.clone()).or_default().push(*v);
        }
    }
    /// Appends `later`'s epochs (a resumed run's) after these.
    pub fn extend(&mut self, later: &History) {
        let before = self.epoch.len();
        self.epoch.extend_from_slice(&later.epoch);
        for (k, v) in &later.history {
            let series = self.history.entry(k.clone()).or_default();
            // a key the earlier epochs did not log reads NaN there
            series.resize(before, f32::NAN);
            series.extend_from_slice(v);
        }
        for series in self.history.values_mut() {
            series.resize(self.epoch.len(), f32::NAN);
        }
    }
    /// The values of one key (`"loss"`, `"val_accuracy"`, ...).
    pub fn get(&self, key: &str) -> Option<&[f32]> {
        self.history.get(key).map(|v| v.as_slice())
    }
    /// Saved as JSON, atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| NnError::Training(e.to_string()))?;
        super::weights_io::write_atomic(path.as_ref(), text.as_bytes())
    }
    pub fn load(path: impl AsRef<Path>) -> Result<History> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| NnError::io(path, e))?;
        let h: History = serde_json::from_str(&text)
            .map_err(|e| NnError::Spec(format!("{}: not a history file: {e}", path.display())))?;
        if h.history.values().any(|v| v.len() != h.epoch.len()) {
            return Err(NnError::Spec(format!(
                "{}: every series must have one value per epoch",
                path.display()
            )));
        }
        Ok(h)
    }
}
