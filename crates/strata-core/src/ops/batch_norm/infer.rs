//! Inference-mode BatchNorm: the affine map of the moving statistics.

use super::backward::sum_dy_and_dy_xhat;
use super::normalise::{affine_of, normalise};
use super::rows::{channel_reduce, sweep_rows};
use super::{check, check_epsilon, values_or};
use crate::error::Result;
use crate::kernels::{buffers, parallel};
use crate::tensor::Tensor;

impl Tensor {
    /// Inference-mode batch normalisation with given moving statistics (no gradient
    /// flows to them): `y = (x - moving_mean) / sqrt(moving_variance + eps) * gamma + beta`.
    pub fn batch_norm_infer(
        &self,
        moving_mean: &[f32],
        moving_variance: &[f32],
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        epsilon: f32,
    ) -> Result<Tensor> {
        const OP: &str = "batch_norm_infer";
        let (m, c) = check(
            OP,
            self,
            &[
                ("moving_mean", Some(&[moving_mean.len()])),
                ("moving_variance", Some(&[moving_variance.len()])),
                ("gamma", gamma.map(|t| t.shape())),
                ("beta", beta.map(|t| t.shape())),
            ],
        )?;
        check_epsilon(OP, epsilon)?;
        let inv: Vec<f32> = moving_variance
            .iter()
            .map(|&v| (1.0 / (v as f64 + epsilon as f64).sqrt()) as f32)
            .collect();
        let g = values_or(gamma, c, 1.0);
        let bv = beta.map(|b| b.to_vec());
        let (scale, shift) = affine_of(
            moving_mean,
            moving_variance,
            Some(&g),
            bv.as_deref(),
            epsilon,
        );
        let y = normalise(&self.data(), &scale, &shift);
        let mut inputs = vec![self];
        inputs.extend(gamma);
        inputs.extend(beta);
        let xt = self.clone();
        let mean = moving_mean.to_vec();
        let (has_g, has_b) = (gamma.is_some(), beta.is_some());
        let want_g = gamma.is_some_and(|t| t.requires_grad());
        let want_b = beta.is_some_and(|t| t.requires_grad());
        Ok(Tensor::from_op(
            y,
            self.shape().to_vec(),
            OP,
            &inputs,
            move |dy| {
                let dx = xt.requires_grad().then(|| {
                    // dx = dy * gamma * inv_std per channel
                    let mut dx = buffers::dirty(dy.len());
                    let rows = sweep_rows(m, c);
                    parallel::for_each_chunk_mut(&mut dx, rows * c, |i, out| {
                        let gs = &dy[i * rows * c..][..out.len()];
                        for (o, gr) in out.chunks_exact_mut(c).zip(gs.chunks_exact(c)) {
                            for ((o, &g), &s) in o.iter_mut().zip(gr).zip(&scale) {
                                *o = g * s;
                            }
                        }
                    });
                    dx
                });
                let mut grads = vec![dx];
                if has_g || has_b {
                    let x = xt.data();
                    let s = channel_reduce(m, 2 * c, |r, acc| {
                        let (xs, gs) = (&x[r.start * c..r.end * c], &dy[r.start * c..r.end * c]);
                        // (no ReLU: the last two per-channel slices go unread)
                        sum_dy_and_dy_xhat::<false>(xs, gs, &mean, &inv, &mean, &inv, acc)
                    });
                    if has_g {
                        grads.push(want_g.then(|| s[c..].iter().map(|&v| v as f32).collect()));
                    }
                    if has_b {
                        grads.push(want_b.then(|| s[..c].iter().map(|&v| v as f32).collect()));
                    }
                }
                grads
            },
        ))
    }
}
