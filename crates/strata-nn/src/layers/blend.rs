//! Blend: a learned mix of two same-shape tensors,
//! `s = sigmoid(alpha)`, `y = s * a + (1 - s) * b`, with `alpha` a trainable
//! scalar starting at 0 (an even mix).

use serde_json::Map;
use strata_core::{Rng, Tensor};

use super::dense::not_built;
use super::{expect_inputs, Ctx, Layer, LayerBase};
use crate::error::{InLayer, NnError, Result};
use crate::weight::Weight;

pub struct Blend {
    base: LayerBase,
    alpha: Option<Weight>,
}

impl Blend {
    pub fn new() -> Self {
        Blend {
            base: LayerBase::new(None),
            alpha: None,
        }
    }
    pub fn named(mut self, name: &str) -> Self {
        self.base.name = name.to_string();
        self
    }
    /// The current mixing weight `sigmoid(alpha)` given to the first input.
    pub fn mix(&self) -> Option<f32> {
        let a = self.alpha.as_ref()?.value.data()[0];
        Some(1.0 / (1.0 + (-a).exp()))
    }
}

impl Default for Blend {
    fn default() -> Self {
        Blend::new()
    }
}

impl Layer for Blend {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "Blend"
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 2)?;
        if inputs[0] != inputs[1] {
            return Err(NnError::shape(
                &self.base.name,
                "Blend",
                format!(
                    "two inputs of the same shape as {}",
                    crate::error::batch_shape(&inputs[0])
                ),
                &inputs[1],
            ));
        }
        if self.alpha.is_none() {
            self.alpha = Some(Weight::new(
                "alpha",
                Tensor::scalar(0.0),
                self.base.trainable,
            ));
        }
        Ok(inputs[0].clone())
    }
    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 2)?;
        let name = &self.base.name;
        let alpha = self.alpha.as_ref().ok_or_else(|| not_built(name))?;
        if inputs[0].shape() != inputs[1].shape() {
            return Err(NnError::shape(
                name,
                "Blend",
                format!(
                    "two inputs of the same shape as {}",
                    strata_core::fmt_shape(inputs[0].shape())
                ),
                inputs[1].shape().get(1..).unwrap_or(&[]),
            ));
        }
        let s = alpha.value.sigmoid();
        let a = inputs[0].mul(&s).in_layer(name)?;
        let b = inputs[1].mul(&s.rsub_scalar(1.0)).in_layer(name)?;
        a.add(&b).in_layer(name)
    }
    fn weights(&self) -> Vec<&Weight> {
        self.alpha.iter().collect()
    }
    fn weights_mut(&mut self) -> Vec<&mut Weight> {
        self.alpha.iter_mut().collect()
    }
    fn config(&self) -> Map<String, serde_json::Value> {
        Map::new()
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_blend(self, inputs, output)
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
    fn starts_as_an_even_mix() {
        let mut l = Blend::new().named("mix");
        build(&mut l, &[&[4], &[4]]).unwrap();
        assert_eq!(l.mix(), Some(0.5));
        let a = Tensor::full(&[1, 4], 2.0);
        let b = Tensor::full(&[1, 4], 4.0);
        assert_eq!(run(&mut l, &[a, b], false).unwrap().to_vec(), vec![3.0; 4]);
        assert_eq!(l.weights()[0].shape(), &[] as &[usize]);
        let e = build(&mut l, &[&[4], &[5]]).unwrap_err().to_string();
        assert!(
            e.contains("'mix' (Blend)") && e.contains("found (None, 5)"),
            "{e}"
        );
    }

    #[test]
    fn gradients_reach_alpha_and_both_inputs() {
        let mut l = Blend::new().named("mix");
        build(&mut l, &[&[3], &[3]]).unwrap();
        l.weights_mut()[0].value.assign(&[0.3]).unwrap();
        let mut r = Rng::new(1);
        let a = Tensor::rand_normal(&[2, 3], 0.0, 1.0, &mut r);
        let b = Tensor::rand_normal(&[2, 3], 0.0, 1.0, &mut r);
        check_layer_gradients(&mut l, &[a, b], true);
    }
}
