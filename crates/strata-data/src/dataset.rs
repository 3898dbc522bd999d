//! `Dataset`: N samples held in memory: inputs `(N, ...)` (NHWC for images),
//! with class ids (`labels`, for classification) and/or dense float targets
//! (`targets`, `(N, ...)`, for regression or one-hot). At least one of the two
//! must be present; an absent one is an empty `Vec` / `None`.

use strata_core::{fmt_shape, Tensor};

use crate::error::{DataError, Result};

/// An in-memory dataset. Cloning is cheap for the tensors (shared handles).
#[derive(Debug, Clone)]
pub struct Dataset {
    inputs: Tensor,
    labels: Vec<usize>,
    targets: Option<Tensor>,
}

/// Converts an `f32` fraction to the `f64` it was written as (0.2f32 → 0.2),
/// so splits compute like Keras's Python floats.
pub(crate) fn fraction_f64(f: f32) -> f64 {
    f.to_string().parse::<f64>().unwrap_or(f as f64)
}

fn samples(inputs: &Tensor, what: &str) -> Result<usize> {
    inputs
        .shape()
        .first()
        .copied()
        .ok_or_else(|| DataError::shape(what, "inputs of rank >= 1 (N, ...)", "a scalar"))
}

impl Dataset {
    /// A classification dataset: `labels.len()` must equal `inputs.shape()[0]`.
    pub fn new(inputs: Tensor, labels: Vec<usize>) -> Result<Dataset> {
        let n = samples(&inputs, "Dataset::new")?;
        if labels.len() != n {
            return Err(DataError::shape(
                "Dataset::new labels",
                format!("{n} labels for inputs {}", fmt_shape(inputs.shape())),
                format!("{} labels", labels.len()),
            ));
        }
        Ok(Dataset {
            inputs,
            labels,
            targets: None,
        })
    }

    /// A dataset with dense targets `(N, ...)` and no class ids.
    pub fn with_targets(inputs: Tensor, targets: Tensor) -> Result<Dataset> {
        let n = samples(&inputs, "Dataset::with_targets")?;
        let m = samples(&targets, "Dataset::with_targets targets")?;
        if m != n {
            return Err(DataError::shape(
                "Dataset::with_targets targets",
                format!("({n}, ...) to match inputs {}", fmt_shape(inputs.shape())),
                fmt_shape(targets.shape()),
            ));
        }
        Ok(Dataset {
            inputs,
            labels: Vec::new(),
            targets: Some(targets),
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.inputs.shape()[0]
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All inputs, `(N, ...)`.
    pub fn inputs(&self) -> &Tensor {
        &self.inputs
    }

    /// Class ids (empty for a targets-only dataset).
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Dense targets, when present.
    pub fn targets(&self) -> Option<&Tensor> {
        self.targets.as_ref()
    }

    /// True when the dataset carries class ids.
    pub fn has_labels(&self) -> bool {
        !self.labels.is_empty() || self.targets.is_none()
    }

    /// The shape of one sample (inputs without the leading N).
    pub fn sample_shape(&self) -> &[usize] {
        &self.inputs.shape()[1..]
    }

    /// Splits off the LAST `fraction` of samples as validation, like Keras's
    /// `validation_split`: the first `floor(N * (1 - fraction))` are training.
    /// `fraction` must lie in [0, 1).
    pub fn split_validation(&self, fraction: f32) -> Result<(Dataset, Dataset)> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(DataError::arg(
                "Dataset::split_validation",
                "fraction",
                format!("{fraction} is not in [0, 1)"),
            ));
        }
        let n = self.len();
        let split = ((n as f64) * (1.0 - fraction_f64(fraction))).floor() as usize;
        let split = split.min(n);
        let train: Vec<usize> = (0..split).collect();
        let val: Vec<usize> = (split..n).collect();
        Ok((self.subset(&train)?, self.subset(&val)?))
    }

    /// The samples at `indices`, in that order, as a new dataset.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let inputs = gather(&self.inputs, indices, "Dataset::subset")?;
        let labels = if self.labels.is_empty() {
            Vec::new()
        } else {
            indices.iter().map(|&i| self.labels[i]).collect()
        };
        let targets = match &self.targets {
            Some(t) => Some(gather(t, indices, "Dataset::subset targets")?),
            None => None,
        };
        Ok(Dataset {
            inputs,
            labels,
            targets,
        })
    }

