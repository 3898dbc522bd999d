//! BatchNormalization over the channel (last) axis with Keras defaults
//! (momentum 0.99, epsilon 1e-3). Training mode normalises with the batch
//! statistics and updates `moving = moving*momentum + batch*(1-momentum)`
//! (biased variance); inference mode and a frozen layer use the moving ones.

use std::sync::Arc;

use serde_json::{Map, Value};
use strata_core::kernels::moments::ChannelMoments;
use strata_core::{Rng, Tensor};

use crate::distributed::LayerDistribution;

use super::dense::not_built;
use super::{expect_inputs, Ctx, Layer, LayerBase};
use crate::error::{InLayer, NnError, Result};
use crate::weight::Weight;

pub struct BatchNormalization {
    base: LayerBase,
    pub momentum: f32,
    pub epsilon: f32,
    pub center: bool,
    pub scale: bool,
    gamma: Option<Weight>,
    beta: Option<Weight>,
    moving_mean: Option<Weight>,
    moving_variance: Option<Weight>,
    /// In a data-parallel run with synchronised statistics: the collective.
    distribution: Option<Arc<LayerDistribution>>,
}

impl BatchNormalization {
    /// Whether a call normalises with the moving statistics rather than the
    /// batch's: in inference, and always when frozen (as in Keras).
    pub(crate) fn uses_moving_statistics(&self, training: bool) -> bool {
        !(training && self.base.trainable)
    }

    /// The per-channel `(scale, shift)` that inference-mode normalisation is
    /// (`y = x * scale + shift`), or `None` before `build`.
    pub(crate) fn inference_affine(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        let (mm, mv) = (self.moving_mean.as_ref()?, self.moving_variance.as_ref()?);
        let gamma = self.gamma.as_ref().map(|w| w.value.to_vec());
        let beta = self.beta.as_ref().map(|w| w.value.to_vec());
        Some(strata_core::ops::batch_norm::affine_of(
            &mm.value.to_vec(),
            &mv.value.to_vec(),
            gamma.as_deref(),
            beta.as_deref(),
            self.epsilon,
        ))
    }

    /// The training-mode output with a following ReLU in the same op, for
    /// the fusion pass's BatchNorm -> ReLU pairs; `None` where this call
    /// would use the moving statistics (then the two layers run apart).
    pub(crate) fn forward_relu(&mut self, x: &Tensor, training: bool) -> Option<Result<Tensor>> {
        if let Some(d) = self.synchronised() {
            return (!self.uses_moving_statistics(training))
                .then(|| self.forward_train_sync(x, &d, None, true));
        }
        (!self.uses_moving_statistics(training)).then(|| self.forward_train(x, true))
    }

    /// The training-mode output (then a ReLU when `relu`) with the batch
    /// statistics given as `x`'s `moments`, taken by the convolution before
    /// it (the fusion pass's Conv2D -> BatchNorm [-> ReLU] chains).
    pub(crate) fn forward_with_moments(
        &mut self,
        x: &Tensor,
        moments: &ChannelMoments,
        relu: bool,
    ) -> Result<Tensor> {
        // synchronised statistics: these moments joined with the other ranks'
        if let Some(d) = self.synchronised() {
            return self.forward_train_sync(x, &d, Some(moments), relu);
        }
        self.forward_train_with(x, Some(moments), relu)
    }

    /// [`BatchNormalization::forward_with_moments`] followed by the Add of
    /// `residual` and a ReLU, a residual block's end, as one op.
    pub(crate) fn forward_with_moments_add_relu(
        &mut self,
        x: &Tensor,
        moments: &ChannelMoments,
        residual: &Tensor,
    ) -> Result<Tensor> {
        if let Some(d) = self.synchronised() {
            let y = self.forward_train_sync(x, &d, Some(moments), false)?;
            return y.add_relu(residual).in_layer(&self.base.name);
        }
        self.forward_train_then(x, Some(moments), true, Some(residual))
    }

