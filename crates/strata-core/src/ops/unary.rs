//! Element-wise functions and their derivatives, side by side.

use crate::kernels::parallel;
use crate::ops::relu_mask;
use crate::tensor::Tensor;

/// erf with |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit), enough for f32.
pub fn erf(x: f32) -> f32 {
    let x = x as f64;
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    (if x >= 0.0 { 1.0 - r } else { r - 1.0 }) as f32
}

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

const INV_SQRT2: f32 = std::f32::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f32 = 0.398_942_3;

impl Tensor {
    /// Applies `f` and records `df(x, y) * g` as the backward. Every `df` here
    /// reads only `x` or only `y`: `uses_y` says which, and the backward calls
    /// `df(v, v)` with that one value (so only `y` ops keep a copy of the output).
    fn unary(
        &self,
        op: &'static str,
        f: impl Fn(f32) -> f32 + Sync + Send,
        df: impl Fn(f32, f32) -> f32 + Sync + Send + 'static,
        uses_y: bool,
    ) -> Tensor {
        let y = parallel::map(&self.data(), f);
        let x = self.clone();
        let saved = (uses_y && crate::autograd::should_record(&[self]))
            .then(|| crate::kernels::buffers::copy_of(&y));
        Tensor::from_op(y, self.shape().to_vec(), op, &[self], move |g| {
            let d = match saved {
                Some(yd) => {
                    let d = parallel::zip_map(g, &yd, |g, v| g * df(v, v));
                    crate::kernels::buffers::recycle(yd);
                    d
                }
                None => parallel::zip_map(g, &x.data(), |g, v| g * df(v, v)),
            };
            vec![Some(d)]
        })
    }

