//! Grad-CAM (Selvaraju et al. 2017): where a layer looks for a class. The
//! class score's gradient with respect to the layer's output `A` (H', W', C),
//! averaged over the positions, weighs each channel:
//! `cam = ReLU(Σ_c mean_hw(∂y/∂A_c) · A_c)`, as captum's `LayerGradCam`
//! with `relu_attributions=True`. Grad-CAM++ (Chattopadhyay et al. 2018)
//! weighs each position's positive gradient by
//! `α = g² / (2g² + Σ_hw A · g³)` instead.

use strata_core::{no_grad, Tensor};

use super::{class_score_sum, layer_node, one_sample, pick_class, scores};
use crate::error::{NnError, Result};
use crate::model::Model;

/// A class activation map at a layer's resolution.
#[derive(Debug, Clone)]
pub struct Cam {
    pub class: usize,
    pub layer: String,
    /// (H', W'), after the ReLU, before any upsampling or normalisation.
    pub map: Tensor,
}

/// The Grad-CAM (or Grad-CAM++ with `plus`) of `layer` for `class`
/// (default: the top class) and one sample `x` (1, H, W, C).
pub fn grad_cam(
    model: &mut Model,
    x: &Tensor,
    layer: &str,
    class: Option<usize>,
    plus: bool,
) -> Result<Cam> {
    one_sample(model, x)?;
    let (node, shape) = layer_node(model, layer)?;
    let [h, w, c] = shape[..] else {
        return Err(NnError::Spec(format!(
            "layer '{layer}' outputs {} per sample: Grad-CAM needs spatial axes (H, W, C)",
            strata_core::fmt_shape(&shape)
        )));
    };
    let (s, a) = no_grad(|| scores(model, x, Some(node), None))?;
    let class = pick_class(&s, class)?;
    let a = a.ok_or_else(|| NnError::Spec(format!("layer '{layer}' was not computed")))?;
    let leaf = Tensor::from_vec(a.to_vec(), a.shape())?.requires_grad_(true);
    let (s2, _) = scores(model, x, None, Some((node, leaf.clone())))?;
    class_score_sum(&s2, class)?.backward()?;
    let g = leaf
        .grad()
        .ok_or_else(|| {
            NnError::Spec(format!(
                "the class score does not depend on layer '{layer}'"
            ))
        })?
        .to_vec();
    let av = a.to_vec();
    let positions = (h * w) as f64;
    let weights: Vec<f64> = (0..c)
        .map(|ch| {
            let at = |p: usize| (av[p * c + ch] as f64, g[p * c + ch] as f64);
            if plus {
                let sum_a: f64 = (0..h * w).map(|p| at(p).0).sum();
                (0..h * w)
                    .map(|p| {
                        let (_, gi) = at(p);
                        let (g2, g3) = (gi * gi, gi * gi * gi);
                        let denom = 2.0 * g2 + sum_a * g3;
                        let alpha = if denom != 0.0 { g2 / denom } else { 0.0 };
                        alpha * gi.max(0.0)
                    })
                    .sum()
            } else {
                (0..h * w).map(|p| at(p).1).sum::<f64>() / positions
            }
        })
        .collect();
    let map: Vec<f32> = (0..h * w)
        .map(|p| {
            let v: f64 = (0..c).map(|ch| weights[ch] * av[p * c + ch] as f64).sum();
            v.max(0.0) as f32
        })
        .collect();
    Ok(Cam {
        class,
        layer: layer.to_string(),
        map: Tensor::from_vec(map, &[h, w])?,
    })
}