    /// The moving statistics, once `x` is checked to have their channel count.
    fn moving_for(&self, x: &Tensor) -> Result<(&Weight, &Weight)> {
        let name = &self.base.name;
        let (mm, mv) = match (&self.moving_mean, &self.moving_variance) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(not_built(name)),
        };
        let c = mm.shape()[0];
        if x.shape().last() != Some(&c) {
            return Err(NnError::shape(
                name,
                "BatchNormalization",
                format!("(None, ..., {c})"),
                x.shape().get(1..).unwrap_or(&[]),
            ));
        }
        Ok((mm, mv))
    }

    /// A training-mode call (batch statistics, moving statistics updated), with
    /// a following ReLU in the same op when `relu` (the model's fusion hands it
    /// BatchNorm -> ReLU pairs): bitwise what the separate layers give.
    fn forward_train(&mut self, x: &Tensor, relu: bool) -> Result<Tensor> {
        self.forward_train_with(x, None, relu)
    }

    /// The training-mode forward (then a ReLU when `relu`), with the batch
    /// statistics given as `x`'s moments when the convolution before took
    /// them ([`Tensor::batch_norm_train_with`]), else taken here; updates the
    /// moving statistics.
    fn forward_train_with(
        &mut self,
        x: &Tensor,
        moments: Option<&strata_core::kernels::moments::ChannelMoments>,
        relu: bool,
    ) -> Result<Tensor> {
        self.forward_train_then(x, moments, relu, None)
    }

    /// The training-mode forward, then a ReLU (`relu`), or the Add of
    /// `residual` and a ReLU, in the same op; the moving statistics updated.
    fn forward_train_then(
        &mut self,
        x: &Tensor,
        moments: Option<&strata_core::kernels::moments::ChannelMoments>,
        relu: bool,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let name = &self.base.name;
        let (mm, mv) = self.moving_for(x)?;
        let gamma = self.gamma.as_ref().map(|w| &w.value);
        let beta = self.beta.as_ref().map(|w| &w.value);
        let eps = self.epsilon;
        let (y, mean, var) = match (residual, moments, relu) {
            (Some(r), m, _) => x.batch_norm_train_add_relu(r, m, gamma, beta, eps),
            (None, Some(m), _) => x.batch_norm_train_with(m, gamma, beta, eps, relu),
            (None, None, true) => x.batch_norm_train_relu(gamma, beta, eps),
            (None, None, false) => x.batch_norm_train(gamma, beta, eps),
        }
        .in_layer(name)?;
        let m = self.momentum;
        strata_core::ops::batch_norm::update_moving(&mut mm.value.data_mut(), &mean, m);
        strata_core::ops::batch_norm::update_moving(&mut mv.value.data_mut(), &var, m);
        Ok(y)
    }

    /// The collective when this layer normalises with the global batch's
    /// statistics (a data-parallel run with synchronised BatchNorm).
    fn synchronised(&self) -> Option<Arc<LayerDistribution>> {
        self.distribution
            .as_ref()
            .filter(|d| d.sync_batchnorm)
            .cloned()
    }

    /// Synchronised BatchNorm's training forward (then a ReLU when `relu`):
    /// the statistics of the global batch from this rank's moments (`local`,
    /// as the convolution took them, or taken here) and two small
    /// all-reduces, and a backward that all-reduces its per-channel sums
    /// ([`Tensor::batch_norm_train_synced`]). The moving statistics follow
    /// the global ones, alike on every rank.
    fn forward_train_sync(
        &mut self,
        x: &Tensor,
        d: &LayerDistribution,
        local: Option<&strata_core::kernels::moments::ChannelMoments>,
        relu: bool,
    ) -> Result<Tensor> {
        let name = &self.base.name;
        let (mm, mv) = self.moving_for(x)?;
        let gamma = self.gamma.as_ref().map(|w| &w.value);
        let beta = self.beta.as_ref().map(|w| &w.value);
        let sum = crate::distributed::process_sum(&d.collective);
        let (y, mean, var) = x
            .batch_norm_train_synced(local, gamma, beta, self.epsilon, relu, &sum)
            .in_layer(name)?;
        let m = self.momentum;
        strata_core::ops::batch_norm::update_moving(&mut mm.value.data_mut(), &mean, m);
        strata_core::ops::batch_norm::update_moving(&mut mv.value.data_mut(), &var, m);
        Ok(y)
    }

    pub fn new() -> Self {
        BatchNormalization {
            base: LayerBase::new(None),
            momentum: 0.99,
            epsilon: 1e-3,
            center: true,
            scale: true,
            gamma: None,
            beta: None,
            moving_mean: None,
            moving_variance: None,
            distribution: None,
        }
    }
    pub fn epsilon(mut self, e: f32) -> Self {
        self.epsilon = e;
        self
    }
    pub fn momentum(mut self, m: f32) -> Self {
        self.momentum = m;
        self
    }
    pub fn named(mut self, name: &str) -> Self {
        self.base.name = name.to_string();
        self
    }
}

