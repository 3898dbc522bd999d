//! Synchronised BatchNorm: a training BatchNorm whose batch is every
//! process's rows together (a data-parallel run). Each process holds its own
//! rows; the statistics come from two sums over the processes (the counts
//! and per-channel sums give the global mean, then each process's squared
//! deviations about that mean give the global variance, with no `E[x²] -
//! E[x]²` cancellation), and the backward sums `[Σ dy | Σ dy·x̂]` over the
//! processes before its `dx`. `dgamma` and `dbeta` stay this process's own:
//! the run's gradient all-reduce adds them up like every other weight's.
//! The sums over processes are the caller's ([`ProcessSum`]), so this file
//! knows nothing of how processes talk.

use std::sync::Arc;

use super::backward::{Dy, Sums};
use super::moments::ChannelMoments;
use super::normalise::normalise_act;
use super::statistics::Statistics;
use super::train::{gradients, saved_for, wants};
use super::{check, check_epsilon};
use crate::autograd::Upstream;
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;

/// Sums f64 values over the processes of a run, in place, giving every
/// process the same result. It has no error to return: a run whose
/// processes can no longer talk must be stopped by it.
pub type ProcessSum = Arc<dyn Fn(&mut [f64]) + Send + Sync>;

const OP: &str = "batch_norm_train_synced";

impl Tensor {
    /// [`Tensor::batch_norm_train`] (then a ReLU when `relu`) over the rows
    /// of every process of a run, `sum` adding values up over them. `local`
    /// are this process's moments when the convolution before took them
    /// ([`Tensor::conv2d_moments`]); otherwise they are taken here. Returns
    /// the output and the global mean and biased variance. With one process
    /// it is `batch_norm_train_with` up to rounding.
    pub fn batch_norm_train_synced(
        &self,
        local: Option<&ChannelMoments>,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        epsilon: f32,
        relu: bool,
        sum: &ProcessSum,
    ) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
        let (m, c) = check(
            OP,
            self,
            &[
                ("gamma", gamma.map(|t| t.shape())),
                ("beta", beta.map(|t| t.shape())),
            ],
        )?;
        check_epsilon(OP, epsilon)?;
        let taken;
        let local = match local {
            Some(g) if (g.count, g.mean.len(), g.m2.len()) == (m, c, c) => g,
            Some(g) => {
                return Err(CoreError::arg(
                    OP,
                    "moments",
                    format!(
                        "must be of the input's {m} rows of {c} channels, found {} rows of {}",
                        g.count,
                        g.mean.len()
                    ),
                ))
            }
            None => {
                taken = Statistics::moments_of(&self.data(), m, c);
                &taken
            }
        };
        let global = global_moments(local, sum);
        let stats = Statistics::from_f64(&global.mean, &global.variance(), epsilon);
        let saved = saved_for(self, (m, c, global.count as f32), &stats, gamma, beta);
        let y = normalise_act(&self.data(), &saved.scale, &saved.shift, relu);
        let mut inputs = vec![self];
        inputs.extend(gamma);
        inputs.extend(beta);
        let (g_wants, b_wants) = (wants(gamma), wants(beta));
        let sum = Arc::clone(sum);
        let out = Tensor::from_op_either(y, self.shape().to_vec(), OP, &inputs, move |up| {
            let x = saved.x.data();
            let own = saved.sums(&x, up.as_slice(), relu);
            let mut all = own.clone();
            sum(&mut all);
            let dx = saved.x.requires_grad().then(|| {
                let dy = match up {
                    Upstream::Owned(dy) => Dy::Owned(dy),
                    Upstream::Shared(ref dy) => Dy::Read(dy),
                };
                saved.dx(&x, dy, &Sums::of(&all, saved.c), relu)
            });
            gradients(dx, Sums::of(&own, saved.c), g_wants, b_wants)
        });
        Ok((out, stats.mean, stats.var))
    }
}

/// The moments of every process's rows from this process's `local` ones:
/// one sum of the counts and per-channel sums (the mean), then one of the
/// squared deviations about that mean (Chan et al.'s combination, each
/// process's part `m2 + n·(mean - global mean)²`).
fn global_moments(local: &ChannelMoments, sum: &ProcessSum) -> ChannelMoments {
    let c = local.mean.len();
    let n = local.count as f64;
    let mut first = Vec::with_capacity(1 + c);
    first.push(n);
    first.extend(local.mean.iter().map(|m| m * n));
    sum(&mut first);
    let total = first[0].max(1.0);
    let mean: Vec<f64> = first[1..].iter().map(|s| s / total).collect();
    let mut m2: Vec<f64> = (0..c)
        .map(|ch| {
            let d = local.mean[ch] - mean[ch];
            local.m2[ch] + n * d * d
        })
        .collect();
    sum(&mut m2);
    ChannelMoments {
        count: first[0] as usize,
        mean,
        m2,
    }
}