    pub fn neg(&self) -> Tensor {
        self.unary("neg", |x| -x, |_, _| -1.0, false)
    }
    pub fn exp(&self) -> Tensor {
        self.unary("exp", f32::exp, |_, y| y, true)
    }
    /// Natural logarithm (−inf at 0, NaN below).
    pub fn log(&self) -> Tensor {
        self.unary("log", f32::ln, |x, _| 1.0 / x, false)
    }
    pub fn sqrt(&self) -> Tensor {
        self.unary("sqrt", f32::sqrt, |_, y| 0.5 / y, true)
    }
    /// `self^p` for a constant exponent.
    pub fn pow(&self, p: f32) -> Tensor {
        self.unary(
            "pow",
            move |x| x.powf(p),
            move |x, _| p * x.powf(p - 1.0),
            false,
        )
    }
    pub fn square(&self) -> Tensor {
        self.unary("square", |x| x * x, |x, _| 2.0 * x, false)
    }
    /// |x|, with gradient sign(x) (0 at 0).
    pub fn abs(&self) -> Tensor {
        self.unary(
            "abs",
            f32::abs,
            |x, _| {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            },
            false,
        )
    }
    /// Limits values to `[min, max]`; the gradient passes only inside.
    pub fn clamp(&self, min: f32, max: f32) -> Tensor {
        self.unary(
            "clamp",
            move |x| x.max(min).min(max),
            move |x, _| if x >= min && x <= max { 1.0 } else { 0.0 },
            false,
        )
    }
    /// `max(x, 0)`. The backward keeps a bit mask of where the output is positive
    /// (exactly where `x > 0`) rather than `x`, so a residual block's pre-ReLU sum
    /// is freed as soon as the ReLU has run.
    pub fn relu(&self) -> Tensor {
        let y = parallel::map(&self.data(), |x| x.max(0.0));
        let mask = crate::autograd::should_record(&[self]).then(|| relu_mask::positive_mask(&y));
        Tensor::from_op(y, self.shape().to_vec(), "relu", &[self], move |g| {
            vec![mask.map(|m| relu_mask::masked(g, &m))]
        })
    }
    /// Logistic sigmoid, computed without overflow for large |x|.
    pub fn sigmoid(&self) -> Tensor {
        self.unary("sigmoid", sigmoid, |_, y| y * (1.0 - y), true)
    }
    pub fn tanh(&self) -> Tensor {
        self.unary("tanh", f32::tanh, |_, y| 1.0 - y * y, true)
    }
    /// Exact GELU, `x * Φ(x)` (Keras's default, `approximate=False`).
    pub fn gelu(&self) -> Tensor {
        self.unary(
            "gelu",
            |x| 0.5 * x * (1.0 + erf(x * INV_SQRT2)),
            |x, _| 0.5 * (1.0 + erf(x * INV_SQRT2)) + x * INV_SQRT_2PI * (-0.5 * x * x).exp(),
            false,
        )
    }
    /// Comparison `self > c` as 0/1 values (no gradient).
    pub fn gt_scalar(&self, c: f32) -> Tensor {
        Tensor::from_parts(
            parallel::map(&self.data(), move |x| (x > c) as u8 as f32),
            self.shape().to_vec(),
        )
    }
    /// Element-wise equality with another same-shape tensor as 0/1 values.
    pub fn eq_elementwise(&self, other: &Tensor) -> crate::Result<Tensor> {
        if self.shape() != other.shape() {
            return Err(crate::CoreError::shape(
                "eq",
                crate::error::fmt_shape(self.shape()),
                crate::error::fmt_shape(other.shape()),
            ));
        }
        Ok(Tensor::from_parts(
            parallel::zip_map(&self.data(), &other.data(), |a, b| (a == b) as u8 as f32),
            self.shape().to_vec(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::erf;
    use crate::gradcheck::check_gradients;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    fn away_from_zero(shape: &[usize], seed: u64) -> Tensor {
        let t = Tensor::rand_normal(shape, 0.0, 1.0, &mut Rng::new(seed));
        let v = t
            .to_vec()
            .iter()
            .map(|x| x.signum() * (x.abs() + 0.1))
            .collect();
        Tensor::from_vec(v, shape).unwrap()
    }

    #[test]
    fn erf_matches_known_values() {
        assert!((erf(0.5) - 0.520_499_9).abs() < 5e-7, "{}", erf(0.5));
        assert!((erf(-1.5) + 0.966_105_1).abs() < 5e-7);
        assert!(erf(0.0).abs() < 5e-7);
    }

    #[test]
    fn gradients_of_every_unary_op() {
        let x = away_from_zero(&[3, 5], 1);
        let pos = Tensor::rand_uniform(&[3, 5], 0.5, 2.0, &mut Rng::new(2));
        check_gradients(std::slice::from_ref(&x), |t| Ok(t[0].neg()));
        check_gradients(std::slice::from_ref(&x), |t| Ok(t[0].exp()));
        check_gradients(std::slice::from_ref(&pos), |t| Ok(t[0].log()));
        check_gradients(std::slice::from_ref(&pos), |t| Ok(t[0].sqrt()));
        check_gradients(std::slice::from_ref(&pos), |t| Ok(t[0].pow(2.5)));
        check_gradients(std::slice::from_ref(&x), |t| Ok(t[0].square()));
        check_gradients(std::slice::from_ref(&x), |t| Ok(t[0].abs()));
        check_gradients(std::slice::from_ref(&x), |t| Ok(t[0].clamp(-0.55, 0.65)));
        check_gradients(std::slice::from_ref(&x), |t| Ok(t[0].relu()));
        check_gradients(std::slice::from_ref(&x), |t| Ok(t[0].sigmoid()));
        check_gradients(std::slice::from_ref(&x), |t| Ok(t[0].tanh()));
        check_gradients(std::slice::from_ref(&x), |t| Ok(t[0].gelu()));
    }

    #[test]
    fn sigmoid_is_stable_for_large_inputs() {
        let x = Tensor::from_vec(vec![-1000.0, 0.0, 1000.0], &[3]).unwrap();
        assert_eq!(x.sigmoid().to_vec(), vec![0.0, 0.5, 1.0]);
    }

    #[test]
    fn gelu_matches_reference_values() {
        // torch.nn.functional.gelu([-1, 0.5, 2]) (exact erf form)
        let y = Tensor::from_vec(vec![-1.0, 0.5, 2.0], &[3])
            .unwrap()
            .gelu()
            .to_vec();
        for (a, b) in y.iter().zip([-0.158_655_25, 0.345_731_14, 1.954_499_7]) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
