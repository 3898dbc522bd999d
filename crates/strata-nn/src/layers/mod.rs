//! The layer abstraction and one file per Keras layer.
//!
//! A layer is built once from its per-sample input shapes (the batch axis is
//! left out everywhere here and printed as `None`): `build` validates them,
//! creates the named weights and returns the output shape, so shapes are known
//! before any data flows. `forward` then runs on batches.

use std::any::Any;

use serde_json::{Map, Value};
use strata_core::{Precision, Rng, Tensor};

use crate::error::Result;
use crate::weight::Weight;

mod activation_layers;
mod batch_normalization;
mod blend;
mod conv2d;
mod dense;
mod depthwise_conv2d;
mod dropout;
mod global_average_pooling2d;
mod merge;
mod pooling2d;
mod reshaping;
mod zero_padding2d;

pub use activation_layers::{ActivationLayer, ReLU, Softmax};
pub use batch_normalization::BatchNormalization;
pub use blend::Blend;
pub use conv2d::Conv2D;
pub use dense::Dense;
pub use depthwise_conv2d::DepthwiseConv2D;
pub use dropout::Dropout;
pub use global_average_pooling2d::{GlobalAveragePooling2D, GlobalMaxPooling2D};
pub use merge::{Add, Concatenate, Multiply};
pub use pooling2d::{AveragePooling2D, MaxPooling2D};
pub use reshaping::{Flatten, Reshape};
pub use zero_padding2d::ZeroPadding2D;

/// What every layer carries: its name and whether its weights train.
#[derive(Debug, Clone)]
pub struct LayerBase {
    pub name: String,
    pub trainable: bool,
}

impl LayerBase {
    pub fn new(name: Option<&str>) -> Self {
        LayerBase {
            name: name.unwrap_or_default().to_string(),
            trainable: true,
        }
    }
}

/// Per-call state of a forward pass.
pub struct Ctx<'a> {
    /// Training mode: BatchNormalization uses batch statistics and Dropout drops.
    pub training: bool,
    /// The generator for dropout masks and other randomness.
    pub rng: &'a mut Rng,
}

/// A Keras-style layer. `Any` lets the model's fusion pass reach the two
/// layers it fuses (Conv2D, BatchNormalization) by their own types.
pub trait Layer: Any + Send {
    fn base(&self) -> &LayerBase;
    fn base_mut(&mut self) -> &mut LayerBase;
    /// The Keras class name (`Conv2D`, `Dense`, ...).
    fn class_name(&self) -> &'static str;

    /// Validates the per-sample input shapes, creates the weights on the first
    /// call, and returns the per-sample output shape.
    fn build(&mut self, inputs: &[Vec<usize>], rng: &mut Rng) -> Result<Vec<usize>>;

    /// Runs the layer on a batch.
    fn forward(&mut self, inputs: &[Tensor], ctx: &mut Ctx) -> Result<Tensor>;

    /// For a layer that ends in a softmax over the last axis: its output before
    /// that softmax, so a crossentropy can use the fused, stable form.
    fn forward_logits(&mut self, _inputs: &[Tensor], _ctx: &mut Ctx) -> Option<Result<Tensor>> {
        None
    }

    /// The layer's weights in Keras order (kernel before bias, ...).
    fn weights(&self) -> Vec<&Weight> {
        Vec::new()
    }
    fn weights_mut(&mut self) -> Vec<&mut Weight> {
        Vec::new()
    }

    /// The layer's arguments as spec JSON (Keras names).
    fn config(&self) -> Map<String, Value> {
        Map::new()
    }

