//! Training-mode BatchNorm: the batch [`Statistics`], the affine map in one
//! sweep (then `max(., 0)` in the same sweep, for the fused op with a ReLU),
//! and BatchNorm's backward (the ReLU's rule inside its sweeps). Also the
//! parts every training op shares: [`prepare`] and [`gradients`].

use super::backward::{Dy, Saved, Sums};
use super::moments::ChannelMoments;
use super::normalise::{normalise_act, shift_of};
use super::statistics::Statistics;
use super::{check, check_epsilon, values_or};
use crate::autograd::Upstream;
use crate::error::Result;
use crate::tensor::Tensor;

impl Tensor {
    /// Training-mode batch normalisation over all axes but the last.
    /// Returns `(y, batch_mean, batch_variance)` with the biased variance; `gamma`
    /// (scale) and `beta` (center) default to 1 and 0 when absent.
    pub fn batch_norm_train(
        &self,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        epsilon: f32,
    ) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
        train(self, gamma, beta, epsilon, None, false)
    }
}

/// The name of a training op in the graph and in its errors.
fn op_name(relu: bool) -> &'static str {
    match relu {
        true => "batch_norm_train_relu",
        false => "batch_norm_train",
    }
}

/// A training forward's statistics and affine map, and what its backward keeps.
pub(super) fn prepare(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    epsilon: f32,
    given: Option<&ChannelMoments>,
    op: &str,
) -> Result<(Statistics, Saved)> {
    const OP: &str = "batch_norm_train";
    let (m, c) = check(
        OP,
        x,
        &[
            ("gamma", gamma.map(|t| t.shape())),
            ("beta", beta.map(|t| t.shape())),
        ],
    )?;
    check_epsilon(OP, epsilon)?;
    let stats = match given {
        Some(g) => Statistics::given(g, m, c, epsilon, op)?,
        None => Statistics::of(&x.data(), m, c, epsilon),
    };
    let saved = saved_for(x, (m, c, m as f32), &stats, gamma, beta);
    Ok((stats, saved))
}

/// What the backward keeps of a forward over `m` rows of `c` channels
/// normalised with `stats` (taken over `count` rows).
pub(super) fn saved_for(
    x: &Tensor,
    (m, c, count): (usize, usize, f32),
    stats: &Statistics,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
) -> Saved {
    let g = values_or(gamma, c, 1.0);
    let scale: Vec<f32> = stats.inv_std.iter().zip(&g).map(|(i, g)| i * g).collect();
    let shift = shift_of(&stats.mean, &scale, beta.map(|b| b.to_vec()).as_deref());
    Saved {
        x: x.clone(),
        m,
        c,
        count,
        mean: stats.mean.clone(),
        inv_std: stats.inv_std.clone(),
        gamma: g,
        scale,
        shift,
    }
}

/// The gradients of `[x, gamma?, beta?]` from the sums and `dx`.
pub(super) fn gradients(
    dx: Option<Vec<f32>>,
    s: Sums,
    gamma: (bool, bool),
    beta: (bool, bool),
) -> Vec<Option<Vec<f32>>> {
    let mut grads = vec![dx];
    let ((has_g, want_g), (has_b, want_b)) = (gamma, beta);
    if has_g {
        grads.push(want_g.then(|| s.dy_xhat.clone()));
    }
    if has_b {
        grads.push(want_b.then(|| s.dy.clone()));
    }
    grads
}

/// `(has, requires grad)` of an optional parameter.
pub(super) fn wants(t: Option<&Tensor>) -> (bool, bool) {
    (t.is_some(), t.is_some_and(|t| t.requires_grad()))
}

/// Statistics, then the affine map and (if `relu`) the ReLU in one sweep;
/// the backward is BatchNorm's, the ReLU's rule applied inside its sweeps.
pub(super) fn train(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    epsilon: f32,
    given: Option<&ChannelMoments>,
    relu: bool,
) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
    let op = op_name(relu);
    let (stats, saved) = prepare(x, gamma, beta, epsilon, given, op)?;
    let y = normalise_act(&x.data(), &saved.scale, &saved.shift, relu);
    let mut inputs = vec![x];
    inputs.extend(gamma);
    inputs.extend(beta);
    let (g_wants, b_wants) = (wants(gamma), wants(beta));
    let out = Tensor::from_op_either(y, x.shape().to_vec(), op, &inputs, move |up| {
        let x = saved.x.data();
        let s = Sums::of(&saved.sums(&x, up.as_slice(), relu), saved.c);
        let dx = saved.x.requires_grad().then(|| {
            let dy = match up {
                Upstream::Owned(dy) => Dy::Owned(dy),
                Upstream::Shared(ref dy) => Dy::Read(dy),
            };
            saved.dx(&x, dy, &s, relu)
        });
        gradients(dx, s, g_wants, b_wants)
    });
    Ok((out, stats.mean, stats.var))
}
