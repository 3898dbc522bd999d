//! Images on the command line: the flags that say how a photo becomes an
//! input (augmentation for training, resize and centre crop, normalisation),
//! image folders streamed as training and evaluation data, and single
//! images or folders given to `predict`.

use std::path::{Path, PathBuf};

use clap::Args as ClapArgs;
use std::sync::Arc;
use strata_data::{
    list_class_files, split_files, Augmentation, ColorJitter, ImageStream, ImageStreamConfig,
    ImageTransform, RandomResizedCrop, IMAGENET_MEAN, IMAGENET_STD,
};
use strata_nn::{BatchSource, Model, NnError, PartBatch, Preprocessing, SourceBatch, Targets};

use crate::model_arg::CliResult;

/// How images become inputs: shared by `train`, `evaluate` and `predict`.
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct ImageArgs {
    /// Per-channel normalisation after scaling to [0, 1]: imagenet, none, or
    /// MEAN,STD (one value each, or one per channel: M1,M2,M3,S1,S2,S3).
    /// Default: what the model file says, else none.
    #[arg(long)]
    pub normalize: Option<String>,
    /// Centre crop for validation and prediction, as a fraction of the
    /// resized image's shorter side (0.875: torchvision's 224 of 256).
    /// Default: what the model file says, else 1 (the whole image, resized).
    #[arg(long)]
    pub center_crop: Option<f32>,
    /// Threads that decode and transform images [default: 2].
    #[arg(long)]
    pub data_workers: Option<usize>,
    /// Stop at an unreadable or corrupt image instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

/// Training augmentation flags (torchvision's transforms).
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct AugmentArgs {
    /// Random transforms of the training images, comma-separated: crop
    /// (random resized crop), flip (horizontal), jitter (colour); or
    /// standard (crop,flip), or none.
    #[arg(long)]
    pub augment: Option<String>,
    /// The random crop's share of the area, MIN,MAX [default: 0.08,1.0].
    #[arg(long, value_parser = parse_range)]
    pub crop_scale: Option<(f32, f32)>,
    /// The random crop's aspect ratio (width / height), MIN,MAX [default: 0.75,1.3333333].
    #[arg(long, value_parser = parse_range)]
    pub crop_ratio: Option<(f32, f32)>,
    /// Colour jitter amounts BRIGHTNESS,CONTRAST,SATURATION,HUE [default: 0.4,0.4,0.4,0.1].
    #[arg(long)]
    pub jitter: Option<String>,
}

fn parse_floats(s: &str, what: &str) -> Result<Vec<f32>, String> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{what} '{s}': '{x}' is not a number"))
        })
        .collect()
}

fn parse_range(s: &str) -> Result<(f32, f32), String> {
    match parse_floats(s, "range")?.as_slice() {
        [a, b] if *a > 0.0 && a <= b => Ok((*a, *b)),
        _ => Err(format!("'{s}' is not MIN,MAX with 0 < MIN <= MAX")),
    }
}

/// Parses `--normalize` for `channels` channels into (mean, std).
pub fn parse_normalize(s: &str, channels: usize) -> CliResult<(Vec<f32>, Vec<f32>)> {
    match s {
        "none" => Ok((vec![0.0], vec![1.0])),
        "imagenet" if channels == 3 => Ok((IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec())),
        "imagenet" => Err(format!(
            "--normalize imagenet is for RGB inputs; the model takes {channels} channel(s)"
        )
        .into()),
        _ => {
            let v = parse_floats(s, "--normalize")?;
            if v.len() != 2 && v.len() != 2 * channels {
                return Err(format!(
                    "--normalize '{s}': expected imagenet, none, MEAN,STD or {} values (means then stds)",
                    2 * channels
                )
                .into());
            }
            let (m, sd) = v.split_at(v.len() / 2);
            if sd.iter().any(|x| *x <= 0.0) {
                return Err(format!("--normalize '{s}': the std must be positive").into());
            }
            Ok((m.to_vec(), sd.to_vec()))
        }
    }
}

