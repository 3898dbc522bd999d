//! Dropout: in training, zero each value with probability `rate` and scale the
//! rest by 1/(1 - rate) (seeded mask); the identity at inference.

use serde_json::{Map, Value};
use strata_core::{Rng, Tensor};

use std::sync::Arc;

use super::{expect_inputs, Ctx, Layer, LayerBase};
use crate::distributed::{keyed_dropout_mask, LayerDistribution};
use crate::error::{InLayer, NnError, Result};

pub struct Dropout {
    base: LayerBase,
    pub rate: f32,
    /// In a data-parallel run: masks keyed by each sample, not drawn from
    /// the model's generator, so they do not depend on the number of ranks.
    distribution: Option<Arc<LayerDistribution>>,
}

impl Dropout {
    pub fn new(rate: f32) -> Self {
        Dropout {
            base: LayerBase::new(None),
            rate,
            distribution: None,
        }
    }
}

impl Layer for Dropout {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "Dropout"
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        if !(0.0..1.0).contains(&self.rate) {
            return Err(NnError::config(
                &self.base.name,
                "rate",
                format!("must be in [0, 1), found {}", self.rate),
            ));
        }
        Ok(inputs[0].clone())
    }
    fn forward(&mut self, inputs: &[Tensor], ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        if !ctx.training {
            return Ok(inputs[0].clone());
        }
        if let Some(d) = &self.distribution {
            let x = &inputs[0];
            if self.rate == 0.0 {
                return Ok(x.clone());
            }
            let keys = d.keys();
            let rows = x.shape().first().copied().unwrap_or(0);
            if keys.len() != rows {
                return Err(NnError::Training(format!(
                    "layer '{}': {rows} rows but {} sample keys",
                    self.base.name,
                    keys.len()
                )));
            }
            let row = x.numel() / rows.max(1);
            let mask = keyed_dropout_mask(&keys, row, self.rate, &self.base.name);
            let mask = Tensor::from_vec(mask, x.shape()).in_layer(&self.base.name)?;
            return x.mul(&mask).in_layer(&self.base.name);
        }
        inputs[0]
            .dropout(self.rate, ctx.rng)
            .in_layer(&self.base.name)
    }
    fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("rate".into(), self.rate.into());
        m
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_dropout(self.rate, inputs, output)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn set_distribution(&mut self, d: Option<Arc<LayerDistribution>>) {
        self.distribution = d;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{build, run};
    use super::*;

    #[test]
    fn identity_at_inference_scaled_in_training() {
        let mut d = Dropout::new(0.5);
        build(&mut d, &[&[1000]]).unwrap();
        let x = Tensor::ones(&[1, 1000]);
        assert_eq!(
            run(&mut d, std::slice::from_ref(&x), false)
                .unwrap()
                .to_vec(),
            x.to_vec()
        );
        let y = run(&mut d, &[x], true).unwrap().to_vec();
        assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
        let kept = y.iter().filter(|&&v| v == 2.0).count();
        assert!((400..600).contains(&kept), "{kept}");
        assert!(build(&mut Dropout::new(1.0), &[&[3]]).is_err());
    }
}
