//! Reductions over chosen axes: sum, mean, max (with keepdims).

use crate::error::{CoreError, Result};
use crate::kernels::buffers;
use crate::shape::{normalize_axis, numel, split_at_axis};
use crate::tensor::Tensor;

fn resolve_axes(op: &str, axes: &[isize], rank: usize) -> Result<Vec<usize>> {
    let mut out: Vec<usize> = axes
        .iter()
        .map(|&a| normalize_axis(op, a, rank))
        .collect::<Result<_>>()?;
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(CoreError::arg(
            op,
            "axes",
            format!("repeated axis in {axes:?}"),
        ));
    }
    Ok(out)
}

fn reduced_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, &d) in shape.iter().enumerate() {
        if axes.contains(&i) {
            if keepdims {
                out.push(1);
            }
        } else {
            out.push(d);
        }
    }
    out
}

/// The f64 sum of `x`: blocks of [`SUM_BLOCK`] values, each summed in eight
/// interleaved lanes (so the loop vectorises), and the block sums added in
/// order. Blocks run on all threads for long inputs.
fn sum_f64(x: &[f32]) -> f64 {
    fn block(b: &[f32]) -> f64 {
        let mut lanes = [0f64; 8];
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += v as f64;
            }
        }
        let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
        lanes.iter().sum::<f64>() + tail
    }
    let partials: Vec<f64> = if x.len() >= crate::kernels::parallel::PAR_THRESHOLD {
        use rayon::prelude::*;
        crate::threads::install(|| x.par_chunks(SUM_BLOCK).map(block).collect())
    } else {
        x.chunks(SUM_BLOCK).map(block).collect()
    };
    partials.iter().sum()
}

/// Values per block of [`sum_f64`].
const SUM_BLOCK: usize = 1 << 14;

impl Tensor {
    /// Sum of every element, as a scalar.
    /// Accumulated in f64, in fixed blocks added in order, so the value does not
    /// depend on the thread count.
    pub fn sum_all(&self) -> Tensor {
        let s = sum_f64(&self.data());
        let n = self.numel();
        Tensor::from_op(vec![s as f32], vec![], "sum_all", &[self], move |g| {
            let mut d = crate::kernels::buffers::dirty(n);
            crate::kernels::parallel::for_each_chunk_mut(&mut d, 1 << 16, |_, c| c.fill(g[0]));
            vec![Some(d)]
        })
    }

    /// Mean of every element, as a scalar.
    pub fn mean_all(&self) -> Tensor {
        self.sum_all().mul_scalar(1.0 / self.numel().max(1) as f32)
    }

    /// Sum over `axes` (negative axes count from the end).
    pub fn sum(&self, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        let axes = resolve_axes("sum", axes, self.rank())?;
        let keep_shape = reduced_shape(self.shape(), &axes, true);
        let mut cur: Vec<f32> = self.to_vec();
        let mut shape = self.shape().to_vec();
        for &a in &axes {
            let (outer, len, inner) = split_at_axis(&shape, a);
            let mut out = vec![0.0; outer * inner];
            for o in 0..outer {
                let dst = &mut out[o * inner..(o + 1) * inner];
                for l in 0..len {
                    let src = &cur[(o * len + l) * inner..(o * len + l + 1) * inner];
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                }
            }
            cur = out;
            shape[a] = 1;
        }
        let out_shape = reduced_shape(self.shape(), &axes, keepdims);
        let in_shape = self.shape().to_vec();
        Ok(Tensor::from_op(cur, out_shape, "sum", &[self], move |g| {
            vec![Some(broadcast_back(g, &keep_shape, &in_shape))]
        }))
    }

    /// Mean over `axes`.
    pub fn mean(&self, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        let resolved = resolve_axes("mean", axes, self.rank())?;
        let count: usize = resolved.iter().map(|&a| self.shape()[a]).product();
        Ok(self
            .sum(axes, keepdims)?
            .mul_scalar(1.0 / count.max(1) as f32))
    }

