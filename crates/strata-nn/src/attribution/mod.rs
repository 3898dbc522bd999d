//! Seeing inside a trained network: which input pixels raise a class score
//! ([`saliency`]: the gradient, SmoothGrad, integrated gradients), where a
//! layer looks ([`grad_cam`], Grad-CAM and Grad-CAM++), and what a layer
//! computes ([`layer_output`]), and what a channel responds to
//! ([`maximize`]).
//!
//! The class score is the logit before a final softmax where the model ends
//! in one (as in the Grad-CAM paper, and as captum sees torchvision's
//! logits), else the output itself. Everything runs in inference mode
//! (BatchNormalization with its moving statistics, Dropout off), unfused,
//! on one sample `(1, H, W, C)`.

mod gradcam;
mod maximize;
mod saliency;

pub use gradcam::{grad_cam, Cam};
pub use maximize::{maximize, MaximizeConfig};
pub use saliency::{saliency, Attribution, SaliencyMethod};

use strata_core::Tensor;

use crate::error::{NnError, Result};
use crate::model::{Hooks, Model};

/// The node a layer name stands for (its first application) and its
/// per-sample output shape.
pub fn layer_node(model: &Model, layer: &str) -> Result<(usize, Vec<usize>)> {
    model
        .nodes
        .iter()
        .enumerate()
        .find(|(_, n)| model.layers[n.layer].name() == layer)
        .map(|(i, n)| (i, n.output_shape.clone()))
        .ok_or_else(|| {
            let names: Vec<&str> = model.layers.iter().map(|l| l.name()).collect();
            NnError::Spec(format!(
                "no layer named '{layer}' (the model has {})",
                names.join(", ")
            ))
        })
}

/// The last layer whose output keeps spatial axes (H', W', C): where
/// Grad-CAM looks by default.
pub fn last_spatial_layer(model: &Model) -> Result<String> {
    model
        .nodes
        .iter()
        .rev()
        .find(|n| n.output_shape.len() == 3)
        .map(|n| model.layers[n.layer].name().to_string())
        .ok_or_else(|| NnError::Spec("the model has no layer with spatial axes (H, W, C)".into()))
}

/// Checks that `x` is one sample of the model's single input.
fn one_sample(model: &Model, x: &Tensor) -> Result<()> {
    let [(name, shape)] = model.inputs() else {
        return Err(NnError::Spec(format!(
            "attribution needs a model with one input; this one has {}",
            model.inputs().len()
        )));
    };
    let mut want = vec![1];
    want.extend_from_slice(shape);
    if x.shape() != want.as_slice() {
        return Err(NnError::Data(format!(
            "input '{name}' expects one sample {}, found {}",
            strata_core::fmt_shape(&want),
            strata_core::fmt_shape(x.shape())
        )));
    }
    Ok(())
}

/// Runs `model` in inference mode, unfused, returning the class scores
/// `(N, K)` and the value of `tap` (a node) when asked, with `replace`
/// standing in for a node's value.
fn scores(
    model: &mut Model,
    x: &Tensor,
    tap: Option<usize>,
    replace: Option<(usize, Tensor)>,
) -> Result<(Tensor, Option<Tensor>)> {
    if model.outputs.len() != 1 {
        return Err(NnError::Spec(format!(
            "attribution needs a model with one output; this one has {}",
            model.outputs.len()
        )));
    }
    let fused = model.fusion;
    model.fusion = false;
    let hooks = Hooks { tap, replace };
    let run = model.run_hooked(std::slice::from_ref(x), false, true, &hooks);
    model.fusion = fused;
    let (mut outs, tapped) = run?;
    let out = outs.remove(0);
    if out.shape().len() != 2 {
        return Err(NnError::Spec(format!(
            "attribution needs class scores (N, K); the model outputs {}",
            strata_core::fmt_shape(out.shape())
        )));
    }
    Ok((out, tapped))
}

/// The class to explain: `class`, checked, else the top-scoring one.
fn pick_class(scores: &Tensor, class: Option<usize>) -> Result<usize> {
    let k = scores.shape()[1];
    let row = scores.to_vec();
    match class {
        Some(c) if c < k => Ok(c),
        Some(c) => Err(NnError::Data(format!(
            "class {c} is out of range: the model has {k} classes (0 to {})",
            k - 1
        ))),
        None => Ok((0..k)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
            .unwrap_or(0)),
    }
}

