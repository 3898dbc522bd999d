//! Activation(name), ReLU and Softmax(axis) as layers.

use serde_json::{Map, Value};
use strata_core::{Rng, Tensor};

use super::{expect_inputs, Ctx, Layer, LayerBase};
use crate::activations::Activation;
use crate::error::{InLayer, NnError, Result};

/// Applies a named activation element-wise (softmax over the last axis).
pub struct ActivationLayer {
    base: LayerBase,
    pub activation: Activation,
}

impl ActivationLayer {
    pub fn new(activation: Activation) -> Self {
        ActivationLayer {
            base: LayerBase::new(None),
            activation,
        }
    }
}

impl Layer for ActivationLayer {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "Activation"
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        Ok(inputs[0].clone())
    }
    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        self.activation.apply(&inputs[0]).in_layer(&self.base.name)
    }
    fn forward_logits(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Option<Result<Tensor>> {
        (self.activation == Activation::Softmax && inputs.len() == 1).then(|| Ok(inputs[0].clone()))
    }
    fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("activation".into(), self.activation.name().into());
        m
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_activation(self.activation, inputs, output)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// ReLU with Keras's options: `max_value`, `negative_slope`, `threshold`.
pub struct ReLU {
    base: LayerBase,
    pub max_value: Option<f32>,
    pub negative_slope: f32,
    pub threshold: f32,
}

impl ReLU {
    pub fn new() -> Self {
        ReLU {
            base: LayerBase::new(None),
            max_value: None,
            negative_slope: 0.0,
            threshold: 0.0,
        }
    }
}

impl Default for ReLU {
    fn default() -> Self {
        ReLU::new()
    }
}

impl Layer for ReLU {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "ReLU"
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        if self.negative_slope < 0.0 || self.max_value.is_some_and(|m| m < 0.0) {
            return Err(NnError::config(
                &self.base.name,
                "negative_slope/max_value",
                "must not be negative",
            ));
        }
        Ok(inputs[0].clone())
    }
    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        let name = &self.base.name;
        let x = inputs[0].add_scalar(-self.threshold);
        // Keras: x where x > threshold, else negative_slope * (x - threshold)
        let pos = x.relu();
        let mut y = pos
            .add(
                &inputs[0]
                    .gt_scalar(self.threshold)
                    .mul_scalar(self.threshold),
            )
            .in_layer(name)?;
        if self.negative_slope != 0.0 {
            y = y
                .sub(&x.neg().relu().mul_scalar(self.negative_slope))
                .in_layer(name)?;
        }
        if let Some(m) = self.max_value {
            y = y.clamp(f32::NEG_INFINITY, m);
        }
        Ok(y)
    }
    fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(v) = self.max_value {
            m.insert("max_value".into(), v.into());
        }
        m.insert("negative_slope".into(), self.negative_slope.into());
        m.insert("threshold".into(), self.threshold.into());
        m
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_relu(
            self.max_value,
            self.negative_slope,
            self.threshold,
            inputs,
            output,
        )
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Softmax over an axis: `exp(x_i) / sum_j exp(x_j)`, outputs in [0, 1] summing to 1.
pub struct Softmax {
    base: LayerBase,
    pub axis: isize,
}

impl Softmax {
    pub fn new(axis: isize) -> Self {
        Softmax {
            base: LayerBase::new(None),
            axis,
        }
    }
    pub fn named(mut self, name: &str) -> Self {
        self.base.name = name.to_string();
        self
    }
}

impl Layer for Softmax {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "Softmax"
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        let rank = inputs[0].len() as isize + 1;
        if self.axis == 0 || self.axis == -rank || self.axis >= rank || self.axis < -rank {
            return Err(NnError::config(
                &self.base.name,
                "axis",
                format!(
                    "{} is not a feature axis of {}",
                    self.axis,
                    crate::error::batch_shape(&inputs[0])
                ),
            ));
        }
        Ok(inputs[0].clone())
    }
    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        inputs[0].softmax(self.axis).in_layer(&self.base.name)
    }
    fn forward_logits(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Option<Result<Tensor>> {
        let last = self.axis == -1
            || inputs
                .first()
                .is_some_and(|x| self.axis == x.rank() as isize - 1);
        (last && inputs.len() == 1).then(|| Ok(inputs[0].clone()))
    }
    fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("axis".into(), self.axis.into());
        m
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_softmax(self.name(), self.axis, inputs, output)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{build, check_layer_gradients, run};
    use super::*;

    #[test]
    fn softmax_layer_sums_to_one_on_its_axis() {
        let mut l = Softmax::new(1);
        build(&mut l, &[&[3, 2]]).unwrap();
        let x = Tensor::rand_normal(&[2, 3, 2], 0.0, 2.0, &mut Rng::new(1));
        let y = run(&mut l, std::slice::from_ref(&x), false).unwrap();
        let s = y.sum(&[1], false).unwrap();
        assert!(s.data().iter().all(|v| (v - 1.0).abs() < 1e-6));
        check_layer_gradients(&mut l, &[x], false);
        assert!(build(&mut Softmax::new(0), &[&[3]]).is_err());
    }

    #[test]
    fn relu_options_follow_keras() {
        let mut l = ReLU::new();
        l.max_value = Some(2.0);
        l.negative_slope = 0.1;
        build(&mut l, &[&[4]]).unwrap();
        let x = Tensor::from_vec(vec![-3.0, -0.5, 1.0, 5.0], &[1, 4]).unwrap();
        let y = run(&mut l, &[x], false).unwrap().to_vec();
        let want = [-0.3, -0.05, 1.0, 2.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn activation_layer_gradient() {
        let mut l = ActivationLayer::new(Activation::Gelu);
        build(&mut l, &[&[5]]).unwrap();
        let x = Tensor::rand_normal(&[2, 5], 0.0, 1.0, &mut Rng::new(1));
        check_layer_gradients(&mut l, &[x], false);
    }
}
