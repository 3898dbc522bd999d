//! Resolves a DATA argument held in memory: `mnist` (bundled) or an .npy of
//! inputs with `--labels`. Image folders are streamed (`image_arg`).

use std::path::{Path, PathBuf};

use strata_core::Tensor;
use strata_data::{read_npy, Mnist};
use strata_nn::{Loss, Metric, Targets};

use crate::model_arg::CliResult;

/// A loaded dataset: training part, optional held-out part, class names.
pub struct Data {
    pub inputs: Tensor,
    pub targets: Targets,
    /// The MNIST test set.
    pub test: Option<(Tensor, Targets)>,
    pub test_name: &'static str,
}

/// Where the data is.
pub struct DataRequest<'a> {
    pub data: &'a str,
    pub labels: Option<&'a Path>,
    pub data_dir: Option<&'a Path>,
}

/// Class ids from an integer array, or dense targets from a float one.
pub fn targets_from_npy(path: &Path) -> CliResult<Targets> {
    let a = read_npy(path)?;
    if a.dtype().is_float() && a.shape().len() >= 2 {
        return Ok(Targets::Dense(a.into_tensor()?));
    }
    if a.dtype().is_float() {
        let v = a.to_f32();
        if v.iter().any(|x| *x < 0.0 || x.fract() != 0.0) {
            return Err(format!(
                "{}: 1-d float labels must be non-negative whole numbers (class ids)",
                path.display()
            )
            .into());
        }
        return Ok(Targets::Classes(v.iter().map(|&x| x as usize).collect()));
    }
    Ok(Targets::Classes(a.to_labels()?))
}

pub fn load(req: &DataRequest) -> CliResult<Data> {
    if req.data == "mnist" {
        let m = match req.data_dir {
            Some(d) => Mnist::load_dir(d)?,
            None => Mnist::load_bundled()?,
        };
        return Ok(Data {
            inputs: m.train_images,
            targets: Targets::Classes(m.train_labels),
            test: Some((m.test_images, Targets::Classes(m.test_labels))),
            test_name: "test",
        });
    }
    let path = PathBuf::from(req.data);
    if req.data.ends_with(".npy") {
        let labels = req.labels.ok_or("--data X.npy needs --labels Y.npy")?;
        let inputs = read_npy(&path)?.into_tensor()?;
        let targets = targets_from_npy(labels)?;
        return Ok(Data {
            inputs,
            targets,
            test: None,
            test_name: "test",
        });
    }
    Err(format!(
        "--data '{}': expected 'mnist', a folder of class sub-folders, or an .npy file",
        req.data
    )
    .into())
}

/// Number of classes the data holds (for a zoo model's head).
pub fn class_count_of_folder(data: &str) -> Option<usize> {
    let p = Path::new(data);
    if !p.is_dir() {
        return None;
    }
    let n = std::fs::read_dir(p)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .count();
    (n > 0).then_some(n)
}

/// The loss when `--loss` is not given: sparse crossentropy for class ids,
/// categorical crossentropy for dense targets after a softmax, else MSE.
pub fn default_loss(targets: &Targets, ends_in_softmax: bool) -> Loss {
    match targets {
        Targets::Classes(_) => Loss::SparseCategoricalCrossentropy { from_logits: false },
        Targets::Dense(_) if ends_in_softmax => {
            Loss::CategoricalCrossentropy { from_logits: false }
        }
        Targets::Dense(_) => Loss::MeanSquaredError,
    }
}

/// The metrics reported with a loss (none for regression).
pub fn metrics_for(loss: Loss) -> Vec<Metric> {
    match loss {
        Loss::MeanSquaredError | Loss::MeanAbsoluteError => vec![],
        Loss::BinaryCrossentropy => vec![Metric::BinaryAccuracy],
        _ => vec![Metric::Accuracy],
    }
}

/// Checks that inputs of `shape` (N, ...) from `source` fit a model input
/// of per-sample `want`, with a hint where only the channel axis is missing.
pub fn check_input_shape(source: &str, shape: &[usize], want: &[usize]) -> CliResult<()> {
    if !shape.is_empty() && shape[1..] == *want {
        return Ok(());
    }
    let fmt = strata_core::fmt_shape;
    let mut expected = vec![shape.first().copied().unwrap_or(0)];
    expected.extend_from_slice(want);
    let hint = if shape.len() + 1 == expected.len() && want.last() == Some(&1) {
        format!(
            "; add a channel axis of 1 (numpy: x[..., None]) to make it {}",
            fmt(&expected)
        )
    } else {
        String::new()
    };
    Err(format!(
        "{source}: inputs of shape {} do not fit the model, which takes {} per sample, so {}{hint}",
        fmt(shape),
        fmt(want),
        fmt(&expected)
    )
    .into())
}

/// Checks that every class id is below the model's `outputs`, naming the
/// first that is not with its index in `source`.
pub fn check_labels(source: &str, targets: &Targets, outputs: usize) -> CliResult<()> {
    // one output is a binary classifier: labels 0 and 1
    let limit = if outputs == 1 { 2 } else { outputs };
    if let Targets::Classes(c) = targets {
        if let Some((i, v)) = c.iter().enumerate().find(|(_, &v)| v >= limit) {
            return Err(format!(
                "{source}: label {v} at index {i} is not a class of the model, which has {outputs} output(s) (class ids 0 to {})",
                limit - 1
            )
            .into());
        }
    }
    Ok(())
}
