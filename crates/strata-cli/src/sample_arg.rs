//! One sample for the commands that look inside a model (saliency, gradcam,
//! activations): an image file (PNG, JPEG), read as the model file says
//! (size, centre crop, normalisation), or an .npy holding one sample,
//! (1, H, W, C) or (H, W, C). Also the picture of it to draw beside a map:
//! the image as resized, or the array scaled to [0, 1].

use std::path::Path;

use strata_core::{Rng, Tensor};
use strata_nn::Model;

use crate::image_arg::{self, ImageArgs};
use crate::model_arg::CliResult;

/// A model input of one sample and how to show it.
pub struct Sample {
    /// (1, H, W, C), what the model takes.
    pub input: Tensor,
    /// (H, W, C) values in [0, 1] to draw.
    pub picture: Vec<f32>,
    pub shape: (usize, usize, usize),
}

/// Reads `--input` for `model`.
pub fn read_sample(model: &Model, input: &Path, images: &ImageArgs) -> CliResult<Sample> {
    let [(_, want)] = model.inputs() else {
        return Err(format!(
            "the model has {} inputs; looking inside takes a model with one",
            model.inputs().len()
        )
        .into());
    };
    let want = want.clone();
    if image_arg::is_image_path(input) {
        let p = images.preprocessing(model)?;
        let bytes = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
        let t = image_arg::transform_of(&p, None);
        let img = strata_data::decode_image(&bytes, t.channels)
            .map_err(|e| format!("{}: cannot decode the image: {e}", input.display()))?;
        let x = t.apply(&img, &mut Rng::new(0));
        let plain = strata_data::ImageTransform {
            mean: vec![0.0],
            std: vec![1.0],
            ..t.clone()
        };
        let picture = plain.apply(&img, &mut Rng::new(0));
        let shape = (t.height, t.width, t.channels);
        return Ok(Sample {
            input: Tensor::from_vec(x, &[1, shape.0, shape.1, shape.2])?,
            picture,
            shape,
        });
    }
    if input.extension().and_then(|e| e.to_str()) != Some("npy") {
        return Err(format!(
            "--input {}: expected a .png, .jpg or .jpeg image or an .npy of one sample",
            input.display()
        )
        .into());
    }
    let t = strata_data::read_npy(input)?.into_tensor()?;
    let source = input.display().to_string();
    let t = if t.shape() == want.as_slice() {
        let mut batched = vec![1];
        batched.extend_from_slice(&want);
        t.reshape(&batched)?
    } else {
        crate::data_arg::check_input_shape(&source, t.shape(), &want)?;
        t
    };
    if t.shape()[0] != 1 {
        return Err(format!(
            "{source}: holds {} samples; give one, (1, {}) or ({})",
            t.shape()[0],
            join(&want),
            join(&want)
        )
        .into());
    }
    let [h, w, c] = want[..] else {
        return Err(format!(
            "the model takes ({}) per sample: looking inside takes images (H, W, C)",
            join(&want)
        )
        .into());
    };
    let values = t.to_vec();
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let picture = values.iter().map(|v| (v - lo) / span).collect();
    Ok(Sample {
        input: t,
        picture,
        shape: (h, w, c),
    })
}

fn join(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The flags every command that looks inside a model shares.
#[derive(clap::Args, Debug, Clone)]
pub struct LookArgs {
    /// An image (PNG, JPEG) or an .npy of one sample, (1, H, W, C) or (H, W, C).
    #[arg(long)]
    pub input: std::path::PathBuf,
    /// Trained weights [default: those of a strata model file given as MODEL].
    #[arg(long)]
    pub weights: Option<std::path::PathBuf>,
    /// Use a zoo model's or spec's untrained, random weights on purpose.
    #[arg(long)]
    pub random_weights: bool,
    /// The class to explain [default: the top class].
    #[arg(long)]
    pub class: Option<usize>,
    /// Per-channel normalisation of an image: imagenet, none, or MEAN,STD
    /// [default: what the model file says, else none].
    #[arg(long)]
    pub normalize: Option<String>,
    /// Centre crop of an image, as a fraction of its shorter side
    /// [default: what the model file says, else 1].
    #[arg(long)]
    pub center_crop: Option<f32>,
}

impl LookArgs {
    /// What every such command does first: checks the output paths, refuses
    /// untrained weights unless asked for, builds the model with its
    /// weights, and reads the sample.
    pub fn prepare(
        &self,
        command: &str,
        model: &crate::model_arg::ModelArgs,
        output: &Path,
        npy: Option<&Path>,
    ) -> CliResult<(Model, Sample)> {
        crate::checks::output_path("--output", output, &["png"])?;
        if let Some(p) = npy {
            crate::checks::output_path("--npy", p, &["npy"])?;
        }
        crate::model_arg::require_trained(
            command,
            model,
            self.weights.as_deref(),
            self.random_weights,
        )?;
        let mut m = model.build(None)?;
        if let Some(w) = &self.weights {
            crate::model_arg::load_weights(&mut m, w)?;
        }
        let sample = read_sample(&m, &self.input, &self.image_args())?;
        Ok((m, sample))
    }

    /// The image flags in the form `ImageArgs` reads them.
    pub fn image_args(&self) -> ImageArgs {
        ImageArgs {
            normalize: self.normalize.clone(),
            center_crop: self.center_crop,
            ..ImageArgs::default()
        }
    }

    /// A class's name from the model file, else its number.
    pub fn class_label(&self, model: &Model, class: usize) -> String {
        match model.info().class_names.get(class) {
            Some(n) => format!("{class} ({n})"),
            None => class.to_string(),
        }
    }
}
