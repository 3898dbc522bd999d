//! GlobalAveragePooling2D (the mean over height and width, per channel) and
//! GlobalMaxPooling2D: (None, H, W, C) -> (None, C).

use serde_json::{Map, Value};
use strata_core::{Rng, Tensor};

use super::{expect_inputs, Ctx, Layer, LayerBase};
use crate::error::{InLayer, NnError, Result};

fn pooled_shape(layer: &str, class: &str, s: &[usize], keepdims: bool) -> Result<Vec<usize>> {
    if s.len() != 3 {
        return Err(NnError::shape(layer, class, "(None, H, W, C)", s));
    }
    Ok(if keepdims {
        vec![1, 1, s[2]]
    } else {
        vec![s[2]]
    })
}

pub struct GlobalAveragePooling2D {
    base: LayerBase,
    pub keepdims: bool,
}

impl GlobalAveragePooling2D {
    pub fn new(keepdims: bool) -> Self {
        GlobalAveragePooling2D {
            base: LayerBase::new(None),
            keepdims,
        }
    }
    pub fn named(mut self, name: &str) -> Self {
        self.base.name = name.to_string();
        self
    }
}

impl Layer for GlobalAveragePooling2D {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "GlobalAveragePooling2D"
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        pooled_shape(
            &self.base.name,
            "GlobalAveragePooling2D",
            &inputs[0],
            self.keepdims,
        )
    }
    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        inputs[0]
            .global_avg_pool2d(self.keepdims)
            .in_layer(&self.base.name)
    }
    fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("keepdims".into(), self.keepdims.into());
        m
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_global_pooling(false, self.keepdims, inputs, output)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

pub struct GlobalMaxPooling2D {
    base: LayerBase,
    pub keepdims: bool,
}

impl GlobalMaxPooling2D {
    pub fn new(keepdims: bool) -> Self {
        GlobalMaxPooling2D {
            base: LayerBase::new(None),
            keepdims,
        }
    }
}

impl Layer for GlobalMaxPooling2D {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "GlobalMaxPooling2D"
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        pooled_shape(
            &self.base.name,
            "GlobalMaxPooling2D",
            &inputs[0],
            self.keepdims,
        )
    }
    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        let x = &inputs[0];
        let name = &self.base.name;
        let s = x.shape().to_vec();
        if s.len() != 4 {
            return Err(NnError::shape(
                name,
                "GlobalMaxPooling2D",
                "(None, H, W, C)",
                s.get(1..).unwrap_or(&[]),
            ));
        }
        let y = x
            .reshape(&[s[0], s[1] * s[2], s[3]])
            .in_layer(name)?
            .max(1, false)
            .in_layer(name)?;
        if self.keepdims {
            y.reshape(&[s[0], 1, 1, s[3]]).in_layer(name)
        } else {
            Ok(y)
        }
    }
    fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("keepdims".into(), self.keepdims.into());
        m
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_global_pooling(true, self.keepdims, inputs, output)
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
    fn mean_over_height_and_width() {
        let mut g = GlobalAveragePooling2D::new(false);
        assert_eq!(build(&mut g, &[&[7, 7, 2048]]).unwrap(), vec![2048]);
        assert_eq!(
            build(&mut GlobalAveragePooling2D::new(true), &[&[7, 7, 5]]).unwrap(),
            vec![1, 1, 5]
        );
        assert!(build(&mut g, &[&[7, 2048]]).is_err());
        let x = Tensor::from_vec(vec![1., 10., 2., 20., 3., 30., 4., 40.], &[1, 2, 2, 2]).unwrap();
        assert_eq!(
            run(&mut g, std::slice::from_ref(&x), false)
                .unwrap()
                .to_vec(),
            vec![2.5, 25.0]
        );
        let mut m = GlobalMaxPooling2D::new(false);
        build(&mut m, &[&[2, 2, 2]]).unwrap();
        assert_eq!(run(&mut m, &[x], false).unwrap().to_vec(), vec![4.0, 40.0]);
        let r = Tensor::rand_normal(&[2, 3, 2, 2], 0.0, 1.0, &mut Rng::new(1));
        check_layer_gradients(&mut g, std::slice::from_ref(&r), false);
        check_layer_gradients(&mut m, &[r], false);
    }
}
