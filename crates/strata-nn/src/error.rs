//! One error type for layers, models, losses and optimizers. Variants name the
//! layer (or file) and the field, with expected and found values.

use strata_core::CoreError;

#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// An input shape a layer cannot take.
    #[error("layer '{layer}' ({class}): expected input {expected}, found {found}")]
    Shape {
        layer: String,
        class: String,
        expected: String,
        found: String,
    },
    /// A bad layer argument (in Rust or in a spec file).
    #[error("layer '{layer}': invalid {field}: {message}")]
    Config {
        layer: String,
        field: String,
        message: String,
    },
    /// A malformed model spec.
    #[error("spec: {0}")]
    Spec(String),
    /// An op failed inside a layer.
    #[error("layer '{layer}': {source}")]
    Op { layer: String, source: CoreError },
    /// A tensor op failed outside any layer (losses, optimizers).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Weights that do not match the model (all mismatches listed).
    #[error("weights {path}: {message}")]
    Weights { path: String, message: String },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A batch source could not deliver (the message names the file).
    #[error("{0}")]
    Data(String),
    /// Training could not go on (bad arguments, non-finite loss, ...).
    #[error("training: {0}")]
    Training(String),
    /// The ranks of a distributed run cannot train together (they disagree,
    /// or the batch does not split); every rank finds the same one.
    #[error("distributed training: {0}")]
    Ranks(String),
}

impl NnError {
    pub fn config(layer: &str, field: &str, message: impl Into<String>) -> Self {
        NnError::Config {
            layer: layer.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }
    pub fn shape(layer: &str, class: &str, expected: impl Into<String>, found: &[usize]) -> Self {
        NnError::Shape {
            layer: layer.to_string(),
            class: class.to_string(),
            expected: expected.into(),
            found: batch_shape(found),
        }
    }
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        NnError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Attaches a layer name to a core error.
pub trait InLayer<T> {
    fn in_layer(self, layer: &str) -> Result<T>;
}

impl<T> InLayer<T> for std::result::Result<T, CoreError> {
    fn in_layer(self, layer: &str) -> Result<T> {
        self.map_err(|source| NnError::Op {
            layer: layer.to_string(),
            source,
        })
    }
}

/// A per-sample shape written with the batch axis as None: `(None, 28, 28, 1)`.
pub fn batch_shape(sample: &[usize]) -> String {
    let mut parts = vec!["None".to_string()];
    parts.extend(sample.iter().map(|d| d.to_string()));
    format!("({})", parts.join(", "))
}

pub type Result<T> = std::result::Result<T, NnError>;
