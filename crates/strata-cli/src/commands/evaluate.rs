//! `strata evaluate MODEL [--weights W] --data DATA [--labels Y.npy]`: loss
//! and accuracy. A strata model file brings its own weights; an image
//! folder's classes are matched to the model's class names by name.

use std::path::{Path, PathBuf};

use strata_data::{list_class_files, ImageStream};
use strata_nn::{Loss, Optimizer, Targets};

use crate::checks;
use crate::data_arg::{self, DataRequest};
use crate::image_arg::{self, ImageArgs, StreamSource};
use crate::model_arg::{load_weights, require_trained, CliResult, ModelArgs};
use crate::precision_arg::PrecisionArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Trained weights [default: those of a strata model file given as MODEL].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Evaluate a zoo model's or spec's untrained, random weights on purpose.
    #[arg(long)]
    random_weights: bool,
    /// `mnist` (its test set), a folder of class sub-folders, or inputs .npy.
    #[arg(long, default_value = "mnist")]
    data: String,
    /// Labels .npy for --data X.npy.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Read MNIST's IDX files from this folder instead of the bundled copy.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A Keras loss name (default: sparse_categorical_crossentropy for class ids).
    #[arg(long)]
    loss: Option<String>,
    /// Samples per forward pass.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    precision: PrecisionArgs,
    #[command(flatten)]
    images: ImageArgs,
}

pub fn run(a: Args) -> CliResult<()> {
    checks::at_least_one("--batch-size", a.batch_size)?;
    a.precision.policy()?;
    require_trained("evaluate", &a.model, a.weights.as_deref(), a.random_weights)?;
    let folder_data = Path::new(&a.data).is_dir();
    if a.labels.is_some() && !a.data.ends_with(".npy") {
        return Err(format!(
            "--labels does not apply to --data {}: labels come with MNIST and from an image folder's sub-folders",
            a.data
        )
        .into());
    }
    if a.data_dir.is_some() && a.data != "mnist" {
        return Err(format!(
            "--data-dir does not apply to --data {}: it names where MNIST's IDX files are",
            a.data
        )
        .into());
    }
    if !folder_data {
        for (flag, given) in [
            ("--normalize", a.images.normalize.is_some()),
            ("--center-crop", a.images.center_crop.is_some()),
            ("--data-workers", a.images.data_workers.is_some()),
            ("--strict", a.images.strict),
        ] {
            if given {
                return Err(format!(
                    "{flag} does not apply to --data {}: it is about the images of a folder",
                    a.data
                )
                .into());
            }
        }
    }
    let dir = Path::new(&a.data);
    let folder = dir.is_dir();
    // a zoo model's head follows the number of class folders
    let mut model = a.model.build(data_arg::class_count_of_folder(&a.data))?;
    if let Some(w) = &a.weights {
        load_weights(&mut model, w)?;
    }
    a.precision.apply(&mut model, true)?;
    let (r, n) = if folder {
        let p = a.images.preprocessing(&model)?;
        let (names, files) = list_class_files(dir)?;
        let known = &model.info().class_names;
        let files = if known.is_empty() {
            files
        } else {
            let map = image_arg::match_classes(&names, known, dir)?;
            files.into_iter().map(|(f, l)| (f, map[l])).collect()
        };
        let stream = ImageStream::new(
            files,
            image_arg::transform_of(&p, None),
            a.images.stream_config(a.batch_size, false, a.model.seed),
        )?;
        let n = stream.len();
        let loss = match &a.loss {
            Some(l) => Loss::from_name(l)?,
            None => data_arg::default_loss(&Targets::Classes(Vec::new()), model.ends_in_softmax()),
        };
        model.compile(
            loss,
            Optimizer::sgd(0.0, 0.0, false),
            &data_arg::metrics_for(loss),
        );
        let (r, skipped) = model.evaluate_source(&StreamSource(stream))?;
        if skipped > 0 {
            eprintln!("warning: {skipped} unreadable image(s) skipped (--strict refuses them)");
        }
        (r, n - skipped)
    } else {
        let data = data_arg::load(&DataRequest {
            data: &a.data,
            labels: a.labels.as_deref(),
            data_dir: a.data_dir.as_deref(),
        })?;
        let (x, y) = match (a.data.as_str(), data.test) {
            ("mnist", Some(t)) => t,
            _ => (data.inputs, data.targets),
        };
        let want = model
            .inputs()
            .first()
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        data_arg::check_input_shape(&a.data, x.shape(), &want)?;
        let outputs = model
            .output_shapes()
            .first()
            .and_then(|s| s.last().copied())
            .unwrap_or(0);
        let labels_source = a
            .labels
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| a.data.clone());
        data_arg::check_labels(&labels_source, &y, outputs)?;
        let loss = match &a.loss {
            Some(l) => Loss::from_name(l)?,
            None => data_arg::default_loss(&y, model.ends_in_softmax()),
        };
        model.compile(
            loss,
            Optimizer::sgd(0.0, 0.0, false),
            &data_arg::metrics_for(loss),
        );
        (
            model.evaluate(std::slice::from_ref(&x), &y, a.batch_size)?,
            y.len(),
        )
    };
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let parts: Vec<String> = r.iter().map(|(k, v)| format!("{k}: {v:.4}")).collect();
        println!("{n} samples - {}", parts.join(" - "));
    }
    Ok(())
}
