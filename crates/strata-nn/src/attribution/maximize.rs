//! Activation maximisation: the input pattern a channel of a layer responds
//! to most, found by gradient ascent on the mean of that channel's output
//! from seeded noise, with random jitter (shifting the image a few pixels
//! each step) and a total-variation penalty, which keep the pattern from
//! turning into high-frequency noise (Olah et al., "Feature Visualization",
//! Distill 2017). The image is optimised in picture space [0, 1] and
//! normalised with the model's `mean` and `std` before it goes in.

use strata_core::{Rng, Tensor};

use super::layer_node;
use crate::error::{NnError, Result};
use crate::model::Model;

/// How the ascent runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MaximizeConfig {
    pub steps: usize,
    /// Step size, in picture units per step (the channel's gradient is
    /// scaled to a mean magnitude of 1 first).
    pub learning_rate: f32,
    /// Largest shift, in pixels, on each axis at each step.
    pub jitter: usize,
    /// Weight of the total-variation penalty.
    pub total_variation: f32,
    pub seed: u64,
    /// The model's input normalisation (one value or one per channel).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Default for MaximizeConfig {
    fn default() -> Self {
        MaximizeConfig {
            steps: 128,
            learning_rate: 0.02,
            jitter: 2,
            total_variation: 0.3,
            seed: 0,
            mean: vec![0.0],
            std: vec![1.0],
        }
    }
}

/// Shifts every image of `x` (N, H, W, C) by (dy, dx), wrapping around.
fn roll(x: &[f32], n: usize, (h, w, c): (usize, usize, usize), dy: isize, dx: isize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for i in 0..n {
        for y in 0..h {
            let sy = (y as isize - dy).rem_euclid(h as isize) as usize;
            for xx in 0..w {
                let sx = (xx as isize - dx).rem_euclid(w as isize) as usize;
                let d = ((i * h + y) * w + xx) * c;
                let s = ((i * h + sy) * w + sx) * c;
                out[d..d + c].copy_from_slice(&x[s..s + c]);
            }
        }
    }
    out
}

/// The gradient of the squared total variation Σ (x[p] - x[q])² over
/// horizontal and vertical neighbours, added into `g` times `weight`. (The
/// squared form is smooth: a sign-based one makes fixed-size steps flip
/// neighbours back and forth into a checkerboard.)
fn add_tv_gradient(
    x: &[f32],
    n: usize,
    (h, w, c): (usize, usize, usize),
    weight: f32,
    g: &mut [f32],
) {
    let at = |i: usize, y: usize, xx: usize, ch: usize| ((i * h + y) * w + xx) * c + ch;
    for i in 0..n {
        for y in 0..h {
            for xx in 0..w {
                for ch in 0..c {
                    let p = at(i, y, xx, ch);
                    let right = (xx + 1 < w).then(|| at(i, y, xx + 1, ch));
                    let below = (y + 1 < h).then(|| at(i, y + 1, xx, ch));
                    for q in [right, below].into_iter().flatten() {
                        let d = 2.0 * weight * (x[p] - x[q]);
                        g[p] += d;
                        g[q] -= d;
                    }
                }
            }
        }
    }
}

/// For each of `channels` of `layer`, the picture (H, W, C) in [0, 1] that
/// maximises the channel's mean output, all ascended together as a batch.
pub fn maximize(
    model: &mut Model,
    layer: &str,
    channels: &[usize],
    cfg: &MaximizeConfig,
) -> Result<Vec<Tensor>> {
    let (node, shape) = layer_node(model, layer)?;
    let Some(&width) = shape.last() else {
        return Err(NnError::Spec(format!("layer '{layer}' has no channels")));
    };
    if let Some(bad) = channels.iter().find(|&&c| c >= width) {
        return Err(NnError::Data(format!(
            "channel {bad} is out of range: layer '{layer}' has {width} channels (0 to {})",
            width - 1
        )));
    }
    let [(_, input)] = model.inputs() else {
        return Err(NnError::Spec(
            "maximisation needs a model with one input".into(),
        ));
    };
    let [h, w, c] = input[..] else {
        return Err(NnError::Spec(format!(
            "maximisation needs an image input (H, W, C); the model takes {}",
            strata_core::fmt_shape(input)
        )));
    };
    let n = channels.len();
    let dims = (h, w, c);
    let pick = |v: &[f32], ch: usize| if v.len() == 1 { v[0] } else { v[ch % v.len()] };
    let mut rng = Rng::new(cfg.seed);
    let mut x: Vec<f32> = (0..n * h * w * c)
        .map(|_| (0.5 + rng.normal_with(0.0, 0.2)).clamp(0.0, 1.0))
        .collect();
    let positions: usize = shape[..shape.len() - 1].iter().product();
    let mut mask = vec![0.0f32; n * positions * width];
    for (r, &ch) in channels.iter().enumerate() {
        for p in 0..positions {
            mask[(r * positions + p) * width + ch] = 1.0 / positions as f32;
        }
    }
    let mut out_shape = vec![n];
    out_shape.extend_from_slice(&shape);
    let mask = Tensor::from_vec(mask, &out_shape)?;
    for _ in 0..cfg.steps {
        let j = cfg.jitter as isize;
        let (dy, dx) = (
            rng.below(2 * cfg.jitter + 1) as isize - j,
            rng.below(2 * cfg.jitter + 1) as isize - j,
        );
        let shifted = roll(&x, n, dims, dy, dx);
        let normalised: Vec<f32> = shifted
            .iter()
            .enumerate()
            .map(|(i, v)| (v - pick(&cfg.mean, i % c)) / pick(&cfg.std, i % c))
            .collect();
        let leaf = Tensor::from_vec(normalised, &[n, h, w, c])?.requires_grad_(true);
        let (_, tapped) = scores_or_tap(model, &leaf, node)?;
        tapped
            .mul(&mask)?
            .sum(&[0, 1, 2, 3][..shape.len() + 1], false)?
            .backward()?;
        let g = leaf
            .grad()
            .ok_or_else(|| NnError::Spec(format!("layer '{layer}' does not depend on the input")))?
            .to_vec();
        // back to picture space, undo the shift
        let g: Vec<f32> = g
            .iter()
            .enumerate()
            .map(|(i, v)| v / pick(&cfg.std, i % c))
            .collect();
        let mut g = roll(&g, n, dims, -dy, -dx);
        // the channel's gradient scaled to a mean magnitude of 1, so the
        // penalty's weight means the same for every layer
        for row in g.chunks_exact_mut(h * w * c) {
            let scale = row.iter().map(|v| v.abs()).sum::<f32>() / row.len() as f32;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            row.iter_mut().for_each(|v| *v *= inv);
        }
        add_tv_gradient(&x, n, dims, -cfg.total_variation, &mut g);
        for (xv, gv) in x.iter_mut().zip(&g) {
            *xv = (*xv + cfg.learning_rate * gv).clamp(0.0, 1.0);
        }
    }
    (0..n)
        .map(|r| {
            Ok(Tensor::from_vec(
                x[r * h * w * c..(r + 1) * h * w * c].to_vec(),
                &[h, w, c],
            )?)
        })
        .collect()
}

