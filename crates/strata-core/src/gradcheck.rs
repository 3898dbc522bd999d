//! Central finite differences against the recorded backward of any op.
//!
//! The objective is `sum(f(inputs) * dy)` for a fixed random `dy`, so every output
//! element's gradient is tested. Tensors are float32, so the perturbation is
//! relatively large (1e-2) and sums are taken in f64; the tolerance reflects that.

use crate::autograd::no_grad;
use crate::error::Result;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Result of comparing analytic and numeric gradients.
#[derive(Debug, Clone)]
pub struct GradCheckReport {
    /// Largest |analytic - numeric| over every input element.
    pub max_abs_error: f32,
    /// Worst error divided by the tolerance at that element (<= 1 passes).
    pub worst_ratio: f32,
    pub worst: String,
}

fn objective(y: &Tensor, dy: &[f32]) -> f64 {
    y.data()
        .iter()
        .zip(dy)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

/// Compares gradients of `f` at `inputs` with central differences.
pub fn gradcheck(
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    eps: f32,
    rtol: f32,
    atol: f32,
) -> Result<GradCheckReport> {
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.detach().requires_grad_(true))
        .collect();
    let y = f(&leaves)?;
    let mut rng = Rng::new(0x6ead);
    let dy: Vec<f32> = (0..y.numel()).map(|_| rng.normal()).collect();
    let dyt = Tensor::from_vec(dy.clone(), y.shape())?;
    y.mul(&dyt)?.sum_all().backward()?;
    let mut report = GradCheckReport {
        max_abs_error: 0.0,
        worst_ratio: 0.0,
        worst: String::new(),
    };
    for (k, leaf) in leaves.iter().enumerate() {
        let analytic = leaf
            .grad()
            .map(|g| g.to_vec())
            .unwrap_or(vec![0.0; leaf.numel()]);
        for (i, &a) in analytic.iter().enumerate() {
            let orig = leaf.data()[i];
            let eval = |v: f32| -> Result<f64> {
                leaf.data_mut()[i] = v;
                let y = no_grad(|| f(&leaves))?;
                Ok(objective(&y, &dy))
            };
            let plus = eval(orig + eps)?;
            let minus = eval(orig - eps)?;
            leaf.data_mut()[i] = orig;
            let numeric = ((plus - minus) / (2.0 * eps as f64)) as f32;
            let err = (a - numeric).abs();
            let tol = atol + rtol * numeric.abs().max(a.abs());
            report.max_abs_error = report.max_abs_error.max(err);
            if err / tol > report.worst_ratio {
                report.worst_ratio = err / tol;
                report.worst =
                    format!("input {k} element {i}: analytic {} vs numeric {numeric}", a);
            }
        }
    }
    Ok(report)
}

/// Asserts that [`gradcheck`] passes with the default float32 settings.
/// For tests: panics with the worst element when it fails.
pub fn check_gradients(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let r = gradcheck(inputs, f, 1e-2, 1e-2, 2e-3).expect("gradcheck: forward failed");
    assert!(r.worst_ratio <= 1.0, "gradient check failed: {}", r.worst);
}
