//! Attribution of a class score to the input pixels: the plain gradient
//! (captum's `Saliency(abs=False)`), SmoothGrad (the mean gradient over
//! noisy copies) and integrated gradients (captum's `riemann_trapezoid`
//! rule from a zero baseline).

use strata_core::{no_grad, Rng, Tensor};

use super::{class_score_sum, one_sample, pick_class, scores};
use crate::error::{NnError, Result};
use crate::model::Model;

/// Samples per forward pass when one attribution needs many.
const CHUNK: usize = 8;

/// How the input attribution is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SaliencyMethod {
    /// The gradient of the class score with respect to the input.
    Gradient,
    /// The mean gradient over `samples` copies of the input with Gaussian
    /// noise of standard deviation `noise * (max - min)` of the input.
    SmoothGrad {
        samples: usize,
        noise: f32,
        seed: u64,
    },
    /// `x * Σ_i w_i ∇f(α_i x)` over `steps` points α_i = i / (steps - 1),
    /// with the trapezoid weights w_i = 1/steps (halved at both ends).
    IntegratedGradients { steps: usize },
}

/// A signed attribution in the input's per-sample shape (H, W, C).
#[derive(Debug, Clone)]
pub struct Attribution {
    /// The class explained.
    pub class: usize,
    /// Its score (the logit before a final softmax) for the input.
    pub score: f32,
    /// One value per input value, (H, W, C).
    pub values: Tensor,
}

/// The gradient of the class score of each row of `batch` with respect
/// to that row, flattened.
fn input_gradients(
    model: &mut Model,
    batch: Vec<f32>,
    shape: &[usize],
    class: usize,
) -> Result<Vec<f32>> {
    let leaf = Tensor::from_vec(batch, shape)?.requires_grad_(true);
    let (s, _) = scores(model, &leaf, None, None)?;
    class_score_sum(&s, class)?.backward()?;
    leaf.grad()
        .map(|g| g.to_vec())
        .ok_or_else(|| NnError::Spec("the class score does not depend on the input".into()))
}

/// The gradient for every sample of `samples` (each one input's values),
/// `CHUNK` at a time, summed with `weights`.
fn weighted_gradient_sum(
    model: &mut Model,
    sample_shape: &[usize],
    class: usize,
    samples: impl Iterator<Item = (Vec<f32>, f32)>,
) -> Result<Vec<f32>> {
    let per: usize = sample_shape.iter().product();
    let mut total = vec![0.0f64; per];
    let mut pending: Vec<(Vec<f32>, f32)> = Vec::new();
    let mut flush = |pending: &mut Vec<(Vec<f32>, f32)>, model: &mut Model| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut shape = vec![pending.len()];
        shape.extend_from_slice(sample_shape);
        let batch: Vec<f32> = pending
            .iter()
            .flat_map(|(v, _)| v.iter().copied())
            .collect();
        let g = input_gradients(model, batch, &shape, class)?;
        for ((_, w), row) in pending.iter().zip(g.chunks_exact(per)) {
            for (t, v) in total.iter_mut().zip(row) {
                *t += *w as f64 * *v as f64;
            }
        }
        pending.clear();
        Ok(())
    };
    for s in samples {
        pending.push(s);
        if pending.len() == CHUNK {
            flush(&mut pending, model)?;
        }
    }
    flush(&mut pending, model)?;
    Ok(total.into_iter().map(|v| v as f32).collect())
}

/// Attributes the score of `class` (default: the top class) for one sample
/// `x` of shape (1, H, W, C) to its values.
pub fn saliency(
    model: &mut Model,
    x: &Tensor,
    class: Option<usize>,
    method: SaliencyMethod,
) -> Result<Attribution> {
    one_sample(model, x)?;
    let (s, _) = no_grad(|| scores(model, x, None, None))?;
    let class = pick_class(&s, class)?;
    let score = s.to_vec()[class];
    let sample_shape = x.shape()[1..].to_vec();
    let xv = x.to_vec();
    let values = match method {
        SaliencyMethod::Gradient => input_gradients(model, xv, x.shape(), class)?,
        SaliencyMethod::SmoothGrad {
            samples,
            noise,
            seed,
        } => {
            if samples == 0 || !(noise.is_finite() && noise >= 0.0) {
                return Err(NnError::Data(format!(
                    "smoothgrad needs at least one sample and a noise level >= 0, found {samples} and {noise}"
                )));
            }
            let (lo, hi) = xv
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let std = noise * (hi - lo);
            let mut rng = Rng::new(seed);
            let noisy: Vec<(Vec<f32>, f32)> = (0..samples)
                .map(|_| {
                    let v = xv.iter().map(|&p| p + rng.normal_with(0.0, std)).collect();
                    (v, 1.0 / samples as f32)
                })
                .collect();
            weighted_gradient_sum(model, &sample_shape, class, noisy.into_iter())?
        }
        SaliencyMethod::IntegratedGradients { steps } => {
            if steps < 2 {
                return Err(NnError::Data(format!(
                    "integrated gradients need at least 2 steps, found {steps}"
                )));
            }
            let n = steps as f64;
            let points = (0..steps).map(|i| {
                let alpha = (i as f64 / (n - 1.0)) as f32;
                let mut w = 1.0 / n;
                if i == 0 || i == steps - 1 {
                    w /= 2.0;
                }
                (
                    xv.iter().map(|&p| alpha * p).collect::<Vec<f32>>(),
                    w as f32,
                )
            });
            let g = weighted_gradient_sum(model, &sample_shape, class, points)?;
            // zero baseline: (x - 0) times the path's mean gradient
            g.iter().zip(&xv).map(|(g, x)| g * x).collect()
        }
    };
    Ok(Attribution {
        class,
        score,
        values: Tensor::from_vec(values, &sample_shape)?,
    })
}
