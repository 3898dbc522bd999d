//! Keras initialisers, by Keras name, with Keras's fan computation.
//!
//! For a kernel of shape (..., fan_in, fan_out) the receptive field is the
//! product of the leading axes: a Conv2D kernel (3, 3, 8, 16) has
//! fan_in = 3*3*8 and fan_out = 3*3*16.

use strata_core::{Rng, Tensor};

use crate::error::{NnError, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Initializer {
    GlorotUniform,
    GlorotNormal,
    HeUniform,
    HeNormal,
    LecunUniform,
    LecunNormal,
    RandomUniform { minval: f32, maxval: f32 },
    RandomNormal { mean: f32, stddev: f32 },
    TruncatedNormal { mean: f32, stddev: f32 },
    Zeros,
    Ones,
    Constant(f32),
}

/// (fan_in, fan_out) as Keras computes them.
pub fn fans(shape: &[usize]) -> (f32, f32) {
    match shape.len() {
        0 => (1.0, 1.0),
        1 => (shape[0] as f32, shape[0] as f32),
        n => {
            let rf: usize = shape[..n - 2].iter().product();
            ((shape[n - 2] * rf) as f32, (shape[n - 1] * rf) as f32)
        }
    }
}

impl Initializer {
    /// Parses a Keras initialiser name (`"glorot_uniform"`, `"he_normal"`, ...).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "glorot_uniform" => Initializer::GlorotUniform,
            "glorot_normal" => Initializer::GlorotNormal,
            "he_uniform" => Initializer::HeUniform,
            "he_normal" => Initializer::HeNormal,
            "lecun_uniform" => Initializer::LecunUniform,
            "lecun_normal" => Initializer::LecunNormal,
            "random_uniform" => Initializer::RandomUniform {
                minval: -0.05,
                maxval: 0.05,
            },
            "random_normal" => Initializer::RandomNormal {
                mean: 0.0,
                stddev: 0.05,
            },
            "truncated_normal" => Initializer::TruncatedNormal {
                mean: 0.0,
                stddev: 0.05,
            },
            "zeros" => Initializer::Zeros,
            "ones" => Initializer::Ones,
            other => {
                return Err(NnError::config(
                    "-",
                    "initializer",
                    format!("unknown initializer '{other}'"),
                ))
            }
        })
    }

    /// The Keras name of this initialiser.
    pub fn name(&self) -> &'static str {
        match self {
            Initializer::GlorotUniform => "glorot_uniform",
            Initializer::GlorotNormal => "glorot_normal",
            Initializer::HeUniform => "he_uniform",
            Initializer::HeNormal => "he_normal",
            Initializer::LecunUniform => "lecun_uniform",
            Initializer::LecunNormal => "lecun_normal",
            Initializer::RandomUniform { .. } => "random_uniform",
            Initializer::RandomNormal { .. } => "random_normal",
            Initializer::TruncatedNormal { .. } => "truncated_normal",
            Initializer::Zeros => "zeros",
            Initializer::Ones => "ones",
            Initializer::Constant(_) => "constant",
        }
    }

    /// A tensor of `shape` drawn from this initialiser.
    pub fn init(&self, shape: &[usize], rng: &mut Rng) -> Tensor {
        let (fan_in, fan_out) = fans(shape);
        let uniform = |limit: f32, rng: &mut Rng| Tensor::rand_uniform(shape, -limit, limit, rng);
        // Keras's variance-scaling "truncated_normal" divides by this constant
        // so the truncated distribution keeps the requested variance.
        let truncated =
            |std: f32, rng: &mut Rng| truncated_normal(shape, 0.0, std / 0.879_625_7, rng);
        match *self {
            Initializer::GlorotUniform => uniform((6.0 / (fan_in + fan_out)).sqrt(), rng),
            Initializer::GlorotNormal => truncated((2.0 / (fan_in + fan_out)).sqrt(), rng),
            Initializer::HeUniform => uniform((6.0 / fan_in).sqrt(), rng),
            Initializer::HeNormal => truncated((2.0 / fan_in).sqrt(), rng),
            Initializer::LecunUniform => uniform((3.0 / fan_in).sqrt(), rng),
            Initializer::LecunNormal => truncated((1.0 / fan_in).sqrt(), rng),
            Initializer::RandomUniform { minval, maxval } => {
                Tensor::rand_uniform(shape, minval, maxval, rng)
            }
            Initializer::RandomNormal { mean, stddev } => {
                Tensor::rand_normal(shape, mean, stddev, rng)
            }
            Initializer::TruncatedNormal { mean, stddev } => {
                truncated_normal(shape, mean, stddev, rng)
            }
            Initializer::Zeros => Tensor::zeros(shape),
            Initializer::Ones => Tensor::ones(shape),
            Initializer::Constant(v) => Tensor::full(shape, v),
        }
    }
}

/// Normal samples redrawn until within two standard deviations (as Keras).
fn truncated_normal(shape: &[usize], mean: f32, std: f32, rng: &mut Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| loop {
            let z = rng.normal();
            if z.abs() <= 2.0 {
                break mean + std * z;
            }
        })
        .collect();
    Tensor::from_vec(data, shape).unwrap_or_else(|_| Tensor::zeros(shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fans_follow_keras() {
        assert_eq!(fans(&[7, 7, 8, 16]), (392.0, 784.0));
        assert_eq!(fans(&[2048, 3]), (2048.0, 3.0));
    }

    #[test]
    fn glorot_uniform_stays_in_its_limit_and_is_seeded() {
        let a = Initializer::GlorotUniform.init(&[20, 30], &mut Rng::new(1));
        let b = Initializer::GlorotUniform.init(&[20, 30], &mut Rng::new(1));
        assert_eq!(a.to_vec(), b.to_vec());
        let limit = (6.0f32 / 50.0).sqrt();
        assert!(a.data().iter().all(|v| v.abs() <= limit));
    }

    #[test]
    fn normal_initialisers_have_the_keras_variance() {
        let t = Initializer::HeNormal.init(&[400, 100], &mut Rng::new(2));
        let v: f32 = t.data().iter().map(|x| x * x).sum::<f32>() / t.numel() as f32;
        assert!((v - 2.0 / 400.0).abs() < 0.1 * 2.0 / 400.0, "{v}");
        assert!(Initializer::from_name("nope").is_err());
        for n in [
            "glorot_uniform",
            "he_normal",
            "lecun_uniform",
            "zeros",
            "ones",
            "truncated_normal",
        ] {
            assert_eq!(Initializer::from_name(n).unwrap().name(), n);
        }
    }
}
