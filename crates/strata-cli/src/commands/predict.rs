//! `strata predict MODEL --weights W --input X.npy --output Y.npy`.

use std::path::PathBuf;

use strata_core::Tensor;
use strata_data::{read_npy, write_npy_f32};

use crate::model_arg::{load_weights, CliResult, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    weights: Option<PathBuf>,
    /// X.npy, or NAME=X.npy once per input of a multi-input model.
    #[arg(long, required = true)]
    input: Vec<String>,
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

pub fn run(a: Args) -> CliResult<()> {
    let mut m = a.model.build(None)?;
    if let Some(w) = &a.weights {
        load_weights(&mut m, w)?;
    }
    if a.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    let names: Vec<String> = m.inputs().iter().map(|(n, _)| n.clone()).collect();
    let mut inputs: Vec<Option<Tensor>> = vec![None; names.len()];
    for spec in &a.input {
        let (slot, path) = match spec.split_once('=') {
            Some((n, p)) => (
                names.iter().position(|x| x == n).ok_or_else(|| {
                    format!(
                        "--input {n}=...: the model has no input named '{n}' (inputs: {})",
                        names.join(", ")
                    )
                })?,
                p,
            ),
            None if names.len() == 1 => (0, spec.as_str()),
            None => {
                return Err(format!(
                    "the model has {} inputs: pass --input NAME=X.npy for each ({})",
                    names.len(),
                    names.join(", ")
                )
                .into())
            }
        };
        inputs[slot] = Some(read_npy(path)?.into_tensor()?);
    }
    let inputs: Vec<Tensor> = inputs
        .into_iter()
        .zip(&names)
        .map(|(t, n)| t.ok_or_else(|| format!("missing --input for model input '{n}'")))
        .collect::<Result<_, _>>()?;
    let out = m.predict(&inputs, a.batch_size)?.remove(0);
    write_npy_f32(&a.output, &out)?;
    eprintln!(
        "wrote {} {}",
        a.output.display(),
        strata_core::fmt_shape(out.shape())
    );
    Ok(())
}