    /// The operation in words with this layer's real shapes (see `explain`).
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::Description::generic(self.class_name(), inputs, output)
    }

    fn as_any(&self) -> &dyn Any;

    /// Enters (`Some`) or leaves (`None`) a data-parallel run: layers whose
    /// training forward depends on the batch (BatchNormalization's
    /// statistics, Dropout's masks) read the run's collective and sample
    /// keys from it. The default ignores it.
    fn set_distribution(
        &mut self,
        _d: Option<std::sync::Arc<crate::distributed::LayerDistribution>>,
    ) {
    }

    /// Takes the model-wide precision policy (Keras's global dtype policy,
    /// set by [`crate::Model::set_precision`]): Conv2D and Dense multiply in
    /// it unless given their own (`dtype`); every other layer computes in
    /// float32 and ignores it.
    fn set_model_precision(&mut self, _precision: Precision) {}

    /// The precision this layer multiplies in, for the layers that have a
    /// policy (Conv2D, Dense); `None` for the layers that are float32 only.
    fn precision(&self) -> Option<Precision> {
        None
    }

    fn name(&self) -> &str {
        &self.base().name
    }
    fn set_name(&mut self, name: &str) {
        self.base_mut().name = name.to_string();
    }
    fn trainable(&self) -> bool {
        self.base().trainable
    }
    /// Freezes (false) or unfreezes the layer: its trainable weights stop or
    /// start receiving gradients and count as non-trainable parameters.
    fn set_trainable(&mut self, on: bool) {
        self.base_mut().trainable = on;
        for w in self.weights_mut() {
            w.value.set_requires_grad(on && w.trainable);
        }
    }
    /// Total parameter count.
    fn param_count(&self) -> usize {
        self.weights().iter().map(|w| w.numel()).sum()
    }
    /// Parameters the optimizer updates.
    fn trainable_param_count(&self) -> usize {
        if !self.trainable() {
            return 0;
        }
        self.weights()
            .iter()
            .filter(|w| w.trainable)
            .map(|w| w.numel())
            .sum()
    }
}

/// Checks that exactly `n` inputs arrived.
pub(crate) fn expect_inputs(layer: &dyn Layer, inputs: usize, n: usize) -> Result<()> {
    if inputs != n {
        return Err(crate::error::NnError::config(
            layer.name(),
            "inputs",
            format!("{} takes {n} input(s), found {inputs}", layer.class_name()),
        ));
    }
    Ok(())
}

/// Reads a `(h, w)` pair from an int or a two-element list.
pub(crate) fn pair_from(v: &Value) -> Option<(usize, usize)> {
    match v {
        Value::Number(n) => n.as_u64().map(|n| (n as usize, n as usize)),
        Value::Array(a) if a.len() == 2 => Some((a[0].as_u64()? as usize, a[1].as_u64()? as usize)),
        _ => None,
    }
}

/// `(h, w)` as spec JSON.
pub(crate) fn pair_json(p: (usize, usize)) -> Value {
    Value::from(vec![p.0, p.1])
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for layer tests: build, run, and check gradients through a layer.
    use super::*;

    pub fn run(layer: &mut dyn Layer, inputs: &[Tensor], training: bool) -> Result<Tensor> {
        let mut rng = Rng::new(0);
        let mut ctx = Ctx {
            training,
            rng: &mut rng,
        };
        layer.forward(inputs, &mut ctx)
    }

    pub fn build(layer: &mut dyn Layer, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|s| s.to_vec()).collect();
        layer.build(&shapes, &mut Rng::new(42))
    }

    /// Gradient check of a built layer with respect to its inputs and every
    /// trainable weight, running the layer's own forward.
    pub fn check_layer_gradients(layer: &mut dyn Layer, inputs: &[Tensor], training: bool) {
        let n_in = inputs.len();
        let mut all: Vec<Tensor> = inputs.to_vec();
        all.extend(
            layer
                .weights()
                .iter()
                .filter(|w| w.trainable)
                .map(|w| w.value.detach()),
        );
        let cell = std::cell::RefCell::new(layer);
        strata_core::gradcheck::check_gradients(&all, |t| {
            let mut l = cell.borrow_mut();
            for (w, v) in l
                .weights_mut()
                .into_iter()
                .filter(|w| w.trainable)
                .zip(&t[n_in..])
            {
                w.value = v.clone();
            }
            run(&mut **l, &t[..n_in], training)
                .map_err(|e| strata_core::CoreError::Autograd(e.to_string()))
        });
    }
}
