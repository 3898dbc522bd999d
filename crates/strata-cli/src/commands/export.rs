//! `strata export MODEL [--weights W] --output M.onnx [--opset N]`: the
//! model with its weights as an ONNX file (NHWC float32 inputs with a
//! dynamic batch axis, named after the model's inputs; NCHW inside).

use std::path::PathBuf;

use crate::model_arg::{load_weights, require_trained, CliResult, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Trained weights [default: those of a strata model file given as MODEL].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Export a zoo model's or spec's untrained, random weights on purpose.
    #[arg(long)]
    random_weights: bool,
    /// The ONNX file to write (.onnx).
    #[arg(long)]
    output: PathBuf,
    /// ONNX operator set version (13..=21).
    #[arg(long, default_value_t = strata_onnx::DEFAULT_OPSET)]
    opset: i64,
}

pub fn run(a: Args) -> CliResult<()> {
    crate::checks::output_path("--output", &a.output, &["onnx"])?;
    if !strata_onnx::SUPPORTED_OPSETS.contains(&a.opset) {
        return Err(strata_onnx::OnnxError::Opset(a.opset).into());
    }
    require_trained("export", &a.model, a.weights.as_deref(), a.random_weights)?;
    let mut model = a.model.build(None)?;
    if let Some(w) = &a.weights {
        load_weights(&mut model, w)?;
    }
    let opts = strata_onnx::ExportOptions { opset: a.opset };
    let proto = strata_onnx::export_model(&model, &opts)?;
    let nodes = proto.graph.as_ref().map_or(0, |g| g.node.len());
    let bytes = strata_onnx::encode(&proto);
    strata_nn::model::write_atomic(&a.output, &bytes)?;
    eprintln!(
        "wrote {} (opset {}, {} ONNX nodes, {} bytes)",
        a.output.display(),
        a.opset,
        nodes,
        bytes.len()
    );
    Ok(())
}
