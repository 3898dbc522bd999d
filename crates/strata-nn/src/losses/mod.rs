//! Losses by Keras name, reduced as Keras's `sum_over_batch_size`: the mean of
//! the per-sample losses (optionally weighted per sample, for class weights).

mod binary_crossentropy;
mod crossentropy;
mod regression;

pub use binary_crossentropy::binary_crossentropy;
pub use crossentropy::{
    categorical_crossentropy, softmax_cross_entropy_with_logits, sparse_categorical_crossentropy,
};
pub use regression::{mean_absolute_error, mean_squared_error};

use strata_core::Tensor;

use crate::error::{NnError, Result};

/// What a model is trained against.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Integer class ids, one per row of the prediction's leading axes.
    Classes(Vec<usize>),
    /// Dense targets with the prediction's shape (one-hot, regression values).
    Dense(Tensor),
}

impl Targets {
    /// Number of samples (first axis).
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Dense(t) => t.shape().first().copied().unwrap_or(0),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The targets of the given samples, in order.
    pub fn gather(&self, idx: &[usize]) -> Result<Targets> {
        Ok(match self {
            Targets::Classes(c) => Targets::Classes(idx.iter().map(|&i| c[i]).collect()),
            Targets::Dense(t) => Targets::Dense(crate::model::gather_rows(t, idx)?),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    SparseCategoricalCrossentropy { from_logits: bool },
    CategoricalCrossentropy { from_logits: bool },
    BinaryCrossentropy,
    MeanSquaredError,
    MeanAbsoluteError,
}

impl Loss {
    /// The Keras loss names `from_name` takes (besides the short `mse` and `mae`).
    pub const NAMES: [&'static str; 5] = [
        "sparse_categorical_crossentropy",
        "categorical_crossentropy",
        "binary_crossentropy",
        "mean_squared_error",
        "mean_absolute_error",
    ];

    /// Parses a Keras loss name.
    pub fn from_name(name: &str) -> Result<Loss> {
        Ok(match name {
            "sparse_categorical_crossentropy" => Loss::SparseCategoricalCrossentropy { from_logits: false },
            "categorical_crossentropy" => Loss::CategoricalCrossentropy { from_logits: false },
            "binary_crossentropy" => Loss::BinaryCrossentropy,
            "mean_squared_error" | "mse" => Loss::MeanSquaredError,
            "mean_absolute_error" | "mae" => Loss::MeanAbsoluteError,
            other => {
                return Err(NnError::Training(format!(
                    "unknown loss '{other}' (sparse_categorical_crossentropy, categorical_crossentropy, binary_crossentropy, mean_squared_error, mean_absolute_error)"
                )))
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => "sparse_categorical_crossentropy",
            Loss::CategoricalCrossentropy { .. } => "categorical_crossentropy",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::MeanSquaredError => "mean_squared_error",
            Loss::MeanAbsoluteError => "mean_absolute_error",
        }
    }

    /// Whether the fused softmax-crossentropy can replace softmax + this loss.
    pub fn fuses_with_softmax(&self) -> bool {
        matches!(
            self,
            Loss::SparseCategoricalCrossentropy { from_logits: false }
                | Loss::CategoricalCrossentropy { from_logits: false }
        )
    }

    /// Per-sample losses (one per row of the leading axes), not yet reduced.
    pub fn per_sample(&self, pred: &Tensor, targets: &Targets) -> Result<Tensor> {
        match (self, targets) {
            (Loss::SparseCategoricalCrossentropy { from_logits }, Targets::Classes(c)) => {
                if *from_logits {
                    softmax_cross_entropy_with_logits(pred, targets)
                } else {
                    sparse_categorical_crossentropy(pred, c)
                }
            }
            (Loss::CategoricalCrossentropy { from_logits }, Targets::Dense(t)) => {
                if *from_logits {
                    softmax_cross_entropy_with_logits(pred, targets)
                } else {
                    categorical_crossentropy(pred, t)
                }
            }
            (Loss::BinaryCrossentropy, Targets::Dense(t)) => binary_crossentropy(pred, t),
            (Loss::MeanSquaredError, Targets::Dense(t)) => mean_squared_error(pred, t),
            (Loss::MeanAbsoluteError, Targets::Dense(t)) => mean_absolute_error(pred, t),
            (loss, Targets::Classes(_)) => Err(NnError::Training(format!(
                "{} needs dense targets with the prediction's shape, found class ids",
                loss.name()
            ))),
            (loss, Targets::Dense(_)) => Err(NnError::Training(format!(
                "{} needs integer class ids, found dense targets",
                loss.name()
            ))),
        }
    }

    /// The scalar loss: mean of per-sample losses, weighted if `weights` are given.
    pub fn compute(
        &self,
        pred: &Tensor,
        targets: &Targets,
        weights: Option<&[f32]>,
    ) -> Result<Tensor> {
        reduce(self.per_sample(pred, targets)?, weights)
    }

    /// The scalar loss computed from the logits before a final softmax, by the
    /// fused, stable softmax-crossentropy (same value and gradient as softmax
    /// followed by this loss, without clipping).
    pub fn compute_from_logits(
        &self,
        logits: &Tensor,
        targets: &Targets,
        weights: Option<&[f32]>,
    ) -> Result<Tensor> {
        reduce(softmax_cross_entropy_with_logits(logits, targets)?, weights)
    }
}

/// `sum(w_i * l_i) / n` (Keras's sum_over_batch_size).
fn reduce(per_sample: Tensor, weights: Option<&[f32]>) -> Result<Tensor> {
    match weights {
        None => Ok(per_sample.mean_all()),
        Some(w) => {
            if w.len() != per_sample.numel() {
                return Err(NnError::Training(format!(
                    "{} sample weights for {} per-sample losses",
                    w.len(),
                    per_sample.numel()
                )));
            }
            let wt = Tensor::from_vec(w.to_vec(), per_sample.shape())?;
            Ok(per_sample.mul(&wt)?.mean_all())
        }
    }
}

/// Checks that `targets` has `pred`'s shape.
pub(crate) fn same_shape(loss: &str, pred: &Tensor, target: &Tensor) -> Result<()> {
    if pred.shape() != target.shape() {
        return Err(NnError::Training(format!(
            "{loss}: targets of shape {} for predictions of shape {}",
            strata_core::fmt_shape(target.shape()),
            strata_core::fmt_shape(pred.shape())
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_mismatches_are_errors() {
        for n in [
            "sparse_categorical_crossentropy",
            "categorical_crossentropy",
            "binary_crossentropy",
            "mean_squared_error",
            "mean_absolute_error",
        ] {
            assert_eq!(Loss::from_name(n).unwrap().name(), n);
        }
        assert!(Loss::from_name("hinge").is_err());
        let p = Tensor::full(&[2, 3], 1.0 / 3.0);
        assert!(Loss::MeanSquaredError
            .compute(&p, &Targets::Classes(vec![0, 1]), None)
            .is_err());
    }

    #[test]
    fn sample_weights_scale_each_loss() {
        let p = Tensor::from_vec(vec![1.0, 2.0], &[2, 1]).unwrap();
        let t = Targets::Dense(Tensor::zeros(&[2, 1]));
        let l = Loss::MeanSquaredError
            .compute(&p, &t, Some(&[1.0, 0.5]))
            .unwrap();
        assert!((l.item().unwrap() - (1.0 + 0.5 * 4.0) / 2.0).abs() < 1e-6);
    }
}
