//! `strata import M.onnx --output M.safetensors`: an ONNX model (NCHW from
//! PyTorch, or strata's own export) as a strata model file, the spec in its
//! metadata, that every command takes as `MODEL`.

use std::path::PathBuf;

use crate::model_arg::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX file to read (.onnx).
    input: PathBuf,
    /// The strata model file to write (.safetensors).
    #[arg(long)]
    output: PathBuf,
}

pub fn run(a: Args) -> CliResult<()> {
    crate::checks::output_path("--output", &a.output, &["safetensors"])?;
    let imported = strata_onnx::import_file(&a.input)?;
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    let model = imported.model;
    model.save_weights(&a.output)?;
    eprintln!(
        "wrote {}: {} ONNX nodes as {} layers, {} parameters",
        a.output.display(),
        imported.onnx_nodes,
        model.layers().len(),
        model.count_params()
    );
    Ok(())
}