    /// Maximum along one axis; the gradient goes to the first maximal element.
    pub fn max(&self, axis: isize, keepdims: bool) -> Result<Tensor> {
        let a = normalize_axis("max", axis, self.rank())?;
        let (outer, len, inner) = split_at_axis(self.shape(), a);
        if len == 0 {
            return Err(CoreError::arg(
                "max",
                "axis",
                "cannot take the max of an empty axis",
            ));
        }
        let d = self.data();
        let mut out = vec![f32::NEG_INFINITY; outer * inner];
        let mut arg = vec![0usize; outer * inner];
        for o in 0..outer {
            for l in 0..len {
                for i in 0..inner {
                    let v = d[(o * len + l) * inner + i];
                    let k = o * inner + i;
                    if v > out[k] || l == 0 {
                        out[k] = v;
                        arg[k] = l;
                    }
                }
            }
        }
        let out_shape = reduced_shape(self.shape(), &[a], keepdims);
        let n = self.numel();
        Ok(Tensor::from_op(out, out_shape, "max", &[self], move |g| {
            let mut gx = vec![0.0; n];
            for o in 0..outer {
                for i in 0..inner {
                    let k = o * inner + i;
                    gx[(o * len + arg[k]) * inner + i] = g[k];
                }
            }
            vec![Some(gx)]
        }))
    }
}

/// Repeats `g` (shape `small`, same rank as `big`, with 1s on reduced axes) up to `big`.
pub(crate) fn broadcast_back(g: &[f32], small: &[usize], big: &[usize]) -> Vec<f32> {
    let st = crate::shape::broadcast_strides(small, big);
    let bstr = crate::shape::strides(big);
    let mut out = buffers::zeroed(numel(big));
    for (idx, o) in out.iter_mut().enumerate() {
        let mut rem = idx;
        let mut off = 0;
        for ax in 0..big.len() {
            off += (rem / bstr[ax]) * st[ax];
            rem %= bstr[ax];
        }
        *o = g[off];
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::check_gradients;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    #[test]
    fn sum_all_of_a_long_tensor_is_the_f64_sum_and_fills_its_gradient() {
        let n = 3 * super::SUM_BLOCK + 77;
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 37) % 1001) as f32 * 0.001 - 0.4)
            .collect();
        let want: f64 = v.iter().map(|&x| x as f64).sum();
        let x = Tensor::from_vec(v, &[n]).unwrap().requires_grad_(true);
        let s = x.sum_all();
        assert!((s.to_vec()[0] as f64 - want).abs() <= 1e-6 * want.abs().max(1.0));
        assert_eq!(super::sum_f64(&x.to_vec()), super::sum_f64(&x.to_vec()));
        s.mul_scalar(2.5).backward().unwrap();
        assert!(x.grad().unwrap().to_vec().iter().all(|&g| g == 2.5));
    }

    #[test]
    fn values() {
        let t = Tensor::from_vec((0..24).map(|v| v as f32).collect(), &[2, 3, 4]).unwrap();
        let s = t.sum(&[0, 2], false).unwrap();
        assert_eq!(s.shape(), &[3]);
        assert_eq!(s.to_vec(), vec![60., 92., 124.]);
        let m = t.mean(&[-1], true).unwrap();
        assert_eq!(m.shape(), &[2, 3, 1]);
        assert_eq!(m.to_vec()[0], 1.5);
        assert_eq!(
            t.max(1, false).unwrap().to_vec(),
            vec![8., 9., 10., 11., 20., 21., 22., 23.]
        );
        assert_eq!(t.sum_all().item().unwrap(), 276.0);
        assert!(t.sum(&[3], false).is_err());
        assert!(t.sum(&[1, -2], false).is_err());
    }

    #[test]
    fn gradients() {
        let x = Tensor::rand_normal(&[2, 3, 4], 0.0, 1.0, &mut Rng::new(9));
        check_gradients(std::slice::from_ref(&x), |t| t[0].sum(&[0, 2], false));
        check_gradients(std::slice::from_ref(&x), |t| t[0].mean(&[1], true));
        check_gradients(std::slice::from_ref(&x), |t| t[0].max(2, false));
        check_gradients(std::slice::from_ref(&x), |t| Ok(t[0].mean_all()));
    }
}