impl AugmentArgs {
    /// The augmentation asked for, `None` for none.
    pub fn augmentation(&self) -> CliResult<Option<Augmentation>> {
        let Some(list) = self.augment.as_deref() else {
            for (flag, given, what) in [
                ("--crop-scale", self.crop_scale.is_some(), "crop"),
                ("--crop-ratio", self.crop_ratio.is_some(), "crop"),
                ("--jitter", self.jitter.is_some(), "jitter"),
            ] {
                if given {
                    return Err(
                        format!("{flag} applies to --augment {what}, which is not given").into(),
                    );
                }
            }
            return Ok(None);
        };
        let mut a = Augmentation::default();
        for item in list.split(',').map(str::trim) {
            match item {
                "none" => {}
                "standard" => {
                    a.crop = Some(RandomResizedCrop::default());
                    a.flip_horizontal = true;
                }
                "crop" => a.crop = Some(RandomResizedCrop::default()),
                "flip" => a.flip_horizontal = true,
                "jitter" => a.jitter = Some(ColorJitter::default()),
                other => {
                    return Err(format!(
                        "--augment '{other}': expected crop, flip, jitter, standard or none"
                    )
                    .into())
                }
            }
        }
        if let Some(c) = a.crop.as_mut() {
            c.scale = self.crop_scale.unwrap_or(c.scale);
            c.ratio = self.crop_ratio.unwrap_or(c.ratio);
            if c.scale.1 > 1.0 {
                return Err(
                    format!("--crop-scale {},{}: MAX is at most 1", c.scale.0, c.scale.1).into(),
                );
            }
        } else if self.crop_scale.is_some() || self.crop_ratio.is_some() {
            return Err("--crop-scale and --crop-ratio apply to --augment crop".into());
        }
        if a.jitter.is_none() && self.jitter.is_some() {
            return Err("--jitter applies to --augment jitter".into());
        }
        if a.jitter.is_some() {
            let text = self.jitter.as_deref().unwrap_or("0.4,0.4,0.4,0.1");
            let v = parse_floats(text, "--jitter")?;
            let [b, c, s, h] = v.as_slice() else {
                return Err(format!(
                    "--jitter '{text}': expected BRIGHTNESS,CONTRAST,SATURATION,HUE"
                )
                .into());
            };
            if v.iter().any(|x| *x < 0.0) || *h > 0.5 {
                return Err(format!(
                    "--jitter '{text}': amounts are at least 0, and the hue at most 0.5"
                )
                .into());
            }
            a.jitter = Some(ColorJitter {
                brightness: *b,
                contrast: *c,
                saturation: *s,
                hue: *h,
            });
        }
        Ok((a != Augmentation::default()).then_some(a))
    }
}

/// The (H, W, C) input of a one-image-input model.
pub fn image_input_shape(model: &Model) -> Option<[usize; 3]> {
    let inputs = model.inputs();
    if inputs.len() != 1 {
        return None;
    }
    <[usize; 3]>::try_from(inputs[0].1.as_slice()).ok()
}

impl ImageArgs {
    /// How an image becomes the model's input for evaluation and
    /// prediction: the flags, else the model file's preprocessing, else a
    /// plain resize.
    pub fn preprocessing(&self, model: &Model) -> CliResult<Preprocessing> {
        let [h, w, c] = image_input_shape(model).ok_or_else(|| {
            format!(
                "images need a model with one (height, width, channels) input; this one takes {}",
                model
                    .inputs()
                    .iter()
                    .map(|(n, s)| format!("{n} {s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if c != 1 && c != 3 {
            return Err(format!(
                "images are read as 1 (grey) or 3 (RGB) channels; the model takes {c}"
            )
            .into());
        }
        let known = model
            .info()
            .preprocessing
            .clone()
            .filter(|p| p.input_size == [h, w, c]);
        let mut p = known.unwrap_or_else(|| Preprocessing::plain([h, w, c]));
        if let Some(n) = &self.normalize {
            (p.mean, p.std) = parse_normalize(n, c)?;
        }
        if let Some(f) = self.center_crop {
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!("--center-crop {f}: expected a fraction in (0, 1]").into());
            }
            p.crop_fraction = f;
        }
        Ok(p)
    }

    /// Decoding threads: `--data-workers`, else 2.
    pub fn workers(&self) -> usize {
        self.data_workers.unwrap_or(2).max(1)
    }

    /// The stream settings for these flags.
    pub fn stream_config(&self, batch_size: usize, shuffle: bool, seed: u64) -> ImageStreamConfig {
        ImageStreamConfig {
            batch_size,
            shuffle,
            seed,
            drop_last: false,
            workers: self.workers(),
            in_flight: 2 * self.workers(),
            strict: self.strict,
        }
    }
}

/// The transform of `p`, with training augmentation or without.
pub fn transform_of(p: &Preprocessing, augment: Option<Augmentation>) -> ImageTransform {
    ImageTransform {
        height: p.input_size[0],
        width: p.input_size[1],
        channels: p.input_size[2],
        crop_fraction: p.crop_fraction,
        augment,
        mean: p.mean.clone(),
        std: p.std.clone(),
    }
}

/// An image folder as training and validation streams.
pub struct FolderData {
    pub train: ImageStream,
    pub validation: Option<ImageStream>,
    pub class_names: Vec<String>,
}

/// Lists `dir` and builds its streams: training files augmented,
/// validation files (`split` of them, Keras's rule) resized and cropped.
pub fn folder_streams(
    dir: &Path,
    p: &Preprocessing,
    augment: Option<Augmentation>,
    split: Option<f32>,
    cfg: ImageStreamConfig,
) -> CliResult<FolderData> {
    let (class_names, files) = list_class_files(dir)?;
    let (train_files, val_files) = match split.filter(|s| *s > 0.0) {
        Some(s) => split_files(files, s, cfg.seed),
        None => (files, Vec::new()),
    };
    let validation = if val_files.is_empty() {
        None
    } else {
        let val_cfg = ImageStreamConfig {
            shuffle: false,
            ..cfg.clone()
        };
        Some(ImageStream::new(val_files, transform_of(p, None), val_cfg)?)
    };
    let train = ImageStream::new(train_files, transform_of(p, augment), cfg)?;
    Ok(FolderData {
        train,
        validation,
        class_names,
    })
}

/// Maps a folder's class ids onto the model's by name. Refuses folder
/// classes the model does not know, naming them.
pub fn match_classes(folder: &[String], model: &[String], dir: &Path) -> CliResult<Vec<usize>> {
    let mut unknown = Vec::new();
    let ids: Vec<usize> = folder
        .iter()
        .map(|name| match model.iter().position(|m| m == name) {
            Some(i) => i,
            None => {
                unknown.push(name.as_str());
                0
            }
        })
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "{}: class folder(s) {} are not classes of the model (it knows {})",
            dir.display(),
            unknown.join(", "),
            model.join(", ")
        )
        .into());
    }
    Ok(ids)
}

