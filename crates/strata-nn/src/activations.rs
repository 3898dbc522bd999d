//! Activation functions by Keras name. Softmax is over the last axis.

use strata_core::Tensor;

use crate::error::{NnError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
    LogSoftmax,
    Gelu,
    Silu,
    Softplus,
}

impl Activation {
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "linear" | "none" => Activation::Linear,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "softmax" => Activation::Softmax,
            "log_softmax" => Activation::LogSoftmax,
            "gelu" => Activation::Gelu,
            "silu" | "swish" => Activation::Silu,
            "softplus" => Activation::Softplus,
            other => {
                return Err(NnError::config(
                    "-",
                    "activation",
                    format!("unknown activation '{other}' (linear, relu, sigmoid, tanh, softmax, log_softmax, gelu, silu, softplus)"),
                ))
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
            Activation::LogSoftmax => "log_softmax",
            Activation::Gelu => "gelu",
            Activation::Silu => "silu",
            Activation::Softplus => "softplus",
        }
    }

    /// Applies the activation (softmax and log_softmax over the last axis).
    pub fn apply(&self, x: &Tensor) -> strata_core::Result<Tensor> {
        Ok(match self {
            Activation::Linear => x.clone(),
            Activation::Relu => x.relu(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Softmax => x.softmax(-1)?,
            Activation::LogSoftmax => x.log_softmax(-1)?,
            Activation::Gelu => x.gelu(),
            Activation::Silu => x.mul(&x.sigmoid())?,
            // log(1 + e^x) = relu(x) + log(1 + e^-|x|), stable for large |x|
            Activation::Softplus => x.relu().add(&x.abs().neg().exp().add_scalar(1.0).log())?,
        })
    }

    /// The formula, for explanations and summaries.
    pub fn formula(&self) -> &'static str {
        match self {
            Activation::Linear => "z",
            Activation::Relu => "max(z, 0)",
            Activation::Sigmoid => "1 / (1 + exp(-z))",
            Activation::Tanh => "tanh(z)",
            Activation::Softmax => "exp(z_i) / sum_j exp(z_j)",
            Activation::LogSoftmax => "z_i - log(sum_j exp(z_j))",
            Activation::Gelu => "z * Phi(z)",
            Activation::Silu => "z * sigmoid(z)",
            Activation::Softplus => "log(1 + exp(z))",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::gradcheck::check_gradients;
    use strata_core::Rng;

    #[test]
    fn every_activation_has_a_correct_gradient() {
        let x = Tensor::rand_normal(&[3, 4], 0.0, 1.5, &mut Rng::new(3));
        let x = Tensor::from_vec(
            x.to_vec().iter().map(|v| v + 0.05 * v.signum()).collect(),
            &[3, 4],
        )
        .unwrap();
        for a in [
            Activation::Linear,
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Softmax,
            Activation::LogSoftmax,
            Activation::Gelu,
            Activation::Silu,
            Activation::Softplus,
        ] {
            assert_eq!(Activation::from_name(a.name()).unwrap(), a);
            check_gradients(std::slice::from_ref(&x), |t| a.apply(&t[0]));
        }
    }

    #[test]
    fn softplus_is_stable() {
        let x = Tensor::from_vec(vec![-100.0, 0.0, 100.0], &[3]).unwrap();
        let y = Activation::Softplus.apply(&x).unwrap().to_vec();
        assert!(y[0] >= 0.0 && y[0] < 1e-30);
        assert!((y[1] - 2f32.ln()).abs() < 1e-6);
        assert_eq!(y[2], 100.0);
    }
}
