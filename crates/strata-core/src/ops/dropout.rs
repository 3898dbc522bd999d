//! Inverted dropout (Keras `Dropout` in training mode): each element is kept with
//! probability `1 - rate` and scaled by `1 / (1 - rate)`, so the expected value is
//! unchanged and inference needs no rescaling. The mask comes from the caller's
//! seeded [`Rng`] and is saved for the backward pass.

use crate::error::{CoreError, Result};
use crate::kernels::parallel;
use crate::rng::Rng;
use crate::tensor::Tensor;

impl Tensor {
    /// Zeroes each element with probability `rate` (in `[0, 1)`) and scales the
    /// rest by `1 / (1 - rate)`. `rate == 0` returns `self` unchanged.
    pub fn dropout(&self, rate: f32, rng: &mut Rng) -> Result<Tensor> {
        if !(0.0..1.0).contains(&rate) {
            return Err(CoreError::arg(
                "dropout",
                "rate",
                format!("must be in [0, 1), found {rate}"),
            ));
        }
        if rate == 0.0 {
            return Ok(self.clone());
        }
        let scale = 1.0 / (1.0 - rate);
        let mut mask = vec![0.0; self.numel()];
        rng.fill_unit(&mut mask);
        mask.iter_mut()
            .for_each(|m| *m = if *m < rate { 0.0 } else { scale });
        let y = parallel::zip_map(&self.data(), &mask, |x, m| x * m);
        Ok(Tensor::from_op(
            y,
            self.shape().to_vec(),
            "dropout",
            &[self],
            move |g| vec![Some(parallel::zip_map(g, &mask, |g, m| g * m))],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;

    #[test]
    fn keeps_expected_fraction_scaled_and_is_seeded() {
        let x = Tensor::ones(&[100, 100]);
        let y = x.dropout(0.3, &mut Rng::new(1)).unwrap();
        let kept = y.data().iter().filter(|&&v| v != 0.0).count();
        assert!((6700..7300).contains(&kept), "{kept}");
        assert!(y
            .data()
            .iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        let mean: f32 = y.data().iter().sum::<f32>() / 10_000.0;
        assert!((mean - 1.0).abs() < 0.05, "{mean}");
        let y2 = x.dropout(0.3, &mut Rng::new(1)).unwrap();
        assert_eq!(y.to_vec(), y2.to_vec());
    }

    #[test]
    fn gradient_uses_the_same_mask() {
        let x = Tensor::rand_normal(&[4, 5], 0.0, 1.0, &mut Rng::new(2));
        // a fresh generator per evaluation: the same mask every time
        check_gradients(std::slice::from_ref(&x), |t| {
            t[0].dropout(0.4, &mut Rng::new(9))
        });
        let v = x.detach().requires_grad_(true);
        let y = v.dropout(0.5, &mut Rng::new(3)).unwrap();
        y.sum_all().backward().unwrap();
        let g = v.grad().unwrap().to_vec();
        for (gi, yi) in g.iter().zip(y.to_vec()) {
            assert_eq!(*gi == 0.0, yi == 0.0);
        }
    }

    #[test]
    fn rate_zero_is_identity_and_bad_rates_fail() {
        let x = Tensor::arange(5);
        assert_eq!(
            x.dropout(0.0, &mut Rng::new(1)).unwrap().to_vec(),
            x.to_vec()
        );
        for r in [1.0, -0.1, f32::NAN, 2.0] {
            let e = x.dropout(r, &mut Rng::new(1)).unwrap_err().to_string();
            assert!(e.contains("dropout") && e.contains("rate"), "{e}");
        }
    }
}
