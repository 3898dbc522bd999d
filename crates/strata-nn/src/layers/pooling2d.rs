//! MaxPooling2D and AveragePooling2D with Keras semantics: strides default to
//! the pool size; "same" pads with -inf for max and averages only real cells.

use serde_json::{Map, Value};
use strata_core::ops::Padding;
use strata_core::{Rng, Tensor};

use super::conv2d::{padding_json, window_output};
use super::{expect_inputs, pair_json, Ctx, Layer, LayerBase};
use crate::error::{InLayer, NnError, Result};

macro_rules! pooling_layer {
    ($ty:ident, $class:literal, $op:ident, $doc:literal) => {
        #[doc = $doc]
        pub struct $ty {
            base: LayerBase,
            pub pool_size: (usize, usize),
            pub strides: (usize, usize),
            pub padding: Padding,
        }

        impl $ty {
            /// `strides` default to `pool_size`; padding "valid" or "same".
            pub fn new(
                pool_size: (usize, usize),
                strides: Option<(usize, usize)>,
                padding: &str,
            ) -> Self {
                $ty {
                    base: LayerBase::new(None),
                    pool_size,
                    strides: strides.unwrap_or(pool_size),
                    padding: if padding == "same" {
                        Padding::Same
                    } else {
                        Padding::Valid
                    },
                }
            }
            pub fn with_padding(mut self, p: Padding) -> Self {
                self.padding = p;
                self
            }
            pub fn named(mut self, name: &str) -> Self {
                self.base.name = name.to_string();
                self
            }
        }

        impl Layer for $ty {
            fn base(&self) -> &LayerBase {
                &self.base
            }
            fn base_mut(&mut self) -> &mut LayerBase {
                &mut self.base
            }
            fn class_name(&self) -> &'static str {
                $class
            }
            fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
                expect_inputs(self, inputs.len(), 1)?;
                if self.pool_size.0 == 0
                    || self.pool_size.1 == 0
                    || self.strides.0 == 0
                    || self.strides.1 == 0
                {
                    return Err(NnError::config(
                        &self.base.name,
                        "pool_size/strides",
                        "must be positive",
                    ));
                }
                if let Padding::Explicit {
                    top,
                    bottom,
                    left,
                    right,
                } = self.padding
                {
                    // a window made only of padding has nothing to pool
                    if top.max(bottom) >= self.pool_size.0 || left.max(right) >= self.pool_size.1 {
                        return Err(NnError::config(
                            &self.base.name,
                            "padding",
                            format!(
                                "explicit padding [[{top}, {bottom}], [{left}, {right}]] must be smaller than the pool size ({}, {})",
                                self.pool_size.0, self.pool_size.1
                            ),
                        ));
                    }
                }
                let (oh, ow) = window_output(
                    &self.base.name,
                    $class,
                    &inputs[0],
                    self.pool_size,
                    self.strides,
                    self.padding,
                    (1, 1),
                )?;
                Ok(vec![oh, ow, inputs[0][2]])
            }
            fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
                expect_inputs(self, inputs.len(), 1)?;
                inputs[0]
                    .$op(self.pool_size, self.strides, self.padding)
                    .in_layer(&self.base.name)
            }
            fn config(&self) -> Map<String, Value> {
                let mut m = Map::new();
                m.insert("pool_size".into(), pair_json(self.pool_size));
                m.insert("strides".into(), pair_json(self.strides));
                m.insert("padding".into(), padding_json(self.padding));
                m
            }
            fn describe(
                &self,
                inputs: &[Vec<usize>],
                output: &[usize],
            ) -> crate::explain::Description {
                crate::explain::describe_pooling(
                    $class,
                    crate::explain::Window {
                        kernel: self.pool_size,
                        strides: self.strides,
                        padding: self.padding,
                        dilation: (1, 1),
                    },
                    inputs,
                    output,
                )
            }
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
        }
    };
}

pooling_layer!(
    MaxPooling2D,
    "MaxPooling2D",
    max_pool2d,
    "The largest value of each window, per channel."
);
pooling_layer!(
    AveragePooling2D,
    "AveragePooling2D",
    avg_pool2d,
    "The mean of each window, per channel."
);

#[cfg(test)]
mod tests {
    use super::super::testing::{build, check_layer_gradients};
    use super::*;

    #[test]
    fn shapes_and_gradients() {
        let mut m = MaxPooling2D::new((2, 2), None, "valid");
        assert_eq!(build(&mut m, &[&[5, 5, 3]]).unwrap(), vec![2, 2, 3]);
        let mut a = AveragePooling2D::new((3, 3), Some((2, 2)), "same");
        assert_eq!(build(&mut a, &[&[9, 8, 3]]).unwrap(), vec![5, 4, 3]);
        let x = Tensor::rand_normal(&[1, 5, 4, 2], 0.0, 1.0, &mut Rng::new(3));
        build(&mut a, &[&[5, 4, 2]]).unwrap();
        check_layer_gradients(&mut a, &[x], false);
        assert!(build(&mut MaxPooling2D::new((3, 3), None, "valid"), &[&[2, 2, 1]]).is_err());
    }
}