/// Renumbers a stream's class ids through `map` (folder id -> model id).
pub fn relabel(stream: ImageStream, map: &[usize]) -> CliResult<ImageStream> {
    let files = stream
        .files()
        .iter()
        .map(|(p, l)| (p.clone(), map[*l]))
        .collect();
    Ok(ImageStream::new(
        files,
        stream.transform().clone(),
        stream.config().clone(),
    )?)
}

/// An [`ImageStream`] as the batch source that `fit_source` takes.
pub struct StreamSource(pub ImageStream);

impl BatchSource for StreamSource {
    fn samples(&self) -> usize {
        self.0.len()
    }
    fn batches_per_epoch(&self) -> usize {
        self.0.num_batches()
    }
    fn epoch(
        &self,
        epoch: usize,
        first: usize,
    ) -> Box<dyn Iterator<Item = strata_nn::Result<SourceBatch>> + '_> {
        Box::new(self.0.epoch(epoch as u64, first).map(|b| {
            b.map(|b| SourceBatch {
                inputs: vec![b.inputs],
                targets: Targets::Classes(b.labels),
                skipped: b.skipped.len(),
            })
            .map_err(|e| NnError::Data(e.to_string()))
        }))
    }

    /// Each rank decodes only its own part of every batch.
    fn epoch_part(
        &self,
        epoch: usize,
        first: usize,
        rank: usize,
        size: usize,
    ) -> Option<Box<dyn Iterator<Item = strata_nn::Result<PartBatch>> + '_>> {
        let part: strata_data::BatchPart =
            Arc::new(move |len| strata_nn::data_parallel::rank_slice(len, rank, size));
        Some(Box::new(self.0.epoch_part(epoch as u64, first, part).map(
            |b| {
                b.map(|b| PartBatch {
                    batch: SourceBatch {
                        inputs: vec![b.inputs],
                        targets: Targets::Classes(b.labels),
                        skipped: b.skipped.len(),
                    },
                    positions: b.positions,
                })
                .map_err(|e| NnError::Data(e.to_string()))
            },
        )))
    }
}

/// True for a path whose extension is an image format strata reads.
pub fn is_image_path(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| {
            strata_data::image_folder::IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
        })
        .unwrap_or(false)
}

/// Every image under `dir` (any depth), sorted.
pub fn images_under(dir: &Path) -> CliResult<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for entry in rd {
            let p = entry.map_err(|e| format!("{}: {e}", d.display()))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if is_image_path(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(format!("{}: no .png/.jpg/.jpeg images in it", dir.display()).into());
    }
    Ok(out)
}
