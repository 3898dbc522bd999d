//! The fused training ops: BatchNorm then a ReLU, BatchNorm with the
//! statistics the convolution took, and `relu(batch_norm_train(x) +
//! residual)`, a residual block's end. The last one's forward is the batch
//! statistics then one sweep that normalises, adds and applies the ReLU
//! keeping its mask; its backward applies the ReLU's mask first (the
//! residual's gradient) and then runs BatchNorm's backward on those values.

use super::backward::{Dy, Sums};
use super::moments::ChannelMoments;
use super::normalise::normalise_add_relu;
use super::train::{gradients, prepare, train, wants};
use crate::autograd::Upstream;
use crate::error::{fmt_shape, CoreError, Result};
use crate::kernels::buffers;
use crate::ops::relu_mask;
use crate::tensor::Tensor;

impl Tensor {
    /// [`Tensor::batch_norm_train`] followed by a ReLU, as one op: the forward
    /// writes `max(y, 0)` in the normalising sweep and the backward applies the
    /// ReLU's mask from `x`, so `y` is neither kept nor swept again. Bitwise the
    /// two separate ops.
    pub fn batch_norm_train_relu(
        &self,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        epsilon: f32,
    ) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
        train(self, gamma, beta, epsilon, None, true)
    }

    /// [`Tensor::batch_norm_train`] (then a ReLU when `relu`, as
    /// [`Tensor::batch_norm_train_relu`]) with the batch statistics given:
    /// `moments` of `self`, as [`Tensor::conv2d_moments`] returns them with
    /// its output. The same op and gradients; the statistics differ from the
    /// ones it would take itself by rounding only (other partial sums).
    pub fn batch_norm_train_with(
        &self,
        moments: &ChannelMoments,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        epsilon: f32,
        relu: bool,
    ) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
        train(self, gamma, beta, epsilon, Some(moments), relu)
    }
    /// `relu(batch_norm_train(self) + residual)`, a residual block's end while
    /// training, as one op: one sweep normalises, adds the shortcut and
    /// applies the ReLU, keeping only the ReLU's mask (one bit per value) for
    /// the backward, which gives `residual` its gradient and runs the
    /// BatchNorm's on the same values. With `moments` (of `self`, as
    /// [`Tensor::batch_norm_train_with`] takes them) the batch statistics are
    /// not swept again. Bitwise [`Tensor::batch_norm_train`] then
    /// [`Tensor::add_relu`] when the statistics are the same.
    pub fn batch_norm_train_add_relu(
        &self,
        residual: &Tensor,
        moments: Option<&ChannelMoments>,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        epsilon: f32,
    ) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
        const OP: &str = "batch_norm_train_add_relu";
        if residual.shape() != self.shape() {
            return Err(CoreError::arg(
                OP,
                "residual",
                format!(
                    "must have the input's shape {}, found {}",
                    fmt_shape(self.shape()),
                    fmt_shape(residual.shape())
                ),
            ));
        }
        let (stats, saved) = prepare(self, gamma, beta, epsilon, moments, OP)?;
        let mut inputs = vec![self];
        inputs.extend(gamma);
        inputs.extend(beta);
        inputs.push(residual);
        let record = crate::autograd::should_record(&inputs);
        let (y, mask) = {
            let (x, r) = (self.data(), residual.data());
            normalise_add_relu(&x, &saved.scale, &saved.shift, &r, record)
        };
        let want_r = residual.requires_grad();
        let (g_wants, b_wants) = (wants(gamma), wants(beta));
        let out = Tensor::from_op_either(y, self.shape().to_vec(), OP, &inputs, move |up| {
            let Some(mask) = &mask else {
                unreachable!("a backward without the ReLU's mask")
            };
            let x = saved.x.data();
            // the ReLU's rule first: dy through the mask is the residual's
            // gradient and the BatchNorm's upstream; with rows of whole mask
            // words it is applied in the sweep that sums, else in its own
            let (through, s) = if saved.c.is_multiple_of(64) {
                let (g, s) = match up {
                    Upstream::Owned(mut g) => {
                        let s = saved.masked_sums(&x, mask, &mut g, None);
                        (g, s)
                    }
                    Upstream::Shared(dy) => {
                        let mut g = buffers::dirty(dy.len());
                        let s = saved.masked_sums(&x, mask, &mut g, Some(&dy));
                        (g, s)
                    }
                };
                (g, s)
            } else {
                let g = match up {
                    Upstream::Owned(mut g) => {
                        relu_mask::masked_in_place(&mut g, mask);
                        g
                    }
                    Upstream::Shared(dy) => relu_mask::masked(&dy, mask),
                };
                let s = saved.sums(&x, &g, false);
                (g, s)
            };
            // then BatchNorm's backward on it
            let s = Sums::of(&s, saved.c);
            let dx = saved
                .x
                .requires_grad()
                .then(|| saved.dx(&x, Dy::Read(&through), &s, false));
            let mut grads = gradients(dx, s, g_wants, b_wants);
            grads.push(match want_r {
                true => Some(through),
                false => {
                    buffers::recycle(through);
                    None
                }
            });
            grads
        });
        Ok((out, stats.mean, stats.var))
    }
}
