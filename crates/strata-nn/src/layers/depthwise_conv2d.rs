//! DepthwiseConv2D: one `kh x kw` kernel per input channel (times
//! `depth_multiplier`), the per-channel convolution. Kernel `(kh, kw, C, multiplier)`.

use serde_json::{Map, Value};
use strata_core::ops::Padding;
use strata_core::{Rng, Tensor};

use super::conv2d::{padding_json, window_output};
use super::dense::not_built;
use super::{expect_inputs, pair_json, Ctx, Layer, LayerBase};
use crate::activations::Activation;
use crate::error::{InLayer, NnError, Result};
use crate::initializers::Initializer;
use crate::weight::Weight;

pub struct DepthwiseConv2D {
    base: LayerBase,
    pub kernel_size: (usize, usize),
    pub depth_multiplier: usize,
    pub strides: (usize, usize),
    pub padding: Padding,
    pub dilation_rate: (usize, usize),
    pub activation: Activation,
    pub use_bias: bool,
    pub kernel_initializer: Initializer,
    kernel: Option<Weight>,
    bias: Option<Weight>,
}

impl DepthwiseConv2D {
    pub fn new(kernel_size: (usize, usize)) -> Self {
        DepthwiseConv2D {
            base: LayerBase::new(None),
            kernel_size,
            depth_multiplier: 1,
            strides: (1, 1),
            padding: Padding::Valid,
            dilation_rate: (1, 1),
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            kernel: None,
            bias: None,
        }
    }
    pub fn named(mut self, name: &str) -> Self {
        self.base.name = name.to_string();
        self
    }
    pub fn depth_multiplier(mut self, m: usize) -> Self {
        self.depth_multiplier = m;
        self
    }
}

impl Layer for DepthwiseConv2D {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "DepthwiseConv2D"
    }
    fn build(&mut self, inputs: &[Vec<usize>], rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        let name = self.base.name.clone();
        let s = &inputs[0];
        if self.depth_multiplier == 0 {
            return Err(NnError::config(
                &name,
                "depth_multiplier",
                "must be at least 1",
            ));
        }
        if (self.strides.0 > 1 || self.strides.1 > 1)
            && (self.dilation_rate.0 > 1 || self.dilation_rate.1 > 1)
        {
            return Err(NnError::config(
                &name,
                "dilation_rate",
                "dilation_rate > 1 cannot be combined with strides > 1 (as in Keras)",
            ));
        }
        let (oh, ow) = window_output(
            &name,
            "DepthwiseConv2D",
            s,
            self.kernel_size,
            self.strides,
            self.padding,
            self.dilation_rate,
        )?;
        let c = s[2];
        let kshape = [
            self.kernel_size.0,
            self.kernel_size.1,
            c,
            self.depth_multiplier,
        ];
        match &self.kernel {
            Some(k) if k.shape() != kshape => {
                return Err(NnError::shape(
                    &name,
                    "DepthwiseConv2D",
                    format!("(None, H, W, {})", k.shape()[2]),
                    s,
                ));
            }
            Some(_) => {}
            None => {
                self.kernel = Some(Weight::new(
                    "depthwise_kernel",
                    self.kernel_initializer.init(&kshape, rng),
                    self.base.trainable,
                ));
                if self.use_bias {
                    self.bias = Some(Weight::new(
                        "bias",
                        Tensor::zeros(&[c * self.depth_multiplier]),
                        self.base.trainable,
                    ));
                }
            }
        }
        Ok(vec![oh, ow, c * self.depth_multiplier])
    }
    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        let name = &self.base.name;
        let k = self.kernel.as_ref().ok_or_else(|| not_built(name))?;
        let x = &inputs[0];
        if x.rank() != 4 || x.shape()[3] != k.shape()[2] {
            return Err(NnError::shape(
                name,
                "DepthwiseConv2D",
                format!("(None, H, W, {})", k.shape()[2]),
                x.shape().get(1..).unwrap_or(&[]),
            ));
        }
        let z = x
            .depthwise_conv2d(
                &k.value,
                self.bias.as_ref().map(|b| &b.value),
                self.strides,
                self.padding,
                self.dilation_rate,
            )
            .in_layer(name)?;
        self.activation.apply(&z).in_layer(name)
    }
    fn weights(&self) -> Vec<&Weight> {
        self.kernel.iter().chain(self.bias.iter()).collect()
    }
    fn weights_mut(&mut self) -> Vec<&mut Weight> {
        self.kernel.iter_mut().chain(self.bias.iter_mut()).collect()
    }
    fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("kernel_size".into(), pair_json(self.kernel_size));
        m.insert("depth_multiplier".into(), self.depth_multiplier.into());
        m.insert("strides".into(), pair_json(self.strides));
        m.insert("padding".into(), padding_json(self.padding));
        m.insert("dilation_rate".into(), pair_json(self.dilation_rate));
        m.insert("activation".into(), self.activation.name().into());
        m.insert("use_bias".into(), self.use_bias.into());
        m
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_depthwise(self, inputs, output)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{build, check_layer_gradients};
    use super::*;

    #[test]
    fn per_channel_kernel_shapes_and_gradients() {
        let mut d = DepthwiseConv2D::new((3, 3)).depth_multiplier(2);
        assert_eq!(build(&mut d, &[&[6, 6, 3]]).unwrap(), vec![4, 4, 6]);
        assert_eq!(d.weights()[0].shape(), &[3, 3, 3, 2]);
        assert_eq!(d.weights()[0].name, "depthwise_kernel");
        assert_eq!(d.param_count(), 3 * 3 * 3 * 2 + 6);
        let x = Tensor::rand_normal(&[1, 6, 6, 3], 0.0, 1.0, &mut Rng::new(2));
        check_layer_gradients(&mut d, &[x], true);
    }
}
