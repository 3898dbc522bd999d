//! Dense: `y = activation(x · kernel + bias)` on the last axis of any rank,
//! so (b, 512, 768) -> (b, 512, units).

use serde_json::{Map, Value};
use strata_core::{Precision, Rng, Tensor};

use super::{expect_inputs, Ctx, Layer, LayerBase};
use crate::activations::Activation;
use crate::error::{InLayer, NnError, Result};
use crate::initializers::Initializer;
use crate::weight::Weight;

pub struct Dense {
    base: LayerBase,
    pub units: usize,
    pub activation: Activation,
    pub use_bias: bool,
    pub kernel_initializer: Initializer,
    pub bias_initializer: Initializer,
    /// The layer's own policy (Keras's `dtype`), which wins over the
    /// model's; `None` follows the model.
    pub dtype: Option<Precision>,
    /// The model-wide policy, as the model last handed it down.
    model_precision: Precision,
    kernel: Option<Weight>,
    bias: Option<Weight>,
}

impl Dense {
    pub fn new(units: usize) -> Self {
        Dense {
            base: LayerBase::new(None),
            units,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            dtype: None,
            model_precision: Precision::Float32,
            kernel: None,
            bias: None,
        }
    }
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    pub fn use_bias(mut self, on: bool) -> Self {
        self.use_bias = on;
        self
    }
    pub fn named(mut self, name: &str) -> Self {
        self.base.name = name.to_string();
        self
    }
    pub fn kernel_initializer(mut self, i: Initializer) -> Self {
        self.kernel_initializer = i;
        self
    }
    /// Multiplies in `precision` whatever the model's policy (Keras's
    /// `Dense(..., dtype="mixed_bfloat16")`).
    pub fn dtype(mut self, precision: Precision) -> Self {
        self.dtype = Some(precision);
        self
    }

    fn pre_activation(&self, x: &Tensor) -> Result<Tensor> {
        let name = &self.base.name;
        let kernel = self.kernel.as_ref().ok_or_else(|| not_built(name))?;
        let in_features = kernel.shape()[0];
        if x.rank() < 2 || x.shape()[x.rank() - 1] != in_features {
            return Err(NnError::shape(
                name,
                "Dense",
                format!("(None, ..., {in_features})"),
                x.shape().get(1..).unwrap_or(&[]),
            ));
        }
        let precision = self.dtype.unwrap_or(self.model_precision);
        let mut y = x.matmul_in(&kernel.value, precision).in_layer(name)?;
        if let Some(b) = &self.bias {
            y = y.add(&b.value).in_layer(name)?;
        }
        Ok(y)
    }
}

pub(crate) fn not_built(name: &str) -> NnError {
    NnError::config(name, "build", "the layer is used before it was built")
}

impl Layer for Dense {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "Dense"
    }

    fn build(&mut self, inputs: &[Vec<usize>], rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        let s = &inputs[0];
        let Some(&in_features) = s.last() else {
            return Err(NnError::shape(
                &self.base.name,
                "Dense",
                "(None, ..., features)",
                s,
            ));
        };
        if self.units == 0 {
            return Err(NnError::config(
                &self.base.name,
                "units",
                "must be at least 1",
            ));
        }
        match &self.kernel {
            Some(k) if k.shape()[0] != in_features => {
                return Err(NnError::shape(
                    &self.base.name,
                    "Dense",
                    format!("(None, ..., {})", k.shape()[0]),
                    s,
                ))
            }
            Some(_) => {}
            None => {
                let k = self
                    .kernel_initializer
                    .init(&[in_features, self.units], rng);
                self.kernel = Some(Weight::new("kernel", k, self.base.trainable));
                if self.use_bias {
                    let b = self.bias_initializer.init(&[self.units], rng);
                    self.bias = Some(Weight::new("bias", b, self.base.trainable));
                }
            }
        }
        let mut out = s.clone();
        *out.last_mut().unwrap_or(&mut 0) = self.units;
        Ok(out)
    }

    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        let z = self.pre_activation(&inputs[0])?;
        self.activation.apply(&z).in_layer(&self.base.name)
    }

    fn forward_logits(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Option<Result<Tensor>> {
        if self.activation != Activation::Softmax || inputs.len() != 1 {
            return None;
        }
        Some(self.pre_activation(&inputs[0]))
    }

    fn set_model_precision(&mut self, precision: Precision) {
        self.model_precision = precision;
    }
    fn precision(&self) -> Option<Precision> {
        Some(self.dtype.unwrap_or(self.model_precision))
    }
    fn weights(&self) -> Vec<&Weight> {
        self.kernel.iter().chain(self.bias.iter()).collect()
    }
    fn weights_mut(&mut self) -> Vec<&mut Weight> {
        self.kernel.iter_mut().chain(self.bias.iter_mut()).collect()
    }

    fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("units".into(), self.units.into());
        m.insert("activation".into(), self.activation.name().into());
        m.insert("use_bias".into(), self.use_bias.into());
        m.insert(
            "kernel_initializer".into(),
            self.kernel_initializer.name().into(),
        );
        if let Some(p) = self.dtype {
            m.insert("dtype".into(), p.as_str().into());
        }
        m
    }

    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_dense(self, inputs, output)
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
    fn applies_to_the_last_axis_of_any_rank() {
        let mut d = Dense::new(4).named("dense");
        assert_eq!(build(&mut d, &[&[512, 768]]).unwrap(), vec![512, 4]);
        assert_eq!(d.weights()[0].shape(), &[768, 4]);
        assert_eq!(d.param_count(), 768 * 4 + 4);
        let y = run(&mut d, &[Tensor::zeros(&[2, 512, 768])], false).unwrap();
        assert_eq!(y.shape(), &[2, 512, 4]);
    }

    #[test]
    fn rejects_a_wrong_feature_count_naming_the_layer() {
        let mut d = Dense::new(3).named("head");
        build(&mut d, &[&[2048]]).unwrap();
        let e = build(&mut d, &[&[1000]]).unwrap_err().to_string();
        assert_eq!(
            e,
            "layer 'head' (Dense): expected input (None, ..., 2048), found (None, 1000)"
        );
        let e = run(&mut d, &[Tensor::zeros(&[1, 7])], false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected input (None, ..., 2048), found (None, 7)"),
            "{e}"
        );
    }

    #[test]
    fn gradient_check_through_the_layer() {
        let mut d = Dense::new(3).activation(Activation::Tanh).named("d");
        build(&mut d, &[&[2, 4]]).unwrap();
        let x = Tensor::rand_normal(&[2, 2, 4], 0.0, 1.0, &mut Rng::new(2));
        check_layer_gradients(&mut d, &[x], true);
    }
}
