//! Categorical crossentropies: from probabilities as Keras computes them
//! (renormalise, clip to [1e-7, 1 - 1e-7], log), and the fused, stable
//! softmax-crossentropy from logits used after a softmax output layer.

use strata_core::{fmt_shape, Tensor};

use super::{same_shape, Targets};
use crate::error::{NnError, Result};

const EPSILON: f32 = 1e-7;

fn one_hot(labels: &[usize], rows: usize, classes: usize, loss: &str) -> Result<Tensor> {
    if labels.len() != rows {
        return Err(NnError::Training(format!(
            "{loss}: {} labels for {rows} predictions",
            labels.len()
        )));
    }
    let mut v = vec![0.0; rows * classes];
    for (r, &c) in labels.iter().enumerate() {
        if c >= classes {
            return Err(NnError::Training(format!(
                "{loss}: label {c} at sample {r} is not a class id below {classes}"
            )));
        }
        v[r * classes + c] = 1.0;
    }
    Ok(Tensor::from_vec(v, &[rows, classes])?)
}

fn rows_classes(pred: &Tensor, loss: &str) -> Result<(usize, usize)> {
    let classes = pred.shape().last().copied().unwrap_or(0);
    if pred.rank() < 2 || classes == 0 {
        return Err(NnError::Training(format!(
            "{loss}: predictions of shape (batch, ..., classes), found {}",
            fmt_shape(pred.shape())
        )));
    }
    Ok((pred.numel() / classes, classes))
}

/// Keras's crossentropy on probabilities against a dense target distribution.
fn crossentropy_probs(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    let p = pred.div(&pred.sum(&[-1], true)?)?;
    let logp = p.clamp(EPSILON, 1.0 - EPSILON).log();
    Ok(target.mul(&logp)?.sum(&[-1], false)?.neg())
}

/// Per-sample `-log p[label]` with Keras's renormalisation and clipping.
pub fn sparse_categorical_crossentropy(pred: &Tensor, labels: &[usize]) -> Result<Tensor> {
    let (rows, classes) = rows_classes(pred, "sparse_categorical_crossentropy")?;
    let oh =
        one_hot(labels, rows, classes, "sparse_categorical_crossentropy")?.reshape(pred.shape())?;
    crossentropy_probs(pred, &oh)
}

/// Per-sample `-sum_j t_j log p_j` with Keras's renormalisation and clipping.
pub fn categorical_crossentropy(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    same_shape("categorical_crossentropy", pred, target)?;
    crossentropy_probs(pred, target)
}

/// Per-sample `logsumexp(z) - sum_j t_j z_j` from logits `z`, in one pass;
/// the backward is `(softmax(z) - t) * g`.
pub fn softmax_cross_entropy_with_logits(logits: &Tensor, targets: &Targets) -> Result<Tensor> {
    let (rows, classes) = rows_classes(logits, "softmax_cross_entropy")?;
    let target = match targets {
        Targets::Classes(c) => one_hot(c, rows, classes, "softmax_cross_entropy")?.to_vec(),
        Targets::Dense(t) => {
            same_shape("softmax_cross_entropy", logits, t)?;
            t.to_vec()
        }
    };
    let z = logits.data();
    let mut probs = vec![0.0; rows * classes];
    let mut losses = vec![0.0; rows];
    for r in 0..rows {
        let zr = &z[r * classes..(r + 1) * classes];
        let tr = &target[r * classes..(r + 1) * classes];
        let m = zr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let s: f32 = zr.iter().map(|v| (v - m).exp()).sum();
        let lse = m + s.ln();
        let tsum: f32 = tr.iter().sum();
        losses[r] = zr.iter().zip(tr).map(|(zv, tv)| tv * (lse - zv)).sum();
        for j in 0..classes {
            // softmax scaled by the target mass (1 for a distribution)
            probs[r * classes + j] = (zr[j] - m).exp() / s * tsum - tr[j];
        }
    }
    drop(z);
    let mut shape = logits.shape().to_vec();
    shape.pop();
    Ok(Tensor::custom_op(
        losses,
        &shape,
        "softmax_cross_entropy",
        &[logits],
        move |g| {
            let mut dz = probs;
            for (r, &gr) in g.iter().enumerate() {
                dz[r * classes..(r + 1) * classes]
                    .iter_mut()
                    .for_each(|v| *v *= gr);
            }
            vec![Some(dz)]
        },
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::gradcheck::check_gradients;
    use strata_core::Rng;

    #[test]
    fn fused_equals_softmax_then_crossentropy() {
        let z = Tensor::rand_normal(&[4, 5], 0.0, 2.0, &mut Rng::new(1));
        let labels = vec![0, 3, 4, 1];
        let fused =
            softmax_cross_entropy_with_logits(&z, &Targets::Classes(labels.clone())).unwrap();
        let plain = sparse_categorical_crossentropy(&z.softmax(-1).unwrap(), &labels).unwrap();
        assert!(fused.allclose(&plain, 1e-5, 1e-6), "{fused} vs {plain}");
        check_gradients(std::slice::from_ref(&z), |t| {
            softmax_cross_entropy_with_logits(&t[0], &Targets::Classes(labels.clone()))
                .map_err(|e| strata_core::CoreError::Autograd(e.to_string()))
        });
        // stable for huge logits
        let big = Tensor::from_vec(vec![1000.0, -1000.0, 0.0], &[1, 3]).unwrap();
        let l = softmax_cross_entropy_with_logits(&big, &Targets::Classes(vec![1])).unwrap();
        assert_eq!(l.item().unwrap(), 2000.0);
    }

    #[test]
    fn bad_labels_are_errors() {
        let p = Tensor::full(&[2, 3], 1.0 / 3.0);
        let e = sparse_categorical_crossentropy(&p, &[0, 3])
            .unwrap_err()
            .to_string();
        assert!(e.contains("label 3 at sample 1"), "{e}");
        assert!(sparse_categorical_crossentropy(&p, &[0]).is_err());
        assert!(sparse_categorical_crossentropy(&Tensor::zeros(&[3]), &[0]).is_err());
    }
}