impl Default for BatchNormalization {
    fn default() -> Self {
        BatchNormalization::new()
    }
}

impl Layer for BatchNormalization {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "BatchNormalization"
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        let s = &inputs[0];
        let Some(&c) = s.last() else {
            return Err(NnError::shape(
                &self.base.name,
                "BatchNormalization",
                "(None, ..., channels)",
                s,
            ));
        };
        if let Some(m) = &self.moving_mean {
            if m.shape() != [c] {
                return Err(NnError::shape(
                    &self.base.name,
                    "BatchNormalization",
                    format!("(None, ..., {})", m.shape()[0]),
                    s,
                ));
            }
            return Ok(s.clone());
        }
        let t = self.base.trainable;
        if self.scale {
            self.gamma = Some(Weight::new("gamma", Tensor::ones(&[c]), t));
        }
        if self.center {
            self.beta = Some(Weight::new("beta", Tensor::zeros(&[c]), t));
        }
        self.moving_mean = Some(Weight::new("moving_mean", Tensor::zeros(&[c]), false));
        self.moving_variance = Some(Weight::new("moving_variance", Tensor::ones(&[c]), false));
        Ok(s.clone())
    }
    fn forward(&mut self, inputs: &[Tensor], ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        let x = &inputs[0];
        // a frozen BatchNormalization runs in inference mode (as in Keras)
        if !self.uses_moving_statistics(ctx.training) {
            if let Some(d) = self.synchronised() {
                return self.forward_train_sync(x, &d, None, false);
            }
            return self.forward_train(x, false);
        }
        let (mm, mv) = self.moving_for(x)?;
        let gamma = self.gamma.as_ref().map(|w| &w.value);
        let beta = self.beta.as_ref().map(|w| &w.value);
        let (mean, var) = (mm.value.to_vec(), mv.value.to_vec());
        x.batch_norm_infer(&mean, &var, gamma, beta, self.epsilon)
            .in_layer(&self.base.name)
    }
    fn weights(&self) -> Vec<&Weight> {
        self.gamma
            .iter()
            .chain(self.beta.iter())
            .chain(self.moving_mean.iter())
            .chain(self.moving_variance.iter())
            .collect()
    }
    fn weights_mut(&mut self) -> Vec<&mut Weight> {
        self.gamma
            .iter_mut()
            .chain(self.beta.iter_mut())
            .chain(self.moving_mean.iter_mut())
            .chain(self.moving_variance.iter_mut())
            .collect()
    }
    fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("momentum".into(), self.momentum.into());
        m.insert("epsilon".into(), self.epsilon.into());
        m.insert("center".into(), self.center.into());
        m.insert("scale".into(), self.scale.into());
        m
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_batchnorm(self, inputs, output)
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
    use super::super::testing::{build, check_layer_gradients, run};
    use super::*;

    #[test]
    fn counts_and_modes() {
        let mut b = BatchNormalization::new();
        build(&mut b, &[&[4, 4, 3]]).unwrap();
        assert_eq!(b.param_count(), 12);
        assert_eq!(b.trainable_param_count(), 6);
        let x = Tensor::rand_normal(&[2, 4, 4, 3], 1.0, 2.0, &mut Rng::new(1));
        let y = run(&mut b, std::slice::from_ref(&x), true).unwrap();
        let m = y.mean(&[0, 1, 2], false).unwrap();
        assert!(m.data().iter().all(|v| v.abs() < 1e-4));
        // the moving mean moved 1% of the way towards the batch mean
        let mm = b.weights()[2].value.to_vec();
        let bm = x.mean(&[0, 1, 2], false).unwrap().to_vec();
        for (a, b) in mm.iter().zip(bm) {
            assert!((a - 0.01 * b).abs() < 1e-5);
        }
        check_layer_gradients(&mut b, std::slice::from_ref(&x), false);
        let mut b2 = BatchNormalization::new();
        build(&mut b2, &[&[3]]).unwrap();
        let x2 = Tensor::rand_normal(&[5, 3], 0.0, 1.0, &mut Rng::new(2));
        check_layer_gradients(&mut b2, &[x2], true);
    }

    /// BatchNorm on `x` (4 rows per rank) in training mode, synchronised
    /// over `ranks` thread ranks, each taking its contiguous rows; returns
    /// the output, dL/dx, dL/dgamma, dL/dbeta of L = sum(y * w), per rank.
    fn synchronised(x: &Tensor, w: &Tensor, ranks: usize) -> Vec<[Vec<f32>; 5]> {
        use crate::distributed::{Collective, ThreadGroup};
        let rows = x.shape()[0] / ranks;
        let handles: Vec<_> = ThreadGroup::new(ranks)
            .into_iter()
            .map(|g| {
                let r = g.rank();
                let x = x
                    .slice(0, r * rows, (r + 1) * rows)
                    .unwrap()
                    .requires_grad_(true);
                let w = w.slice(0, r * rows, (r + 1) * rows).unwrap();
                std::thread::spawn(move || {
                    let mut b = BatchNormalization::new();
                    build(&mut b, &[&x.shape()[1..]]).unwrap();
                    let c: Arc<dyn Collective> = Arc::new(g);
                    b.set_distribution(Some(Arc::new(LayerDistribution {
                        collective: c,
                        sync_batchnorm: true,
                        sample_keys: Default::default(),
                    })));
                    let y = run(&mut b, std::slice::from_ref(&x), true).unwrap();
                    y.mul(&w).unwrap().sum_all().backward().unwrap();
                    let ws = b.weights();
                    [
                        y.to_vec(),
                        x.grad().unwrap().to_vec(),
                        ws[0].value.grad().unwrap().to_vec(),
                        ws[1].value.grad().unwrap().to_vec(),
                        ws[3].value.to_vec(),
                    ]
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        let diff = a
            .iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= tol * scale, "{what}: {diff} (scale {scale})");
    }

    #[test]
    fn synchronised_statistics_equal_one_batch_norm_over_the_global_batch() {
        let x = Tensor::rand_normal(&[8, 3, 3, 5], 2.0, 3.0, &mut Rng::new(3));
        let w = Tensor::rand_normal(&[8, 3, 3, 5], 0.0, 1.0, &mut Rng::new(4));
        // the core op over the whole batch
        let mut b = BatchNormalization::new();
        build(&mut b, &[&[3, 3, 5]]).unwrap();
        let xg = x.detach().requires_grad_(true);
        let y = run(&mut b, std::slice::from_ref(&xg), true).unwrap();
        y.mul(&w).unwrap().sum_all().backward().unwrap();
        let ws = b.weights();
        let (gamma, beta) = (ws[0].value.grad().unwrap(), ws[1].value.grad().unwrap());
        let moving_var = ws[3].value.to_vec();
        for ranks in [1, 2, 4] {
            let parts = synchronised(&x, &w, ranks);
            let cat = |i: usize| -> Vec<f32> { parts.iter().flat_map(|p| p[i].clone()).collect() };
            close(&cat(0), &y.to_vec(), 1e-5, "output");
            close(
                &cat(1),
                &xg.grad().unwrap().to_vec(),
                1e-4,
                "input gradient",
            );
            // every rank holds the global batch's weight gradients and statistics
            for p in &parts {
                let sum_over = |i: usize| -> Vec<f32> {
                    (0..5)
                        .map(|c| parts.iter().map(|q| q[i][c]).sum::<f32>())
                        .collect()
                };
                close(&sum_over(2), &gamma.to_vec(), 1e-4, "gamma gradient");
                close(&sum_over(3), &beta.to_vec(), 1e-4, "beta gradient");
                close(&p[4], &moving_var, 1e-6, "moving variance");
            }
        }
    }
}
