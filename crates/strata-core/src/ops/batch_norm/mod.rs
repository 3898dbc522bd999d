//! Batch normalisation over every axis but the last (Keras `BatchNormalization`,
//! axis -1, channels-last), for rank 2 (N, C) and rank 4 (N, H, W, C) alike.
//!
//! Training mode normalises with the batch mean and the **biased** batch variance
//! and returns both, so the layer can update its moving statistics
//! ([`update_moving`]); inference mode uses the moving statistics it is given.
//! Per-channel sums run in f64 over fixed row blocks added in block order, so the
//! result depends only on the thread count.
//!
//! Each training op is a composition of the parts here: `statistics.rs`
//! (the batch's, or the convolution's [`moments`]), `normalise.rs` (the affine
//! map and the tail after it, in one sweep) and `backward.rs` (the tail's
//! gradient rule, then BatchNorm's). `train.rs` holds the plain op,
//! `fused.rs` the ones with a ReLU, with the convolution's statistics and
//! with an Add and a ReLU, `synced.rs` the one whose statistics and sums
//! are over every process of a data-parallel run, `infer.rs` inference; `rows.rs` the
//! reproducible per-channel sweeps they share.

use crate::error::{fmt_shape, CoreError, Result};
use crate::tensor::Tensor;

mod backward;
mod fused;
mod infer;
pub mod moments;
mod normalise;
mod rows;
mod statistics;
mod synced;
#[cfg(test)]
mod tests;
mod train;

pub use normalise::affine_of;
pub use synced::ProcessSum;

/// `moving = moving * momentum + batch * (1 - momentum)`, Keras' update of the
/// moving mean and (biased) moving variance after a training-mode call.
pub fn update_moving(moving: &mut [f32], batch: &[f32], momentum: f32) {
    moving
        .iter_mut()
        .zip(batch)
        .for_each(|(m, &b)| *m = *m * momentum + b * (1.0 - momentum));
}

/// Checks `x` (rank >= 2, non-empty) and an optional per-channel parameter.
pub(super) fn check(
    op: &str,
    x: &Tensor,
    params: &[(&str, Option<&[usize]>)],
) -> Result<(usize, usize)> {
    let s = x.shape();
    if s.len() < 2 || x.numel() == 0 {
        return Err(CoreError::shape(
            op,
            "a non-empty input of rank >= 2 with channels last",
            fmt_shape(s),
        ));
    }
    let c = s[s.len() - 1];
    for (name, p) in params {
        if let Some(p) = p {
            if *p != [c] {
                return Err(CoreError::shape(
                    op,
                    format!("{name} {} for input {}", fmt_shape(&[c]), fmt_shape(s)),
                    fmt_shape(p),
                ));
            }
        }
    }
    Ok((x.numel() / c, c))
}

pub(super) fn check_epsilon(op: &str, epsilon: f32) -> Result<()> {
    if !(epsilon >= 0.0 && epsilon.is_finite()) {
        return Err(CoreError::arg(
            op,
            "epsilon",
            format!("must be finite and >= 0, found {epsilon}"),
        ));
    }
    Ok(())
}

/// The values of an optional per-channel parameter, else `c` times `v`.
pub(super) fn values_or(t: Option<&Tensor>, c: usize, v: f32) -> Vec<f32> {
    t.map_or_else(|| vec![v; c], |t| t.to_vec())
}
