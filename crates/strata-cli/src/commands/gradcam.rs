//! `strata gradcam MODEL --input IMG|X.npy [--layer NAME] [--class K]
//! [--plus] --output overlay.png [--npy cam.npy]`: where a layer looks for a
//! class (Grad-CAM, or Grad-CAM++), over the image.

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
    /// The layer [default: the last one with spatial axes].
    #[arg(long)]
    layer: Option<String>,
    /// Grad-CAM++ instead of Grad-CAM.
    #[arg(long)]
    plus: bool,
    /// The map over the image, beside the image (.png).
    #[arg(long)]
    output: PathBuf,
    /// The map at the layer's resolution (H', W'), after the ReLU, before
    /// upsampling (.npy).
    #[arg(long)]
    npy: Option<PathBuf>,
}

pub fn run(a: Args) -> CliResult<()> {
    let (mut model, sample) = a
        .look
        .prepare("gradcam", &a.model, &a.output, a.npy.as_deref())?;
    let layer = match &a.layer {
        Some(l) => l.clone(),
        None => attribution::last_spatial_layer(&model)?,
    };
    let cam = attribution::grad_cam(&mut model, &sample.input, &layer, a.look.class, a.plus)?;
    let name = a.look.class_label(&model, cam.class);
    if let Some(p) = &a.npy {
        strata_data::write_npy_f32(p, &cam.map)?;
    }
    let (ch, cw) = (cam.map.shape()[0], cam.map.shape()[1]);
    let title = format!(
        "{} of class {name} at {layer}",
        if a.plus { "Grad-CAM++" } else { "Grad-CAM" }
    );
    let (w, h) = strata_data::attribution_pictures::cam_overlay_png(
        &a.output,
        &sample.picture,
        sample.shape,
        &cam.map.to_vec(),
        (ch, cw),
        &title,
    )?;
    println!("class {name} at layer {layer} ({ch}x{cw})");
    eprintln!("wrote {} ({w}x{h})", a.output.display());
    Ok(())
}
