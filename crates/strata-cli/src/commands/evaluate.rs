//! `strata evaluate MODEL --weights W --data DATA [--labels Y.npy]`: loss and accuracy.

use std::path::PathBuf;

use strata_nn::{Loss, Optimizer};

use crate::data_arg::{self, DataRequest};
use crate::model_arg::{load_weights, CliResult, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    weights: PathBuf,
    /// `mnist` (its test set), a folder of class sub-folders, or inputs .npy.
    #[arg(long, default_value = "mnist")]
    data: String,
    #[arg(long)]
    labels: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    loss: Option<String>,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> CliResult<()> {
    // a zoo model's head follows the number of class folders (spec files ignore it)
    let mut model = a.model.build(data_arg::class_count_of_folder(&a.data))?;
    load_weights(&mut model, &a.weights)?;
    let input_shape = data_arg::image_input_shape(&model);
    let data = data_arg::load(&DataRequest {
        data: &a.data,
        labels: a.labels.as_deref(),
        data_dir: a.data_dir.as_deref(),
        input_shape,
        validation_split: None,
        seed: a.model.seed,
    })?;
    let (x, y) = match (a.data.as_str(), data.test) {
        ("mnist", Some(t)) => t,
        _ => (data.inputs, data.targets),
    };
    let loss = match &a.loss {
        Some(l) => Loss::from_name(l)?,
        None => data_arg::default_loss(&y, model.ends_in_softmax()),
    };
    let metrics = data_arg::metrics_for(loss);
    model.compile(loss, Optimizer::sgd(0.0, 0.0, false), &metrics);
    let r = model.evaluate(std::slice::from_ref(&x), &y, a.batch_size.max(1))?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let parts: Vec<String> = r.iter().map(|(k, v)| format!("{k}: {v:.4}")).collect();
        println!("{} samples - {}", y.len(), parts.join(" - "));
    }
    Ok(())
}
