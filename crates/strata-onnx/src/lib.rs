//! ONNX export and import of strata models.
//!
//! [`export_model`] turns a built [`strata_nn::model::Model`] with its
//! weights into an ONNX [`proto::ModelProto`]; [`export_to_file`] writes it
//! atomically. The messages are plain `prost` structs with onnx.proto3's
//! field numbers ([`proto`]), so no protoc runs at build time.
//!
//! - Inputs are named after the model's inputs and take strata's layout:
//!   NHWC float32 with a dynamic batch axis (`dim_param` "batch").
//! - Inside, images are NCHW (Conv, pools, BatchNormalization); a Transpose
//!   is inserted only where a layer needs the other order (Flatten, Reshape
//!   and Dense read NHWC, so they flatten and contract in Keras order).
//! - Outputs are what `strata predict` writes, in NHWC, named after their
//!   layers; a softmax head stays a softmax.
//! - Weights are initializers; metadata carries `strata_version` and
//!   `class_names` (JSON) when the model has them.
//! - Opsets 13..=21 (default 13).
//!
//! Layers: Conv2D, DepthwiseConv2D, Dense, BatchNormalization,
//! MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
//! GlobalMaxPooling2D, Activation, ReLU (threshold 0), Softmax, Dropout,
//! Flatten, Reshape, ZeroPadding2D, Add, Multiply, Concatenate, Blend.
//! Activations: linear, relu, sigmoid, tanh, softmax, log_softmax, gelu,
//! silu, softplus. Anything else (a nested model, ReLU with a threshold) is
//! an [`OnnxError::Unsupported`] naming the layer and its type.

pub mod build;
pub mod error;
pub mod export;
pub mod import;
pub mod proto;

pub use error::{OnnxError, Result};
pub use export::{
    encode, export_bytes, export_model, export_to_file, ExportOptions, DEFAULT_OPSET,
    SUPPORTED_OPSETS,
};
pub use import::{import_bytes, import_file, Imported, MIN_OPSET};
