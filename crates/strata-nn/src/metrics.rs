//! Metrics: accuracy (sparse, categorical, binary) and top-k accuracy.

use strata_core::Tensor;

use crate::error::{NnError, Result};
use crate::losses::Targets;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Fraction of rows whose arg-max equals the target class (or the target's arg-max).
    Accuracy,
    /// Fraction of rows whose target class is among the k highest scores.
    TopK(usize),
    /// Fraction of elements where `pred > 0.5` equals `target > 0.5`.
    BinaryAccuracy,
}

impl Metric {
    pub fn from_name(name: &str) -> Result<Metric> {
        Ok(match name {
            "accuracy" | "acc" | "sparse_categorical_accuracy" | "categorical_accuracy" => {
                Metric::Accuracy
            }
            "binary_accuracy" => Metric::BinaryAccuracy,
            n if n.starts_with("top_") && n.ends_with("_accuracy") => {
                let k = n[4..n.len() - 9]
                    .parse()
                    .map_err(|_| NnError::Training(format!("unknown metric '{n}'")))?;
                Metric::TopK(k)
            }
            n => {
                return Err(NnError::Training(format!(
                    "unknown metric '{n}' (accuracy, binary_accuracy, top_K_accuracy)"
                )))
            }
        })
    }

    pub fn name(&self) -> String {
        match self {
            Metric::Accuracy => "accuracy".into(),
            Metric::TopK(k) => format!("top_{k}_accuracy"),
            Metric::BinaryAccuracy => "binary_accuracy".into(),
        }
    }

    /// (number correct, number counted) for one batch.
    pub fn count(&self, pred: &Tensor, targets: &Targets) -> Result<(usize, usize)> {
        let classes = pred.shape().last().copied().unwrap_or(0).max(1);
        let p = pred.data();
        let rows = p.len() / classes;
        let target_class = |r: usize| -> Option<usize> {
            match targets {
                Targets::Classes(c) => c.get(r).copied(),
                Targets::Dense(t) => {
                    let t = t.data();
                    let row = t.get(r * classes..(r + 1) * classes)?;
                    Some(argmax(row))
                }
            }
        };
        match self {
            Metric::BinaryAccuracy => {
                let Targets::Dense(t) = targets else {
                    return Err(NnError::Training(
                        "binary_accuracy needs dense targets".into(),
                    ));
                };
                let t = t.data();
                let correct = p
                    .iter()
                    .zip(t.iter())
                    .filter(|(a, b)| (**a > 0.5) == (**b > 0.5))
                    .count();
                Ok((correct, p.len()))
            }
            Metric::Accuracy | Metric::TopK(_) => {
                let k = if let Metric::TopK(k) = self { *k } else { 1 };
                let mut correct = 0;
                for r in 0..rows {
                    let row = &p[r * classes..(r + 1) * classes];
                    let Some(c) = target_class(r) else {
                        return Err(NnError::Training(format!(
                            "no target for prediction row {r}"
                        )));
                    };
                    if c >= classes {
                        continue;
                    }
                    let better = row.iter().filter(|&&v| v > row[c]).count();
                    if better < k && (k > 1 || argmax(row) == c) {
                        correct += 1;
                    }
                }
                Ok((correct, rows))
            }
        }
    }
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_top_k() {
        let p = Tensor::from_vec(vec![0.1, 0.7, 0.2, 0.5, 0.3, 0.2], &[2, 3]).unwrap();
        let t = Targets::Classes(vec![1, 1]);
        assert_eq!(Metric::Accuracy.count(&p, &t).unwrap(), (1, 2));
        assert_eq!(Metric::TopK(2).count(&p, &t).unwrap(), (2, 2));
        assert_eq!(
            Metric::from_name("top_5_accuracy").unwrap(),
            Metric::TopK(5)
        );
        let oh = Targets::Dense(Tensor::from_vec(vec![0., 1., 0., 0., 0., 1.], &[2, 3]).unwrap());
        assert_eq!(Metric::Accuracy.count(&p, &oh).unwrap(), (1, 2));
    }
}
