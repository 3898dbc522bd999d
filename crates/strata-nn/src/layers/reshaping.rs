//! Flatten and Reshape: the same values, a new per-sample shape.

use serde_json::{Map, Value};
use strata_core::{Rng, Tensor};

use super::{expect_inputs, Ctx, Layer, LayerBase};
use crate::error::{InLayer, NnError, Result};

/// `(None, d1, d2, ...) -> (None, d1*d2*...)`.
pub struct Flatten {
    base: LayerBase,
}

impl Flatten {
    pub fn new() -> Self {
        Flatten {
            base: LayerBase::new(None),
        }
    }
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten::new()
    }
}

impl Layer for Flatten {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "Flatten"
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        Ok(vec![inputs[0].iter().product()])
    }
    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        inputs[0].flatten_batch().in_layer(&self.base.name)
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_flatten(inputs, output)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Reshapes each sample to `target_shape` (one entry may be -1, inferred).
pub struct Reshape {
    base: LayerBase,
    pub target_shape: Vec<isize>,
    resolved: Vec<usize>,
}

impl Reshape {
    pub fn new(target_shape: &[isize]) -> Self {
        Reshape {
            base: LayerBase::new(None),
            target_shape: target_shape.to_vec(),
            resolved: Vec::new(),
        }
    }
    pub fn named(mut self, name: &str) -> Self {
        self.base.name = name.to_string();
        self
    }
}

impl Layer for Reshape {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "Reshape"
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        let n: usize = inputs[0].iter().product();
        let unknown = self.target_shape.iter().filter(|&&d| d == -1).count();
        let bad = self.target_shape.iter().any(|&d| d == 0 || d < -1) || unknown > 1;
        let known: usize = self
            .target_shape
            .iter()
            .filter(|&&d| d > 0)
            .map(|&d| d as usize)
            .product();
        let err = || {
            NnError::shape(
                &self.base.name,
                "Reshape",
                format!(
                    "{} elements per sample to fit target_shape {:?}",
                    known, self.target_shape
                ),
                &inputs[0],
            )
        };
        if bad {
            return Err(NnError::config(
                &self.base.name,
                "target_shape",
                format!(
                    "{:?}: sizes must be positive, with at most one -1",
                    self.target_shape
                ),
            ));
        }
        let resolved: Vec<usize> = if unknown == 1 {
            if known == 0 || !n.is_multiple_of(known) {
                return Err(err());
            }
            self.target_shape
                .iter()
                .map(|&d| if d == -1 { n / known } else { d as usize })
                .collect()
        } else {
            if known != n {
                return Err(err());
            }
            self.target_shape.iter().map(|&d| d as usize).collect()
        };
        self.resolved = resolved.clone();
        Ok(resolved)
    }
    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        let x = &inputs[0];
        let mut shape = vec![x.shape().first().copied().unwrap_or(1)];
        shape.extend_from_slice(&self.resolved);
        x.reshape(&shape).map_err(|_| {
            NnError::shape(
                &self.base.name,
                "Reshape",
                format!(
                    "a sample of {} elements",
                    self.resolved.iter().product::<usize>()
                ),
                x.shape().get(1..).unwrap_or(&[]),
            )
        })
    }
    fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "target_shape".into(),
            Value::from(self.target_shape.clone()),
        );
        m
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_reshape(&self.target_shape, inputs, output)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::build;
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            build(&mut Flatten::new(), &[&[5, 5, 64]]).unwrap(),
            vec![1600]
        );
        assert_eq!(
            build(&mut Reshape::new(&[512]), &[&[512, 1]]).unwrap(),
            vec![512]
        );
        assert_eq!(
            build(&mut Reshape::new(&[-1, 4]), &[&[2, 6]]).unwrap(),
            vec![3, 4]
        );
        let e = build(&mut Reshape::new(&[5]), &[&[2, 3]])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(Reshape)") && e.contains("found (None, 2, 3)"),
            "{e}"
        );
        assert!(build(&mut Reshape::new(&[-1, -1]), &[&[4]]).is_err());
    }
}
