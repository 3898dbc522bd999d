//! Softmax and log-softmax on any axis: max-shifted, fused, one pass per row.

use crate::error::Result;
use crate::kernels::buffers;
use crate::shape::{normalize_axis, split_at_axis};
use crate::tensor::Tensor;

/// Calls `f(row_values_indices)` for every 1-d lane along the axis.
fn for_each_lane(
    outer: usize,
    len: usize,
    inner: usize,
    mut f: impl FnMut(&dyn Fn(usize) -> usize),
) {
    for o in 0..outer {
        for i in 0..inner {
            let base = o * len * inner + i;
            f(&|l| base + l * inner);
        }
    }
}

fn softmax_forward(x: &[f32], outer: usize, len: usize, inner: usize, log: bool) -> Vec<f32> {
    let mut y = buffers::zeroed(x.len());
    for_each_lane(outer, len, inner, |at| {
        let m = (0..len).map(|l| x[at(l)]).fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0.0f32;
        for l in 0..len {
            let e = (x[at(l)] - m).exp();
            y[at(l)] = e;
            s += e;
        }
        if log {
            let ls = s.ln();
            for l in 0..len {
                y[at(l)] = x[at(l)] - m - ls;
            }
        } else {
            for l in 0..len {
                y[at(l)] /= s;
            }
        }
    });
    y
}

impl Tensor {
    /// `exp(x_i) / sum_j exp(x_j)` along `axis`.
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        let a = normalize_axis("softmax", axis, self.rank())?;
        let (outer, len, inner) = split_at_axis(self.shape(), a);
        let y = softmax_forward(&self.data(), outer, len, inner, false);
        let saved = y.clone();
        Ok(Tensor::from_op(
            y,
            self.shape().to_vec(),
            "softmax",
            &[self],
            move |g| {
                // dx = y * (g - sum(g * y))
                let mut dx = buffers::zeroed(g.len());
                for_each_lane(outer, len, inner, |at| {
                    let dot: f32 = (0..len).map(|l| g[at(l)] * saved[at(l)]).sum();
                    for l in 0..len {
                        dx[at(l)] = saved[at(l)] * (g[at(l)] - dot);
                    }
                });
                vec![Some(dx)]
            },
        ))
    }

    /// `x_i - log(sum_j exp(x_j))` along `axis`, without forming the softmax first.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        let a = normalize_axis("log_softmax", axis, self.rank())?;
        let (outer, len, inner) = split_at_axis(self.shape(), a);
        let y = softmax_forward(&self.data(), outer, len, inner, true);
        let saved = y.clone();
        Ok(Tensor::from_op(
            y,
            self.shape().to_vec(),
            "log_softmax",
            &[self],
            move |g| {
                // dx = g - softmax * sum(g)
                let mut dx = buffers::zeroed(g.len());
                for_each_lane(outer, len, inner, |at| {
                    let s: f32 = (0..len).map(|l| g[at(l)]).sum();
                    for l in 0..len {
                        dx[at(l)] = g[at(l)] - saved[at(l)].exp() * s;
                    }
                });
                vec![Some(dx)]
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::check_gradients;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    #[test]
    fn sums_to_one_and_is_stable() {
        let x = Tensor::from_vec(vec![1000., 1001., 1002., -5., 0., 5.], &[2, 3]).unwrap();
        let y = x.softmax(-1).unwrap().to_vec();
        assert!((y[0] + y[1] + y[2] - 1.0).abs() < 1e-6);
        assert!(y.iter().all(|v| v.is_finite()));
        let l = x.log_softmax(1).unwrap().to_vec();
        assert!((l[2] - (-0.407_605_96)).abs() < 1e-5);
    }

    #[test]
    fn gradients_on_each_axis() {
        let x = Tensor::rand_normal(&[2, 3, 4], 0.0, 1.0, &mut Rng::new(4));
        for axis in [0, 1, 2, -1] {
            check_gradients(std::slice::from_ref(&x), |t| t[0].softmax(axis));
            check_gradients(std::slice::from_ref(&x), |t| t[0].log_softmax(axis));
        }
    }
}
