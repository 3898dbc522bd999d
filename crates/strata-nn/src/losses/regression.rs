//! Mean squared error (the "quadratic cost") and mean absolute error, averaged
//! over the last axis per sample.

use strata_core::Tensor;

use super::same_shape;
use crate::error::Result;

/// Per-sample `mean_j (p - t)^2`.
pub fn mean_squared_error(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    same_shape("mean_squared_error", pred, target)?;
    Ok(pred.sub(target)?.square().mean(&[-1], false)?)
}

/// Per-sample `mean_j |p - t|`.
pub fn mean_absolute_error(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    same_shape("mean_absolute_error", pred, target)?;
    Ok(pred.sub(target)?.abs().mean(&[-1], false)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::gradcheck::check_gradients;
    use strata_core::Rng;

    #[test]
    fn values_and_gradients() {
        let p = Tensor::from_vec(vec![1.0, 3.0], &[1, 2]).unwrap();
        let t = Tensor::from_vec(vec![0.0, 1.0], &[1, 2]).unwrap();
        assert_eq!(mean_squared_error(&p, &t).unwrap().to_vec(), vec![2.5]);
        assert_eq!(mean_absolute_error(&p, &t).unwrap().to_vec(), vec![1.5]);
        let mut r = Rng::new(3);
        let a = Tensor::rand_normal(&[3, 4], 0.0, 1.0, &mut r);
        let b = Tensor::rand_normal(&[3, 4], 0.0, 1.0, &mut r);
        check_gradients(&[a, b], |t| {
            mean_squared_error(&t[0], &t[1])
                .map_err(|e| strata_core::CoreError::Autograd(e.to_string()))
        });
    }
}
