//! The crate's one error type: every variant that concerns a layer names it.

use thiserror::Error;

/// What can go wrong exporting a model to ONNX or importing one.
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
    /// The bytes are not an ONNX model (not protobuf, truncated, no graph).
    #[error("not an ONNX model: {0}")]
    NotOnnx(String),
    /// The ONNX model is malformed: a cycle, a dangling input, a tensor whose
    /// data does not match its shape.
    #[error("invalid ONNX model: {0}")]
    Invalid(String),
    /// Nodes that have no strata equivalent, every one listed.
    #[error("{} unsupported ONNX node(s): {}", .0.len(), .0.join("; "))]
    UnsupportedNodes(Vec<String>),
    /// An import error, with the file it concerns.
    #[error("{path}: {source}")]
    InFile {
        path: String,
        #[source]
        source: Box<OnnxError>,
    },
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A strata error: writing the file, building the imported model.
    #[error(transparent)]
    Nn(#[from] strata_nn::NnError),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, OnnxError>;
