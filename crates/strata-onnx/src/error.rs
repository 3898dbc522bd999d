//! The crate's one error type: every variant that concerns a layer names it.

use thiserror::Error;

/// What can go wrong exporting a model to ONNX.
#[derive(Debug, Error)]
pub enum OnnxError {
    /// A layer (or one of its options) has no ONNX mapping here.
    #[error("layer '{layer}' ({class}): {what} has no ONNX export")]
    Unsupported {
        layer: String,
        class: String,
        what: String,
    },
    /// A layer is not built or its weights are missing or mis-shaped.
    #[error("layer '{layer}' ({class}): {message}")]
    Layer {
        layer: String,
        class: String,
        message: String,
    },
    /// The requested opset is outside what the exporter writes.
    #[error("opset {0} is not supported: use 13..=21")]
    Opset(i64),
    /// The model's graph is malformed (an unknown source, no output).
    #[error("model graph: {0}")]
    Graph(String),
    /// Resolving a window's padding failed.
    #[error("layer '{layer}': {source}")]
    Core {
        layer: String,
        #[source]
        source: strata_core::CoreError,
    },
    /// Writing the file failed.
    #[error(transparent)]
    Nn(#[from] strata_nn::NnError),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, OnnxError>;