/// The sum over the batch of each row's score for `class`, as a scalar
/// whose gradient is each row's score gradient.
fn class_score_sum(scores: &Tensor, class: usize) -> Result<Tensor> {
    let (n, k) = (scores.shape()[0], scores.shape()[1]);
    let mut onehot = vec![0.0f32; n * k];
    for r in 0..n {
        onehot[r * k + class] = 1.0;
    }
    let mask = Tensor::from_vec(onehot, &[n, k])?;
    Ok(scores.mul(&mask)?.sum(&[0, 1], false)?)
}

/// The class scores `(N, K)` of a batch: the logits before a final softmax
/// where the model ends in one, in inference mode.
pub fn class_scores(model: &mut Model, x: &Tensor) -> Result<Tensor> {
    Ok(strata_core::no_grad(|| scores(model, x, None, None))?.0)
}

/// The value of `layer` for one sample, `(H', W', C)` or whatever the
/// layer's per-sample shape is, in inference mode.
pub fn layer_output(model: &mut Model, x: &Tensor, layer: &str) -> Result<Tensor> {
    one_sample(model, x)?;
    let (node, shape) = layer_node(model, layer)?;
    let fused = model.fusion;
    model.fusion = false;
    let hooks = Hooks {
        tap: Some(node),
        replace: None,
    };
    let run =
        strata_core::no_grad(|| model.run_hooked(std::slice::from_ref(x), false, false, &hooks));
    model.fusion = fused;
    let value = run?
        .1
        .ok_or_else(|| NnError::Spec(format!("layer '{layer}' was not computed")))?;
    Ok(value.reshape(&shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activations::Activation;
    use crate::layers::{Conv2D, Dense, GlobalAveragePooling2D};
    use strata_core::Rng;

    /// conv 3x3 (relu) -> conv 3x3 -> GAP -> Dense(3, softmax), 6x6x2 input.
    fn small() -> Model {
        let mut m = Model::sequential("small", &[6, 6, 2], 3);
        let mut c = Conv2D::new(4, (3, 3)).named("c1");
        c.activation = Activation::Relu;
        m.add(c).unwrap();
        m.add(Conv2D::new(5, (3, 3)).named("c2")).unwrap();
        m.add(GlobalAveragePooling2D::new(false).named("gap"))
            .unwrap();
        let mut d = Dense::new(3).named("head");
        d.activation = Activation::Softmax;
        m.add(d).unwrap();
        m
    }

    fn input(seed: u64) -> Tensor {
        Tensor::rand_normal(&[1, 6, 6, 2], 0.0, 1.0, &mut Rng::new(seed))
    }

    fn logit(m: &mut Model, x: &Tensor, class: usize) -> f64 {
        let (s, _) = no_grad_scores(m, x);
        s.to_vec()[class] as f64
    }

    fn no_grad_scores(m: &mut Model, x: &Tensor) -> (Tensor, Option<Tensor>) {
        strata_core::no_grad(|| scores(m, x, None, None)).unwrap()
    }

    #[test]
    fn gradient_matches_finite_differences_of_the_logit() {
        let mut m = small();
        let x = input(1);
        let a = saliency(&mut m, &x, Some(1), SaliencyMethod::Gradient).unwrap();
        assert_eq!(a.values.shape(), &[6, 6, 2]);
        assert_eq!(a.class, 1);
        let xv = x.to_vec();
        let g = a.values.to_vec();
        let eps = 1e-2f32;
        let mut worst = 0.0f64;
        for i in (0..xv.len()).step_by(5) {
            let mut p = xv.clone();
            p[i] += eps;
            let mut q = xv.clone();
            q[i] -= eps;
            let fp = logit(&mut m, &Tensor::from_vec(p, x.shape()).unwrap(), 1);
            let fq = logit(&mut m, &Tensor::from_vec(q, x.shape()).unwrap(), 1);
            let fd = (fp - fq) / (2.0 * eps as f64);
            worst = worst.max((fd - g[i] as f64).abs());
        }
        let scale = g.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
        assert!(worst <= 2e-2 * scale.max(1e-3), "worst {worst} of {scale}");
        // the score is the logit, not the probability
        assert!((a.score as f64 - logit(&mut m, &x, 1)).abs() < 1e-6);
    }

    #[test]
    fn integrated_gradients_add_up_to_the_score_difference() {
        let mut m = small();
        let x = input(2);
        let ig = saliency(
            &mut m,
            &x,
            Some(0),
            SaliencyMethod::IntegratedGradients { steps: 300 },
        )
        .unwrap();
        let total: f64 = ig.values.to_vec().iter().map(|&v| v as f64).sum();
        let zero = Tensor::zeros(x.shape());
        let want = logit(&mut m, &x, 0) - logit(&mut m, &zero, 0);
        // completeness holds up to the trapezoid rule's error
        assert!(
            (total - want).abs() <= 0.02 * want.abs().max(1e-2),
            "sum {total} vs f(x) - f(0) = {want}"
        );
    }

    #[test]
    fn smoothgrad_is_seeded_and_tends_to_the_gradient() {
        let mut m = small();
        let x = input(3);
        let sg = |m: &mut Model, seed, noise| {
            saliency(
                m,
                &x,
                Some(2),
                SaliencyMethod::SmoothGrad {
                    samples: 5,
                    noise,
                    seed,
                },
            )
            .unwrap()
            .values
            .to_vec()
        };
        assert_eq!(sg(&mut m, 4, 0.2), sg(&mut m, 4, 0.2));
        assert_ne!(sg(&mut m, 4, 0.2), sg(&mut m, 5, 0.2));
        let plain = saliency(&mut m, &x, Some(2), SaliencyMethod::Gradient)
            .unwrap()
            .values
            .to_vec();
        for (a, b) in sg(&mut m, 4, 0.0).iter().zip(&plain) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0));
        }
    }

    #[test]
    fn grad_cam_before_global_pooling_is_the_class_activation_map() {
        // y_k = Σ_c W[c, k] mean_hw(A_c) + b_k, so ∂y/∂A_c = W[c, k] / (H'W')
        // at every position: Grad-CAM is Zhou et al.'s CAM scaled by 1/(H'W').
        let mut m = small();
        let x = input(4);
        let cam = grad_cam(&mut m, &x, "c2", Some(2), false).unwrap();
        assert_eq!(cam.map.shape(), &[2, 2]);
        let a = layer_output(&mut m, &x, "c2").unwrap();
        assert_eq!(a.shape(), &[2, 2, 5]);
        let head = m.layers.iter().find(|l| l.name() == "head").unwrap();
        let w = head.weights()[0].value.to_vec(); // (5, 3)
        let av = a.to_vec();
        for (p, got) in cam.map.to_vec().iter().enumerate() {
            let v: f64 = (0..5)
                .map(|c| w[c * 3 + 2] as f64 / 4.0 * av[p * 5 + c] as f64)
                .sum();
            assert!((v.max(0.0) - *got as f64).abs() < 1e-5, "{v} vs {got}");
        }
        let plus = grad_cam(&mut m, &x, "c2", Some(2), true).unwrap();
        assert_eq!(plus.map.shape(), &[2, 2]);
        assert!(plus.map.to_vec().iter().all(|v| *v >= 0.0));
    }

    #[test]
    fn bad_requests_are_errors() {
        let mut m = small();
        let x = input(5);
        let e = grad_cam(&mut m, &x, "nope", None, false).unwrap_err();
        assert!(e.to_string().contains("no layer named 'nope'"), "{e}");
        let e = grad_cam(&mut m, &x, "gap", None, false).unwrap_err();
        assert!(e.to_string().contains("spatial axes"), "{e}");
        let e = saliency(&mut m, &x, Some(3), SaliencyMethod::Gradient).unwrap_err();
        assert!(e.to_string().contains("class 3 is out of range"), "{e}");
        let two = Tensor::zeros(&[2, 6, 6, 2]);
        let e = saliency(&mut m, &two, None, SaliencyMethod::Gradient).unwrap_err();
        assert!(e.to_string().contains("one sample"), "{e}");
        let e = saliency(
            &mut m,
            &x,
            None,
            SaliencyMethod::IntegratedGradients { steps: 1 },
        )
        .unwrap_err();
        assert!(e.to_string().contains("at least 2 steps"), "{e}");
        assert_eq!(last_spatial_layer(&m).unwrap(), "c2");
    }
}
