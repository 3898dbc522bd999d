//! ZeroPadding2D: zeros around the height and width of NHWC maps.

use serde_json::{Map, Value};
use strata_core::{Rng, Tensor};

use super::{expect_inputs, Ctx, Layer, LayerBase};
use crate::error::{InLayer, NnError, Result};

pub struct ZeroPadding2D {
    base: LayerBase,
    /// ((top, bottom), (left, right))
    pub padding: ((usize, usize), (usize, usize)),
}

impl ZeroPadding2D {
    pub fn new(padding: ((usize, usize), (usize, usize))) -> Self {
        ZeroPadding2D {
            base: LayerBase::new(None),
            padding,
        }
    }
    pub fn symmetric(p: usize) -> Self {
        ZeroPadding2D::new(((p, p), (p, p)))
    }
}

impl Layer for ZeroPadding2D {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "ZeroPadding2D"
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        let s = &inputs[0];
        if s.len() != 3 {
            return Err(NnError::shape(
                &self.base.name,
                "ZeroPadding2D",
                "(None, H, W, C)",
                s,
            ));
        }
        let ((t, b), (l, r)) = self.padding;
        Ok(vec![s[0] + t + b, s[1] + l + r, s[2]])
    }
    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        let ((t, b), (l, r)) = self.padding;
        inputs[0]
            .pad(&[(0, 0), (t, b), (l, r), (0, 0)], 0.0)
            .in_layer(&self.base.name)
    }
    fn config(&self) -> Map<String, Value> {
        let ((t, b), (l, r)) = self.padding;
        let mut m = Map::new();
        m.insert("padding".into(), Value::from(vec![vec![t, b], vec![l, r]]));
        m
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_zero_padding(self.padding, inputs, output)
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
    fn pads_height_and_width() {
        let mut l = ZeroPadding2D::new(((1, 2), (0, 1)));
        assert_eq!(build(&mut l, &[&[3, 3, 2]]).unwrap(), vec![6, 4, 2]);
        assert!(build(&mut l, &[&[3, 2]]).is_err());
        let x = Tensor::rand_normal(&[1, 2, 2, 1], 0.0, 1.0, &mut Rng::new(1));
        assert_eq!(
            run(&mut l, std::slice::from_ref(&x), false)
                .unwrap()
                .shape(),
            &[1, 5, 3, 1]
        );
        check_layer_gradients(&mut l, &[x], false);
    }
}
