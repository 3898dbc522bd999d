//! `ImageFolder`: a directory with one sub-folder per class of PNG/JPEG files,
//! like Keras's `image_dataset_from_directory`: classes are the sub-folder
//! names sorted alphabetically (class id = position), images are decoded,
//! resized bilinearly (half-pixel centres, no antialiasing, as
//! `tf.image.resize`) to (height, width), and scaled to [0, 1].
//!
//! With a validation split, the file list is shuffled with `seed` and the last
//! `floor(split * N)` files become the validation set (Keras's rule).

use std::path::{Path, PathBuf};

use strata_core::{Rng, Tensor};

use crate::dataset::{fraction_f64, Dataset};
use crate::error::{DataError, Result};

/// File extensions read as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// How to read an image folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFolderConfig {
    /// Output height in pixels.
    pub height: usize,
    /// Output width in pixels.
    pub width: usize,
    /// 1 (greyscale) or 3 (RGB).
    pub channels: usize,
    /// Fraction of files held out for validation, in (0, 1).
    pub validation_split: Option<f32>,
    /// Seed of the shuffle that precedes the validation split.
    pub seed: u64,
}

impl Default for ImageFolderConfig {
    /// Keras's defaults: 256×256 RGB, no split.
    fn default() -> Self {
        ImageFolderConfig {
            height: 256,
            width: 256,
            channels: 3,
            validation_split: None,
            seed: 0,
        }
    }
}

/// The images of a class-per-folder directory.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// Training samples, inputs (N, height, width, channels) in [0, 1].
    pub train: Dataset,
    /// Validation samples when a split was asked for.
    pub validation: Option<Dataset>,
    /// Class names; a label is an index into this list.
    pub class_names: Vec<String>,
    /// The files behind `train`, in sample order.
    pub train_files: Vec<PathBuf>,
    /// The files behind `validation`, in sample order.
    pub validation_files: Vec<PathBuf>,
}

fn list_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    rd.map(|e| e.map_err(|e| DataError::io(dir, e))).collect()
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Image files with their class ids.
pub type LabelledFiles = Vec<(PathBuf, usize)>;

