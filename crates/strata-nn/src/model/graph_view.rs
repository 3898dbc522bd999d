//! Read-only views of a model's graph for tools outside the crate (the ONNX
//! exporter): which sources are the model's outputs.

use super::{Model, Source};

impl Model {
    /// The model's outputs, in order: input or node sources.
    pub fn graph_outputs(&self) -> &[Source] {
        &self.outputs
    }
}