/// The tapped layer output for a batch (recording the graph).
fn scores_or_tap(model: &mut Model, x: &Tensor, node: usize) -> Result<(Tensor, Tensor)> {
    let fused = model.fusion;
    model.fusion = false;
    let hooks = crate::model::Hooks {
        tap: Some(node),
        replace: None,
    };
    let run = model.run_hooked(std::slice::from_ref(x), false, false, &hooks);
    model.fusion = fused;
    let (mut outs, tapped) = run?;
    let tapped = tapped.ok_or_else(|| NnError::Spec("the layer was not computed".into()))?;
    Ok((outs.remove(0), tapped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Conv2D, Dense, Flatten};

    #[test]
    fn the_pattern_raises_its_channel_and_is_seeded() {
        let mut m = Model::sequential("m", &[8, 8, 1], 1);
        m.add(Conv2D::new(3, (3, 3)).named("c")).unwrap();
        m.add(Flatten::new()).unwrap();
        m.add(Dense::new(2)).unwrap();
        let cfg = MaximizeConfig {
            steps: 40,
            ..Default::default()
        };
        let pats = maximize(&mut m, "c", &[0, 2], &cfg).unwrap();
        assert_eq!(pats.len(), 2);
        assert_eq!(pats[0].shape(), &[8, 8, 1]);
        assert!(pats[0].to_vec().iter().all(|v| (0.0..=1.0).contains(v)));
        // the channel's mean response to its pattern beats its response to grey
        let mean_of = |m: &mut Model, img: &Tensor, ch: usize| {
            let x = img.reshape(&[1, 8, 8, 1]).unwrap();
            let a = super::super::layer_output(m, &x, "c").unwrap().to_vec();
            a.iter().skip(ch).step_by(3).sum::<f32>() / 36.0
        };
        let grey = Tensor::from_vec(vec![0.5; 64], &[8, 8, 1]).unwrap();
        for (p, ch) in pats.iter().zip([0, 2]) {
            assert!(mean_of(&mut m, p, ch) > mean_of(&mut m, &grey, ch));
        }
        let again = maximize(&mut m, "c", &[0, 2], &cfg).unwrap();
        assert_eq!(again[1].to_vec(), pats[1].to_vec());
        assert!(maximize(&mut m, "c", &[3], &cfg).is_err());
    }

    #[test]
    fn roll_and_tv_gradient() {
        let x: Vec<f32> = (0..6).map(|v| v as f32).collect(); // 1x2x3x1
        let r = roll(&x, 1, (2, 3, 1), 0, 1);
        assert_eq!(r, vec![2.0, 0.0, 1.0, 5.0, 3.0, 4.0]);
        assert_eq!(roll(&r, 1, (2, 3, 1), 0, -1), x);
        let mut g = vec![0.0; 6];
        add_tv_gradient(&x, 1, (2, 3, 1), 1.0, &mut g);
        // each neighbour pair (p, q) adds 2(x[p] - x[q]) at p and the
        // opposite at q: x = [[0, 1, 2], [3, 4, 5]], horizontal differences
        // -1, vertical -3, gives [[-8, -6, -4], [4, 6, 8]]
        assert_eq!(g, vec![-8.0, -6.0, -4.0, 4.0, 6.0, 8.0]);
    }
}
