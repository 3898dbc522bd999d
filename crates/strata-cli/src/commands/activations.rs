//! `strata activations MODEL --input IMG|X.npy --layer NAME --output
//! grid.png [--npy act.npy]`: a layer's feature maps for one input, one
//! labelled tile per channel.

use std::path::PathBuf;

use strata_nn::attribution;

use crate::model_arg::{CliResult, ModelArgs};
use crate::sample_arg::LookArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    look: LookArgs,
    /// The layer whose output to show.
    #[arg(long)]
    layer: String,
    /// The feature maps as a grid, one tile per channel (.png).
    #[arg(long)]
    output: PathBuf,
    /// The layer's raw output (H', W', C) (.npy).
    #[arg(long)]
    npy: Option<PathBuf>,
}

pub fn run(a: Args) -> CliResult<()> {
    if a.look.class.is_some() {
        return Err(
            "--class does not apply to activations: a layer's output does not depend on a class"
                .into(),
        );
    }
    let (mut model, sample) =
        a.look
            .prepare("activations", &a.model, &a.output, a.npy.as_deref())?;

    let out = attribution::layer_output(&mut model, &sample.input, &a.layer)?;
    if let Some(p) = &a.npy {
        strata_data::write_npy_f32(p, &out)?;
    }
    let [h, w, c] = out.shape()[..] else {
        return Err(format!(
            "layer '{}' outputs {} per sample: feature maps need (H, W, C); --npy still writes it",
            a.layer,
            strata_core::fmt_shape(out.shape())
        )
        .into());
    };
    let title = format!("{} ({h}x{w}, {c} channels)", a.layer);
    let (pw, ph) = strata_data::attribution_pictures::feature_maps_png(
        &a.output,
        &out.to_vec(),
        (h, w, c),
        &title,
    )?;
    eprintln!("wrote {} ({pw}x{ph})", a.output.display());
    Ok(())
}
