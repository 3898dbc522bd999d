//! What each layer computes, in words and as shape algebra with the model's
//! real shapes, and how its parameter count arises (`strata explain`).

use serde::Serialize;

use strata_core::ops::{Geometry2d, Padding};

use crate::activations::Activation;
use crate::error::batch_shape;
use crate::layers::{Blend, Dense, Layer};

mod activations;
mod convolution;
mod dense;
mod normalization;
mod pooling;
mod reshaping;
mod window;
mod words;

pub(crate) use activations::*;
pub(crate) use convolution::*;
pub(crate) use dense::*;
pub(crate) use normalization::*;
pub(crate) use pooling::*;
pub(crate) use reshaping::*;
pub(crate) use window::*;
pub use words::*;

/// The explanation of one layer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Description {
    /// The operation in plain words.
    pub operation: String,
    /// The formula with real shapes, e.g. `x (None, 2048) · W (2048, 3) + b (3,) -> (None, 3)`.
    pub shapes: String,
    /// How the parameter count arises, e.g. `2048*3 + 3 = 6,147`.
    pub params: String,
    /// Further facts (what a 1x1 convolution is, the current blend weight, ...).
    pub notes: Vec<String>,
}

impl Description {
    /// For layers without a dedicated explanation.
    pub fn generic(class: &str, inputs: &[Vec<usize>], output: &[usize]) -> Self {
        Description {
            operation: format!("{class} layer"),
            shapes: format!("{} -> {}", ins(inputs), batch_shape(output)),
            params: "0".into(),
            notes: Vec::new(),
        }
    }
    /// A layer without weights.
    pub fn parameter_free(operation: impl Into<String>, shapes: impl Into<String>) -> Self {
        Description {
            operation: operation.into(),
            shapes: shapes.into(),
            params: "0 (no weights)".into(),
            notes: Vec::new(),
        }
    }
}

/// The explanation of one layer of a model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerExplanation {
    pub name: String,
    #[serde(rename = "type")]
    pub class: String,
    #[serde(flatten)]
    pub description: Description,
    /// Multiply-adds per sample (weighted layers only: `model/profile.rs`).
    pub macs: u64,
    /// The output's bytes per sample (float32).
    pub activation_bytes: u64,
    /// What one output value sees of the input (`model::Field`).
    #[serde(skip)]
    pub field: crate::model::Field,
    /// `[h, w]` input pixels one output value sees; `null` where it sees the
    /// whole input or there is no image.
    pub receptive_field: Option<[usize; 2]>,
    /// `[h, w]`: the input pixels between neighbouring output values' fields.
    pub jump: Option<[usize; 2]>,
}

impl crate::model::Model {
    /// Every layer's explanation with the shapes of its first application.
    pub fn explain(&self) -> Vec<LayerExplanation> {
        let profile = self.profile();
        self.layers()
            .iter()
            .enumerate()
            .filter_map(|(li, l)| {
                let at = self.nodes().iter().position(|n| n.layer == li)?;
                let node = &self.nodes()[at];
                let cost = profile.nodes.get(at).copied()?;
                let inputs: Vec<Vec<usize>> = node
                    .inputs
                    .iter()
                    .filter_map(|s| self.shape_of(*s).ok())
                    .collect();
                Some(LayerExplanation {
                    name: l.name().to_string(),
                    class: l.class_name().to_string(),
                    description: l.describe(&inputs, &node.output_shape),
                    macs: cost.macs,
                    activation_bytes: cost.activation_bytes,
                    field: cost.field,
                    receptive_field: cost.field.size(),
                    jump: cost.field.jump(),
                })
            })
            .collect()
    }
}

impl std::fmt::Display for LayerExplanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} ({})", self.name, self.class)?;
        writeln!(f, "  what:   {}", self.description.operation)?;
        writeln!(f, "  shapes: {}", self.description.shapes)?;
        writeln!(f, "  params: {}", self.description.params)?;
        for n in &self.description.notes {
            writeln!(f, "  note:   {n}")?;
        }
        writeln!(
            f,
            "  multiply-adds:     {} per sample",
            thousands_u64(self.macs)
        )?;
        writeln!(
            f,
            "  activation memory: {} per sample ({} float32 values)",
            decimal_bytes(self.activation_bytes),
            thousands_u64(self.activation_bytes / 4)
        )?;
        let field = match self.field {
            crate::model::Field::Window { size, jump } => format!(
                "{}x{} input pixels, jump {}x{}",
                size[0], size[1], jump[0], jump[1]
            ),
            crate::model::Field::Global => {
                "global: each output value depends on the whole input".into()
            }
            crate::model::Field::NotSpatial => "- (no image input)".into(),
        };
        writeln!(f, "  receptive field:   {field}")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
