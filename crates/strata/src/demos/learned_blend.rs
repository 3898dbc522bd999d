//! Mixing two (batch, 512) outputs with a trainable weight: `s = sigmoid(alpha)`,
//! `y = s * V1 + (1 - s) * V2`, alpha starting at 0 (an even mix) — and the
//! non-linear alternative `softmax(W · [V1; V2] + b)` via Concatenate + Dense.

use std::io::Write;

use strata_core::{Rng, Tensor};
use strata_nn::layers::{Blend, Concatenate, Dense, Softmax};
use strata_nn::{Activation, FitConfig, Loss, Metric, Model, Optimizer, Targets, Verbosity};

use super::DemoResult;

pub struct Facts {
    /// sigmoid(alpha) before training and after each epoch.
    pub mix: Vec<f32>,
    pub alpha_final: f32,
    pub blend_loss: (f32, f32),
    pub concat_loss: (f32, f32),
    pub concat_params: usize,
}

/// `samples` examples of `positions` token scores; V1 points at the answer, V2 is noise.
pub fn run(
    out: &mut dyn Write,
    samples: usize,
    positions: usize,
    epochs: usize,
) -> DemoResult<Facts> {
    let mut rng = Rng::new(5);
    let labels: Vec<usize> = (0..samples).map(|_| rng.below(positions)).collect();
    let mut v1 = Tensor::rand_normal(&[samples, positions], 0.0, 1.0, &mut rng).to_vec();
    for (i, &y) in labels.iter().enumerate() {
        v1[i * positions + y] += 4.0;
    }
    let v1 = Tensor::from_vec(v1, &[samples, positions])?;
    let v2 = Tensor::rand_normal(&[samples, positions], 0.0, 1.0, &mut rng);
    let y = Targets::Classes(labels);
    let inputs = [v1, v2];
    let cfg = FitConfig {
        epochs,
        batch_size: 32,
        seed: 1,
        verbose: Verbosity::Silent,
        ..FitConfig::default()
    };

    let mut blend = Model::functional("learned_blend", 0);
    let a = blend.input("v1", &[positions])?;
    let b = blend.input("v2", &[positions])?;
    let mix = blend.apply(Blend::new().named("mix"), &[a, b])?;
    let probs = blend.apply(Softmax::new(-1), &[mix])?;
    blend.set_outputs(&[probs])?;
    blend.compile(
        Loss::from_name("sparse_categorical_crossentropy")?,
        Optimizer::adam(0.1),
        &[Metric::Accuracy],
    );
    let current_mix = |m: &Model| {
        m.layer("mix")
            .and_then(|l| l.as_any().downcast_ref::<Blend>())
            .and_then(|b| b.mix())
            .unwrap_or(f32::NAN)
    };
    let mut mixes = vec![current_mix(&blend)];
    writeln!(
        out,
        "sigmoid(alpha) before training: {:.4} (alpha = 0: an even mix)",
        mixes[0]
    )?;
    let mut losses = Vec::new();
    for e in 0..epochs {
        let h = blend.fit(
            &inputs,
            &y,
            &FitConfig {
                epochs: e + 1,
                initial_epoch: e,
                ..cfg.clone()
            },
            &mut [],
        )?;
        let l = h
            .get("loss")
            .and_then(|v| v.last().copied())
            .unwrap_or(f32::NAN);
        losses.push(l);
        mixes.push(current_mix(&blend));
        writeln!(
            out,
            "epoch {}: loss {l:.4}, sigmoid(alpha) = {:.4}",
            e + 1,
            mixes[e + 1]
        )?;
    }
    let alpha_final = blend
        .layer("mix")
        .map(|l| l.weights()[0].value.to_vec()[0])
        .unwrap_or(f32::NAN);
    writeln!(
        out,
        "alpha after training: {alpha_final:.4}: V1, the informative head, gets weight {:.4}",
        mixes[epochs]
    )?;

    let mut cat = Model::functional("concat_dense", 0);
    let a = cat.input("v1", &[positions])?;
    let b = cat.input("v2", &[positions])?;
    let both = cat.apply(Concatenate::new(-1), &[a, b])?;
    let p = cat.apply(
        Dense::new(positions)
            .activation(Activation::Softmax)
            .named("mix_dense"),
        &[both],
    )?;
    cat.set_outputs(&[p])?;
    cat.compile(
        Loss::from_name("sparse_categorical_crossentropy")?,
        Optimizer::adam(0.01),
        &[Metric::Accuracy],
    );
    let hc = cat.fit(&inputs, &y, &cfg, &mut [])?;
    let closs = hc.get("loss").unwrap_or(&[]).to_vec();
    writeln!(
        out,
        "softmax(W·[V1;V2] + b): W is ({}, {positions}), {} params instead of 1; loss {:.4} -> {:.4}",
        2 * positions,
        cat.count_params(),
        closs.first().copied().unwrap_or(f32::NAN),
        closs.last().copied().unwrap_or(f32::NAN)
    )?;
    Ok(Facts {
        mix: mixes,
        alpha_final,
        blend_loss: (
            losses.first().copied().unwrap_or(f32::NAN),
            losses.last().copied().unwrap_or(f32::NAN),
        ),
        concat_loss: (
            closs.first().copied().unwrap_or(f32::NAN),
            closs.last().copied().unwrap_or(f32::NAN),
        ),
        concat_params: cat.count_params(),
    })
}