/// Lists `root/<class>/<image>`: the class names (sub-folders, sorted) and
/// every PNG/JPEG file with its class id, sorted within each class. No
/// image is opened.
pub fn list_class_files(root: &Path) -> Result<(Vec<String>, LabelledFiles)> {
    let mut classes: Vec<(String, PathBuf)> = Vec::new();
    for entry in list_dir(root)? {
        let path = entry.path();
        if path.is_dir() {
            let name = entry.file_name().to_string_lossy().into_owned();
            classes.push((name, path));
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(DataError::format(
            root.display(),
            "classes",
            "no class sub-folders found",
        ));
    }
    let mut files: Vec<(PathBuf, usize)> = Vec::new();
    for (id, (_, dir)) in classes.iter().enumerate() {
        let mut paths: Vec<PathBuf> = list_dir(dir)?
            .into_iter()
            .map(|e| e.path())
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        paths.sort();
        files.extend(paths.into_iter().map(|p| (p, id)));
    }
    if files.is_empty() {
        return Err(DataError::format(
            root.display(),
            "images",
            format!(
                "no .png/.jpg/.jpeg files in the {} class folder(s)",
                classes.len()
            ),
        ));
    }
    Ok((classes.into_iter().map(|(n, _)| n).collect(), files))
}

/// Keras's validation split of a file list: shuffled with `seed`, the last
/// `floor(fraction * N)` files are held out. Returns (training, validation).
pub fn split_files<T>(mut files: Vec<T>, fraction: f32, seed: u64) -> (Vec<T>, Vec<T>) {
    Rng::new(seed).shuffle(&mut files);
    let n_val = (fraction_f64(fraction) * files.len() as f64).floor() as usize;
    let cut = files.len() - n_val.min(files.len());
    let val = files.split_off(cut);
    (files, val)
}

impl ImageFolder {
    /// Reads every image under `root/<class>/`.
    pub fn load(root: impl AsRef<Path>, config: ImageFolderConfig) -> Result<ImageFolder> {
        let root = root.as_ref();
        let what = "ImageFolder::load";
        if config.height == 0 || config.width == 0 {
            return Err(DataError::arg(
                what,
                "height/width",
                format!("{}x{} is empty", config.height, config.width),
            ));
        }
        if config.channels != 1 && config.channels != 3 {
            return Err(DataError::arg(
                what,
                "channels",
                format!("{} is not 1 or 3", config.channels),
            ));
        }
        if let Some(s) = config.validation_split {
            if !(s > 0.0 && s < 1.0) {
                return Err(DataError::arg(
                    what,
                    "validation_split",
                    format!("{s} is not in (0, 1)"),
                ));
            }
        }

        let (class_names, files) = list_class_files(root)?;
        let (train_files, val_files) = match config.validation_split {
            Some(split) => split_files(files, split, config.seed),
            None => (files, Vec::new()),
        };

        let train = build(&train_files, &config)?;
        let validation = match config.validation_split {
            Some(_) => Some(build(&val_files, &config)?),
            None => None,
        };
        Ok(ImageFolder {
            train,
            validation,
            class_names,
            train_files: train_files.into_iter().map(|(p, _)| p).collect(),
            validation_files: val_files.into_iter().map(|(p, _)| p).collect(),
        })
    }
}

fn build(files: &[(PathBuf, usize)], config: &ImageFolderConfig) -> Result<Dataset> {
    let (h, w, c) = (config.height, config.width, config.channels);
    let per = h * w * c;
    let mut data = Vec::with_capacity(files.len() * per);
    for (path, _) in files {
        data.extend(load_image(path, h, w, c)?);
    }
    let inputs = Tensor::from_vec(data, &[files.len(), h, w, c])?;
    Dataset::new(inputs, files.iter().map(|(_, l)| *l).collect())
}

/// Decodes one image file to (height, width, channels) floats in [0, 1].
pub fn load_image(path: &Path, height: usize, width: usize, channels: usize) -> Result<Vec<f32>> {
    let img_err = |message: String| DataError::Image {
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let img = image::load_from_memory(&bytes).map_err(|e| img_err(e.to_string()))?;
    let (sw, sh) = (img.width() as usize, img.height() as usize);
    let pixels: Vec<f32> = match channels {
        1 => img
            .to_luma8()
            .into_raw()
            .into_iter()
            .map(|b| b as f32 / 255.0)
            .collect(),
        _ => img
            .to_rgb8()
            .into_raw()
            .into_iter()
            .map(|b| b as f32 / 255.0)
            .collect(),
    };
    if sw == 0 || sh == 0 {
        return Err(img_err("image has no pixels".to_string()));
    }
    Ok(resize_bilinear(&pixels, sh, sw, channels, height, width))
}

/// Bilinear resize of one HWC image with half-pixel centres (TensorFlow's
/// `resize(..., antialias=False)`). Same size returns a copy.
pub fn resize_bilinear(
    src: &[f32],
    sh: usize,
    sw: usize,
    c: usize,
    oh: usize,
    ow: usize,
) -> Vec<f32> {
    if sh == oh && sw == ow {
        return src.to_vec();
    }
    let axis = |out: usize, inp: usize| -> Vec<(usize, usize, f32)> {
        let scale = inp as f32 / out as f32;
        (0..out)
            .map(|o| {
                let x = (o as f32 + 0.5) * scale - 0.5;
                let fl = x.floor();
                let lo = (fl.max(0.0) as usize).min(inp - 1);
                let hi = (x.ceil().max(0.0) as usize).min(inp - 1);
                (lo, hi, x - fl)
            })
            .collect()
    };
    let ys = axis(oh, sh);
    let xs = axis(ow, sw);
    let mut out = Vec::with_capacity(oh * ow * c);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            for ch in 0..c {
                let p = |y: usize, x: usize| src[(y * sw + x) * c + ch];
                let top = p(y0, x0) + (p(y0, x1) - p(y0, x0)) * fx;
                let bot = p(y1, x0) + (p(y1, x1) - p(y1, x0)) * fx;
                out.push(top + (bot - top) * fy);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("strata-imgf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_png(path: &Path, w: u32, h: u32, value: u8) {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([value, (x * 10) as u8, (y * 10) as u8])
        });
        img.save(path).unwrap();
    }

    fn make_tree(root: &Path) {
        // Created out of order: "dog" before "cat"; files of varying sizes.
        std::fs::create_dir_all(root.join("dog")).unwrap();
        std::fs::create_dir_all(root.join("cat")).unwrap();
        for i in 0..3 {
            write_png(&root.join("dog").join(format!("d{i}.png")), 8 + i, 6, 200);
        }
        for i in 0..2 {
            write_png(&root.join("cat").join(format!("c{i}.PNG")), 4, 4, 10);
        }
        let jpg = image::RgbImage::from_pixel(5, 5, image::Rgb([128, 128, 128]));
        jpg.save(root.join("cat").join("c9.jpg")).unwrap();
        std::fs::write(root.join("cat").join("notes.txt"), "ignored").unwrap();
        std::fs::write(root.join("stray.png"), "ignored: not in a class").unwrap();
    }

    #[test]
    fn classes_sorted_shapes_and_values() {
        let root = tmp("ok");
        make_tree(&root);
        let cfg = ImageFolderConfig {
            height: 4,
            width: 5,
            channels: 3,
            validation_split: None,
            seed: 1,
        };
        let f = ImageFolder::load(&root, cfg.clone()).unwrap();
        assert_eq!(f.class_names, vec!["cat", "dog"]);
        assert_eq!(f.train.inputs().shape(), &[6, 4, 5, 3]);
        assert_eq!(f.train.labels(), &[0, 0, 0, 1, 1, 1]);
        assert!(f.validation.is_none());
        let x = f.train.inputs().to_vec();
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        // First channel of a dog image is the constant 200/255.
        let dog0 = 3 * 4 * 5 * 3;
        assert!((x[dog0] - 200.0 / 255.0).abs() < 1e-6);

        let grey = ImageFolder::load(&root, ImageFolderConfig { channels: 1, ..cfg }).unwrap();
        assert_eq!(grey.train.inputs().shape(), &[6, 4, 5, 1]);
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn validation_split_is_seeded() {
        let root = tmp("split");
        make_tree(&root);
        let cfg = ImageFolderConfig {
            height: 3,
            width: 3,
            channels: 1,
            validation_split: Some(0.34),
            seed: 42,
        };
        let a = ImageFolder::load(&root, cfg.clone()).unwrap();
        let v = a.validation.as_ref().unwrap();
        // floor(0.34 * 6) = 2 validation images.
        assert_eq!((a.train.len(), v.len()), (4, 2));
        assert_eq!(a.validation_files.len(), 2);
        let b = ImageFolder::load(&root, cfg).unwrap();
        assert_eq!(a.validation_files, b.validation_files);
        assert_eq!(a.train.labels(), b.train.labels());
        let mut all: Vec<_> = a.train_files.iter().chain(&a.validation_files).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 6);
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn empty_and_undecodable() {
        let root = tmp("empty");
        let cfg = ImageFolderConfig {
            height: 2,
            width: 2,
            ..Default::default()
        };
        let e = ImageFolder::load(&root, cfg.clone()).unwrap_err();
        assert!(e.to_string().contains("no class sub-folders"), "{e}");
        std::fs::create_dir_all(root.join("a")).unwrap();
        let e = ImageFolder::load(&root, cfg.clone()).unwrap_err();
        assert!(e.to_string().contains("no .png"), "{e}");
        std::fs::write(root.join("a").join("broken.png"), b"\x89PNG garbage").unwrap();
        let e = ImageFolder::load(&root, cfg.clone()).unwrap_err();
        assert!(matches!(e, DataError::Image { .. }), "{e}");
        assert!(e.to_string().contains("broken.png"), "{e}");
        let e = ImageFolder::load(root.join("missing"), cfg.clone()).unwrap_err();
        assert!(matches!(e, DataError::Io { .. }), "{e}");
        let bad = ImageFolderConfig {
            channels: 2,
            ..cfg.clone()
        };
        assert!(ImageFolder::load(&root, bad).is_err());
        let bad = ImageFolderConfig {
            validation_split: Some(1.0),
            ..cfg
        };
        assert!(ImageFolder::load(&root, bad).is_err());
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn resize_matches_tensorflow_rule() {
        // 1x2 → 1x4 with half-pixel centres: [a, a+.25d, a+.75d, b].
        let out = resize_bilinear(&[0.0, 1.0], 1, 2, 1, 1, 4);
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
        // 4 → 2 averages neighbouring pairs.
        let out = resize_bilinear(&[0.0, 1.0, 2.0, 3.0], 1, 4, 1, 1, 2);
        assert_eq!(out, vec![0.5, 2.5]);
        let same = resize_bilinear(&[1.0, 2.0, 3.0], 1, 1, 3, 1, 1);
        assert_eq!(same, vec![1.0, 2.0, 3.0]);
    }
}
