//! `ModelInfo`: what a trained model needs to answer for a photo, kept in
//! its file beside the spec: the class names (a class id indexes them) and
//! how an image becomes the model's input (resize, centre crop, normalise).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

/// Metadata key of the class names (a JSON array of strings).
pub const CLASS_NAMES_KEY: &str = "class_names";
/// Metadata key of the preprocessing (a JSON object, [`Preprocessing`]).
pub const PREPROCESSING_KEY: &str = "preprocessing";

/// How an image file becomes one input sample at prediction time (and for
/// validation): decode, scale to [0, 1], resize so that the centre crop of
/// `crop_fraction` of each side is the model's input size, crop, then
/// `(x - mean) / std` per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// The model's input (height, width, channels).
    pub input_size: [usize; 3],
    /// Side of the centre crop as a fraction of the resized image: 1.0
    /// resizes straight to the input, 0.875 is torchvision's 224-of-256.
    pub crop_fraction: f32,
    /// Per-channel mean subtracted after scaling to [0, 1] (one or C values).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by (one or C values).
    pub std: Vec<f32>,
}

impl Preprocessing {
    /// Resize straight to `input_size`, no normalisation.
    pub fn plain(input_size: [usize; 3]) -> Self {
        Preprocessing {
            input_size,
            crop_fraction: 1.0,
            mean: vec![0.0],
            std: vec![1.0],
        }
    }
}

/// Class names and preprocessing of a model, both optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelInfo {
    /// Names of the classes, by class id; empty when unknown.
    pub class_names: Vec<String>,
    /// How an image becomes an input; `None` when unknown.
    pub preprocessing: Option<Preprocessing>,
}

impl ModelInfo {
    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.class_names.is_empty() && self.preprocessing.is_none()
    }

    /// Adds this info's keys to a weights file's metadata.
    pub fn write_to(&self, meta: &mut HashMap<String, String>) {
        if !self.class_names.is_empty() {
            meta.insert(
                CLASS_NAMES_KEY.to_string(),
                serde_json::Value::from(self.class_names.clone()).to_string(),
            );
        }
        if let Some(p) = &self.preprocessing {
            if let Ok(text) = serde_json::to_string(p) {
                meta.insert(PREPROCESSING_KEY.to_string(), text);
            }
        }
    }

    /// Reads the keys back from a weights file's metadata; absent keys give
    /// an empty info, malformed ones an error naming the file and key.
    pub fn read_from(meta: &HashMap<String, String>, file: &str) -> Result<ModelInfo> {
        let bad = |key: &str, e: serde_json::Error| NnError::Weights {
            path: file.to_string(),
            message: format!("metadata '{key}' is not valid: {e}"),
        };
        let class_names = match meta.get(CLASS_NAMES_KEY) {
            Some(text) => {
                serde_json::from_str::<Vec<String>>(text).map_err(|e| bad(CLASS_NAMES_KEY, e))?
            }
            None => Vec::new(),
        };
        let preprocessing = match meta.get(PREPROCESSING_KEY) {
            Some(text) => Some(
                serde_json::from_str::<Preprocessing>(text)
                    .map_err(|e| bad(PREPROCESSING_KEY, e))?,
            ),
            None => None,
        };
        Ok(ModelInfo {
            class_names,
            preprocessing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trip_and_errors() {
        let info = ModelInfo {
            class_names: vec!["cat".into(), "dog, big".into(), "\"quoted\"".into()],
            preprocessing: Some(Preprocessing {
                input_size: [64, 48, 3],
                crop_fraction: 0.875,
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225],
            }),
        };
        let mut meta = HashMap::new();
        info.write_to(&mut meta);
        assert_eq!(ModelInfo::read_from(&meta, "m").unwrap(), info);
        assert!(ModelInfo::read_from(&HashMap::new(), "m")
            .unwrap()
            .is_empty());
        meta.insert(CLASS_NAMES_KEY.into(), "[1, 2]".into());
        let e = ModelInfo::read_from(&meta, "m.safetensors").unwrap_err();
        assert!(e.to_string().contains("class_names"), "{e}");
        assert!(e.to_string().contains("m.safetensors"), "{e}");
    }
}
