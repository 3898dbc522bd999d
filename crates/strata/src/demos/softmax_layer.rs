//! What a softmax output layer is: softmax as a function (scores to
//! probabilities), and Dense + softmax as a classifier — multinomial logistic
//! regression — trained on a small three-class problem.

use std::io::Write;

use strata_core::{Rng, Tensor};
use strata_nn::layers::Dense;
use strata_nn::{Activation, FitConfig, Loss, Metric, Model, Optimizer, Targets, Verbosity};

use super::DemoResult;

pub struct Facts {
    pub softmax_of_123: Vec<f32>,
    pub sum: f32,
    pub shift_invariance: f32,
    pub accuracy: f32,
    pub loss: (f32, f32),
    pub row_sum_error: f32,
}

pub fn run(out: &mut dyn Write, epochs: usize) -> DemoResult<Facts> {
    let z = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[1, 3])?;
    let p = z.softmax(-1)?.to_vec();
    let shifted = z.add_scalar(100.0).softmax(-1)?.to_vec();
    let shift = super::max_abs_diff(&p, &shifted);
    writeln!(
        out,
        "softmax([1, 2, 3]) = {p:?}; sum = {:.7}",
        p.iter().sum::<f32>()
    )?;
    writeln!(
        out,
        "softmax([101, 102, 103]) differs by {shift:e}: only differences of scores matter"
    )?;

    // three Gaussian blobs in the plane
    let (n, centres) = (300, [(-2.0f32, 0.0f32), (2.0, 0.0), (0.0, 2.5)]);
    let mut rng = Rng::new(9);
    let mut xs = Vec::with_capacity(n * 2);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 3;
        xs.push(centres[c].0 + 0.7 * rng.normal());
        xs.push(centres[c].1 + 0.7 * rng.normal());
        ys.push(c);
    }
    let x = Tensor::from_vec(xs, &[n, 2])?;
    let y = Targets::Classes(ys);
    let mut m = Model::sequential("softmax_classifier", &[2], 3);
    m.add(Dense::new(3).activation(Activation::Softmax))?;
    m.compile(
        Loss::from_name("sparse_categorical_crossentropy")?,
        Optimizer::adam(0.05),
        &[Metric::Accuracy],
    );
    let h = m.fit(
        std::slice::from_ref(&x),
        &y,
        &FitConfig {
            epochs,
            batch_size: 32,
            seed: 2,
            verbose: Verbosity::Silent,
            ..FitConfig::default()
        },
        &mut [],
    )?;
    let r = m.evaluate(std::slice::from_ref(&x), &y, 300)?;
    let probs = m.predict(std::slice::from_ref(&x), 300)?.remove(0);
    let row_err = probs
        .to_vec()
        .chunks(3)
        .map(|r| (r.iter().sum::<f32>() - 1.0).abs())
        .fold(0.0, f32::max);
    let losses = h.get("loss").unwrap_or(&[]).to_vec();
    let facts = Facts {
        sum: p.iter().sum(),
        softmax_of_123: p,
        shift_invariance: shift,
        accuracy: r.get("accuracy").copied().unwrap_or(0.0),
        loss: (
            losses.first().copied().unwrap_or(f32::NAN),
            losses.last().copied().unwrap_or(f32::NAN),
        ),
        row_sum_error: row_err,
    };
    writeln!(out, "Dense(3, softmax) on 2-d points = multinomial logistic regression p(y|x) = softmax(x·W + b), {} params", m.count_params())?;
    writeln!(
        out,
        "loss {:.4} -> {:.4}; accuracy {:.3}; every row of probabilities sums to 1 within {:e}",
        facts.loss.0, facts.loss.1, facts.accuracy, facts.row_sum_error
    )?;
    Ok(facts)
}