    /// Gathers the rows at `indices`: inputs `(len, ...)` and their class ids
    /// (empty when the dataset has none).
    pub fn batch(&self, indices: &[usize]) -> Result<(Tensor, Vec<usize>)> {
        let inputs = gather(&self.inputs, indices, "Dataset::batch")?;
        let labels = if self.labels.is_empty() {
            Vec::new()
        } else {
            indices.iter().map(|&i| self.labels[i]).collect()
        };
        Ok((inputs, labels))
    }

    /// Gathers the dense targets at `indices`, when the dataset has them.
    pub fn batch_targets(&self, indices: &[usize]) -> Result<Option<Tensor>> {
        match &self.targets {
            Some(t) => Ok(Some(gather(t, indices, "Dataset::batch_targets")?)),
            None => Ok(None),
        }
    }
}

/// Copies rows `indices` of `t` (along axis 0) into a new tensor.
pub(crate) fn gather(t: &Tensor, indices: &[usize], what: &str) -> Result<Tensor> {
    let shape = t.shape();
    let n = samples(t, what)?;
    if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
        return Err(DataError::arg(
            what,
            "indices",
            format!("index {bad} out of range for {n} samples"),
        ));
    }
    let row: usize = shape[1..].iter().product();
    let data = t.data();
    let mut out = Vec::with_capacity(indices.len() * row);
    for &i in indices {
        out.extend_from_slice(&data[i * row..(i + 1) * row]);
    }
    let mut out_shape = shape.to_vec();
    out_shape[0] = indices.len();
    Ok(Tensor::from_vec(out, &out_shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        let x: Vec<f32> = (0..n * 2).map(|v| v as f32).collect();
        Dataset::new(Tensor::from_vec(x, &[n, 2]).unwrap(), (0..n).collect()).unwrap()
    }

    #[test]
    fn batch_gathers_rows() {
        let d = toy(5);
        assert_eq!(d.len(), 5);
        assert_eq!(d.sample_shape(), &[2]);
        let (x, y) = d.batch(&[4, 0, 4]).unwrap();
        assert_eq!(x.shape(), &[3, 2]);
        assert_eq!(x.to_vec(), vec![8.0, 9.0, 0.0, 1.0, 8.0, 9.0]);
        assert_eq!(y, vec![4, 0, 4]);
        assert!(d.batch(&[5]).is_err());
        let (x, y) = d.batch(&[]).unwrap();
        assert_eq!(x.shape(), &[0, 2]);
        assert!(y.is_empty());
    }

    #[test]
    fn split_takes_last_fraction() {
        let d = toy(10);
        let (t, v) = d.split_validation(0.2).unwrap();
        assert_eq!(t.len(), 8);
        assert_eq!(v.labels(), &[8, 9]);
        // floor(60000 * 0.8) = 48000 exactly, despite 0.2f32 being inexact.
        let n = 60000;
        let big = Dataset::new(Tensor::zeros(&[n, 1]), vec![0; n]).unwrap();
        let (t, v) = big.split_validation(0.2).unwrap();
        assert_eq!((t.len(), v.len()), (48000, 12000));
        let (t, v) = d.split_validation(0.0).unwrap();
        assert_eq!((t.len(), v.len()), (10, 0));
        assert!(d.split_validation(1.0).is_err());
        assert!(d.split_validation(-0.1).is_err());
        assert!(d.split_validation(f32::NAN).is_err());
    }

    #[test]
    fn mismatched_lengths() {
        assert!(Dataset::new(Tensor::zeros(&[3, 2]), vec![0, 1]).is_err());
        assert!(Dataset::new(Tensor::scalar(1.0), vec![]).is_err());
        assert!(Dataset::with_targets(Tensor::zeros(&[3, 2]), Tensor::zeros(&[2, 1])).is_err());
    }

    #[test]
    fn dense_targets() {
        let x = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[3, 2]).unwrap();
        let t = Tensor::from_vec(vec![0.5, 1.5, 2.5], &[3, 1]).unwrap();
        let d = Dataset::with_targets(x, t).unwrap();
        assert!(!d.has_labels());
        let (_, y) = d.batch(&[2, 1]).unwrap();
        assert!(y.is_empty());
        let tt = d.batch_targets(&[2, 1]).unwrap().unwrap();
        assert_eq!(tt.to_vec(), vec![2.5, 1.5]);
        let (_, v) = d.split_validation(0.34).unwrap();
        assert_eq!(v.targets().unwrap().to_vec(), vec![1.5, 2.5]);
    }
}
