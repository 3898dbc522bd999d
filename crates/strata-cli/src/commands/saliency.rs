//! `strata saliency MODEL --input IMG|X.npy [--class K] [--method ...]
//! --output heat.png [--npy attr.npy]`: which input values raise the class
//! score (the logit before a final softmax): the gradient, SmoothGrad or
//! integrated gradients, drawn beside the image.

use std::path::PathBuf;

use strata_nn::attribution::{self, SaliencyMethod};

use crate::checks;
use crate::model_arg::{CliResult, ModelArgs};
use crate::sample_arg::LookArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    look: LookArgs,
    /// gradient, smoothgrad or integrated-gradients.
    #[arg(long, default_value = "gradient")]
    method: String,
    /// Points of integrated gradients' path from the zero baseline.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// SmoothGrad's noisy copies.
    #[arg(long, default_value_t = 25)]
    samples: usize,
    /// SmoothGrad's noise, as a fraction of the input's range (max - min).
    #[arg(long, default_value_t = 0.15)]
    noise: f32,
    /// The image and the map side by side (.png).
    #[arg(long)]
    output: PathBuf,
    /// The raw signed attribution in the input's shape (H, W, C) (.npy).
    #[arg(long)]
    npy: Option<PathBuf>,
}

pub fn run(a: Args) -> CliResult<()> {
    let method = match a.method.as_str() {
        "gradient" => SaliencyMethod::Gradient,
        "smoothgrad" => {
            checks::at_least_one("--samples", a.samples)?;
            if !(a.noise.is_finite() && a.noise >= 0.0) {
                return Err(
                    format!("--noise must be a finite number >= 0, found {}", a.noise).into(),
                );
            }
            SaliencyMethod::SmoothGrad {
                samples: a.samples,
                noise: a.noise,
                seed: a.model.seed,
            }
        }
        "integrated-gradients" => {
            if a.steps < 2 {
                return Err(format!("--steps must be at least 2, found {}", a.steps).into());
            }
            SaliencyMethod::IntegratedGradients { steps: a.steps }
        }
        other => {
            return Err(format!(
                "--method {other}: expected gradient, smoothgrad or integrated-gradients"
            )
            .into())
        }
    };
    let (mut model, sample) = a
        .look
        .prepare("saliency", &a.model, &a.output, a.npy.as_deref())?;

    let attr = attribution::saliency(&mut model, &sample.input, a.look.class, method)?;
    let name = a.look.class_label(&model, attr.class);
    if let Some(p) = &a.npy {
        strata_data::write_npy_f32(p, &attr.values)?;
    }
    let title = format!("{} of class {name} (score {:.3})", a.method, attr.score);
    let (w, h) = strata_data::attribution_pictures::saliency_png(
        &a.output,
        &sample.picture,
        sample.shape,
        &attr.values.to_vec(),
        &title,
    )?;
    println!("class {name}: score {:.4}", attr.score);
    eprintln!("wrote {} ({w}x{h})", a.output.display());
    Ok(())
}
