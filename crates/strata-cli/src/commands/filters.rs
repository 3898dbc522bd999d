//! `strata filters MODEL [--weights W] [--layer NAME] --output F.png`: the
//! kernels of a convolution layer as a near-square grid: one colour tile per
//! filter for a layer on RGB input, else a row of grey tiles (one per input
//! channel) per filter. With `--maximize`, the input pattern each channel
//! of any layer responds to most (activation maximisation), one tile each.

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
    /// Pixels per kernel weight, 1 to 64 [default: 8, or about 96 pixels a
    /// tile with --maximize].
    #[arg(long)]
    scale: Option<u32>,
    /// Show the input pattern each channel of --layer responds to most
    /// (gradient ascent from seeded noise, with jitter and a total-variation
    /// penalty) [default layer: the last with spatial axes].
    #[arg(long)]
    maximize: bool,
    /// With --maximize: how many channels, from channel 0.
    #[arg(long, default_value_t = 16)]
    channels: usize,
    /// With --maximize: ascent steps.
    #[arg(long, default_value_t = 128)]
    steps: usize,
}

pub fn run(a: Args) -> CliResult<()> {
    if let Some(s) = a.scale {
        if !(1..=64).contains(&s) {
            return Err(format!("--scale {s}: expected 1 to 64 pixels per weight").into());
        }
    }
    if !a.maximize && (a.channels != 16 || a.steps != 128) {
        return Err("--channels and --steps apply to --maximize".into());
    }
    checks::output_path("--output", &a.output, &["png"])?;
    require_trained("filters", &a.model, a.weights.as_deref(), a.random_weights)?;
    let mut m = a.model.build(None)?;
    if let Some(w) = &a.weights {
        load_weights(&mut m, w)?;
    }
    let (w, h, name) = if a.maximize {
        checks::at_least_one("--channels", a.channels)?;
        checks::at_least_one("--steps", a.steps)?;
        write_maximized(&mut m, &a)?
    } else {
        write_filters(&m, a.layer.as_deref(), &a.output, a.scale.unwrap_or(8))?
    };
    eprintln!("wrote {} ({w}x{h}) from layer {name}", a.output.display());
    Ok(())
}

/// The patterns that excite the first `--channels` channels of the layer,
/// drawn as a grid of tiles (mid-grey is 0.5).
fn write_maximized(m: &mut strata_nn::Model, a: &Args) -> CliResult<(u32, u32, String)> {
    use strata_nn::attribution;
    let layer = match &a.layer {
        Some(l) => l.clone(),
        None => attribution::last_spatial_layer(m)?,
    };
    let (_, shape) = attribution::layer_node(m, &layer)?;
    let width = shape.last().copied().unwrap_or(0);
    let channels: Vec<usize> = (0..a.channels.min(width)).collect();
    let pre = m.info().preprocessing.clone();
    let cfg = attribution::MaximizeConfig {
        steps: a.steps,
        seed: a.model.seed,
        mean: pre.as_ref().map(|p| p.mean.clone()).unwrap_or(vec![0.0]),
        std: pre.as_ref().map(|p| p.std.clone()).unwrap_or(vec![1.0]),
        ..Default::default()
    };
    let patterns = attribution::maximize(m, &layer, &channels, &cfg)?;
    let [h, w, c] = patterns[0].shape()[..] else {
        return Err("maximisation gave no image".into());
    };
    // (H, W, C, N) like a kernel, centred so that 0.5 is the grid's grey
    let n = patterns.len();
    let mut kernel = vec![0.0f32; h * w * c * n];
    for (k, p) in patterns.iter().enumerate() {
        for (i, v) in p.to_vec().iter().enumerate() {
            kernel[i * n + k] = v - 0.5;
        }
    }
    let scale = a
        .scale
        .unwrap_or((96 / h.max(w).max(1)).clamp(1, 64) as u32);
    let (pw, ph) = strata_data::pictures::filter_grid(&a.output, &kernel, &[h, w, c, n], scale)?;
    Ok((pw, ph, layer))
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
