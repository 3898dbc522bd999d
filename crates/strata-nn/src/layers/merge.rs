//! Merging layers: Concatenate(axis), Add, Multiply.

use serde_json::{Map, Value};
use strata_core::{Rng, Tensor};

use super::{Ctx, Layer, LayerBase};
use crate::error::{batch_shape, InLayer, NnError, Result};

fn at_least_two(layer: &dyn Layer, n: usize) -> Result<()> {
    if n < 2 {
        return Err(NnError::config(
            layer.name(),
            "inputs",
            format!("{} merges at least 2 inputs, found {n}", layer.class_name()),
        ));
    }
    Ok(())
}

/// Joins its inputs along `axis` (default -1, the channels).
pub struct Concatenate {
    base: LayerBase,
    pub axis: isize,
}

impl Concatenate {
    pub fn new(axis: isize) -> Self {
        Concatenate {
            base: LayerBase::new(None),
            axis,
        }
    }
}

impl Layer for Concatenate {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "Concatenate"
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        at_least_two(self, inputs.len())?;
        let rank = inputs[0].len() + 1;
        let a = if self.axis < 0 {
            self.axis + rank as isize
        } else {
            self.axis
        };
        if a <= 0 || a >= rank as isize {
            return Err(NnError::config(
                &self.base.name,
                "axis",
                format!(
                    "{} is not a feature axis of {}",
                    self.axis,
                    batch_shape(&inputs[0])
                ),
            ));
        }
        let a = a as usize - 1;
        let mut out = inputs[0].clone();
        for s in &inputs[1..] {
            let fits = s.len() == out.len()
                && s.iter()
                    .zip(&inputs[0])
                    .enumerate()
                    .all(|(i, (x, y))| i == a || x == y);
            if !fits {
                return Err(NnError::shape(
                    &self.base.name,
                    "Concatenate",
                    format!(
                        "shapes equal to {} except on axis {}",
                        batch_shape(&inputs[0]),
                        self.axis
                    ),
                    s,
                ));
            }
            out[a] += s[a];
        }
        Ok(out)
    }
    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        at_least_two(self, inputs.len())?;
        Tensor::concat(inputs, self.axis).in_layer(&self.base.name)
    }
    fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("axis".into(), self.axis.into());
        m
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_concatenate(self.axis, inputs, output)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

macro_rules! elementwise_merge {
    ($ty:ident, $class:literal, $method:ident, $sum:literal, $doc:literal) => {
        #[doc = $doc]
        pub struct $ty {
            base: LayerBase,
        }

        impl $ty {
            pub fn new() -> Self {
                $ty {
                    base: LayerBase::new(None),
                }
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                $ty::new()
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
                at_least_two(self, inputs.len())?;
                for s in &inputs[1..] {
                    if s != &inputs[0] {
                        return Err(NnError::shape(
                            &self.base.name,
                            $class,
                            format!("inputs of the same shape as {}", batch_shape(&inputs[0])),
                            s,
                        ));
                    }
                }
                Ok(inputs[0].clone())
            }
            fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
                at_least_two(self, inputs.len())?;
                let mut y = inputs[0].clone();
                for x in &inputs[1..] {
                    y = y.$method(x).in_layer(&self.base.name)?;
                }
                Ok(y)
            }
            fn describe(
                &self,
                inputs: &[Vec<usize>],
                output: &[usize],
            ) -> crate::explain::Description {
                crate::explain::describe_merge($sum, inputs, output)
            }
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
        }
    };
}

elementwise_merge!(
    Add,
    "Add",
    add,
    true,
    "Element-wise sum of same-shape inputs (residual connections)."
);
elementwise_merge!(
    Multiply,
    "Multiply",
    mul,
    false,
    "Element-wise product of same-shape inputs."
);

#[cfg(test)]
mod tests {
    use super::super::testing::{build, check_layer_gradients, run};
    use super::*;

    #[test]
    fn concatenate_channels() {
        let mut l = Concatenate::new(-1);
        assert_eq!(
            build(&mut l, &[&[4, 4, 2], &[4, 4, 3]]).unwrap(),
            vec![4, 4, 5]
        );
        assert!(build(&mut l, &[&[4, 4, 2], &[4, 5, 3]]).is_err());
        assert!(build(&mut Concatenate::new(0), &[&[2], &[2]]).is_err());
        let mut r = Rng::new(1);
        let a = Tensor::rand_normal(&[2, 3], 0.0, 1.0, &mut r);
        let b = Tensor::rand_normal(&[2, 2], 0.0, 1.0, &mut r);
        let mut l = Concatenate::new(1);
        build(&mut l, &[&[3], &[2]]).unwrap();
        assert_eq!(
            run(&mut l, &[a.clone(), b.clone()], false).unwrap().shape(),
            &[2, 5]
        );
        check_layer_gradients(&mut l, &[a, b], false);
    }

    #[test]
    fn add_and_multiply() {
        let mut add = Add::new();
        build(&mut add, &[&[2], &[2], &[2]]).unwrap();
        let t = Tensor::from_vec(vec![1.0, 2.0], &[1, 2]).unwrap();
        let y = run(&mut add, &[t.clone(), t.clone(), t.clone()], false).unwrap();
        assert_eq!(y.to_vec(), vec![3.0, 6.0]);
        let mut mul = Multiply::new();
        build(&mut mul, &[&[2], &[2]]).unwrap();
        assert_eq!(
            run(&mut mul, &[t.clone(), t.clone()], false)
                .unwrap()
                .to_vec(),
            vec![1.0, 4.0]
        );
        assert!(build(&mut Add::new(), &[&[2]]).is_err());
        assert!(build(&mut Add::new(), &[&[2], &[3]]).is_err());
        let mut r = Rng::new(2);
        let a = Tensor::rand_normal(&[2, 3], 0.0, 1.0, &mut r);
        let b = Tensor::rand_normal(&[2, 3], 0.0, 1.0, &mut r);
        check_layer_gradients(&mut mul, &[a, b], false);
    }
}
