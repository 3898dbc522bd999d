//! `strata filters MODEL [--weights W] [--layer NAME] --output F.png`: the
//! kernels of a convolution layer as a near-square grid: one colour tile per
//! filter for a layer on RGB input, else a row of grey tiles (one per input
//! channel) per filter.

use std::path::PathBuf;

use crate::checks;
use crate::model_arg::{load_weights, require_trained, CliResult, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Trained weights [default: those of a strata model file given as MODEL].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Draw a zoo model's or spec's untrained, random weights on purpose.
    #[arg(long)]
    random_weights: bool,
    /// The convolution layer [default: the first Conv2D].
    #[arg(long)]
    layer: Option<String>,
    /// The picture to write (.png).
    #[arg(long)]
    output: PathBuf,
    /// Pixels per kernel weight, 1 to 64.
    #[arg(long, default_value_t = 8)]
    scale: u32,
}

pub fn run(a: Args) -> CliResult<()> {
    if !(1..=64).contains(&a.scale) {
        return Err(format!("--scale {}: expected 1 to 64 pixels per weight", a.scale).into());
    }
    checks::output_path("--output", &a.output, &["png"])?;
    require_trained("filters", &a.model, a.weights.as_deref(), a.random_weights)?;
    let mut m = a.model.build(None)?;
    if let Some(w) = &a.weights {
        load_weights(&mut m, w)?;
    }
    let (w, h, name) = write_filters(&m, a.layer.as_deref(), &a.output, a.scale)?;
    eprintln!("wrote {} ({w}x{h}) from layer {name}", a.output.display());
    Ok(())
}

/// Writes the kernel grid of `layer` (or the first Conv2D); returns its size and the layer name.
pub fn write_filters(
    m: &strata_nn::Model,
    layer: Option<&str>,
    out: &std::path::Path,
    scale: u32,
) -> CliResult<(u32, u32, String)> {
    let conv = m
        .layers()
        .iter()
        .find(|l| match layer {
            Some(n) => l.name() == n,
            None => l.class_name() == "Conv2D",
        })
        .ok_or_else(|| match layer {
            Some(n) => format!("no layer named '{n}'"),
            None => "the model has no Conv2D layer".to_string(),
        })?;
    let k = conv
        .weights()
        .into_iter()
        .find(|w| w.name == "kernel" || w.name == "depthwise_kernel")
        .ok_or_else(|| format!("layer '{}' has no convolution kernel", conv.name()))?;
    let (w, h) =
        strata_data::pictures::filter_grid(out, &k.value.to_vec(), k.shape(), scale.clamp(1, 64))?;
    Ok((w, h, conv.name().to_string()))
}
