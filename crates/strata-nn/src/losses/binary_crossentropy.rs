//! Binary crossentropy on probabilities, clipped to [1e-7, 1 - 1e-7] as Keras
//! does (so a saturated prediction costs at most 16.118 and has zero gradient),
//! averaged over the last axis.

use strata_core::Tensor;

use super::same_shape;
use crate::error::Result;

const EPSILON: f32 = 1e-7;

/// Per-sample `-mean_j [t log p + (1 - t) log(1 - p)]`.
pub fn binary_crossentropy(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    same_shape("binary_crossentropy", pred, target)?;
    let p = pred.clamp(EPSILON, 1.0 - EPSILON);
    let pos = target.mul(&p.log())?;
    let neg = target.rsub_scalar(1.0).mul(&p.rsub_scalar(1.0).log())?;
    Ok(pos.add(&neg)?.mean(&[-1], false)?.neg())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturated_predictions_are_capped() {
        let p = Tensor::from_vec(vec![0.0], &[1, 1]).unwrap();
        let t = Tensor::from_vec(vec![1.0], &[1, 1]).unwrap();
        let l = binary_crossentropy(&p, &t).unwrap().item().unwrap();
        assert!((l - 16.118_095).abs() < 1e-3, "{l}");
    }
}
