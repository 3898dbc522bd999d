//! Data movement: reshape, permute/transpose, slice, concat, pad, broadcast_to.
//! Each backward moves the gradient back the way the data came.

use crate::error::{fmt_shape, CoreError, Result};
use crate::ops::binary::reduce_to_shape;
use crate::shape::{broadcast_shapes, normalize_axis, numel, split_at_axis, strides};
use crate::tensor::Tensor;

/// Gathers `x` (shape `shape`) permuted by `perm` into a new buffer.
fn permute_data(x: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let in_str = strides(shape);
    let src_str: Vec<usize> = perm.iter().map(|&p| in_str[p]).collect();
    let out_str = strides(&out_shape);
    let mut out = vec![0.0; x.len()];
    for (idx, o) in out.iter_mut().enumerate() {
        let mut rem = idx;
        let mut off = 0;
        for ax in 0..out_shape.len() {
            off += (rem / out_str[ax]) * src_str[ax];
            rem %= out_str[ax];
        }
        *o = x[off];
    }
    out
}

impl Tensor {
    /// Same data, new shape (element counts must agree).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(CoreError::shape(
                "reshape",
                format!(
                    "a shape with {} elements like {}",
                    self.numel(),
                    fmt_shape(self.shape())
                ),
                fmt_shape(shape),
            ));
        }
        Ok(Tensor::from_op(
            self.to_vec(),
            shape.to_vec(),
            "reshape",
            &[self],
            |g| vec![Some(g.to_vec())],
        ))
    }

    /// Reorders axes: output axis `i` is input axis `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let mut sorted = perm.to_vec();
        sorted.sort_unstable();
        if sorted != (0..self.rank()).collect::<Vec<_>>() {
            return Err(CoreError::arg(
                "permute",
                "perm",
                format!(
                    "{perm:?} is not a permutation of the {} axes of {}",
                    self.rank(),
                    fmt_shape(self.shape())
                ),
            ));
        }
        let shape = self.shape().to_vec();
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let data = permute_data(&self.data(), &shape, perm);
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        let os = out_shape.clone();
        Ok(Tensor::from_op(
            data,
            out_shape,
            "permute",
            &[self],
            move |g| vec![Some(permute_data(g, &os, &inverse))],
        ))
    }

    /// Swaps two axes.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let a = normalize_axis("transpose", a, self.rank())?;
        let b = normalize_axis("transpose", b, self.rank())?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Elements `start..end` along `axis`.
    pub fn slice(&self, axis: isize, start: usize, end: usize) -> Result<Tensor> {
        let a = normalize_axis("slice", axis, self.rank())?;
        let (outer, len, inner) = split_at_axis(self.shape(), a);
        if start > end || end > len {
            return Err(CoreError::arg(
                "slice",
                "range",
                format!(
                    "{start}..{end} is outside axis {a} of {}",
                    fmt_shape(self.shape())
                ),
            ));
        }
        let w = end - start;
        let d = self.data();
        let mut out = Vec::with_capacity(outer * w * inner);
        for o in 0..outer {
            out.extend_from_slice(&d[(o * len + start) * inner..(o * len + end) * inner]);
        }
        let mut shape = self.shape().to_vec();
        shape[a] = w;
        let n = self.numel();
        Ok(Tensor::from_op(out, shape, "slice", &[self], move |g| {
            let mut gx = vec![0.0; n];
            for o in 0..outer {
                gx[(o * len + start) * inner..(o * len + end) * inner]
                    .copy_from_slice(&g[o * w * inner..(o + 1) * w * inner]);
            }
            vec![Some(gx)]
        }))
    }

    /// Joins tensors along `axis`; all other axes must agree.
    pub fn concat(tensors: &[Tensor], axis: isize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| CoreError::arg("concat", "tensors", "nothing to concatenate"))?;
        let a = normalize_axis("concat", axis, first.rank())?;
        for t in tensors {
            let ok = t.rank() == first.rank()
                && t.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (x, y))| i == a || x == y);
            if !ok {
                return Err(CoreError::shape(
                    "concat",
                    format!(
                        "shapes equal to {} except on axis {a}",
                        fmt_shape(first.shape())
                    ),
                    fmt_shape(t.shape()),
                ));
            }
        }
        let (outer, _, inner) = split_at_axis(first.shape(), a);
        let lens: Vec<usize> = tensors.iter().map(|t| t.shape()[a]).collect();
        let total: usize = lens.iter().sum();
        let mut out = Vec::with_capacity(outer * total * inner);
        let datas: Vec<_> = tensors.iter().map(|t| t.data()).collect();
        for o in 0..outer {
            for (d, &l) in datas.iter().zip(&lens) {
                out.extend_from_slice(&d[o * l * inner..(o + 1) * l * inner]);
            }
        }
        drop(datas);
        let mut shape = first.shape().to_vec();
        shape[a] = total;
        let refs: Vec<&Tensor> = tensors.iter().collect();
        Ok(Tensor::from_op(out, shape, "concat", &refs, move |g| {
            let mut grads: Vec<Vec<f32>> = lens
                .iter()
                .map(|&l| Vec::with_capacity(outer * l * inner))
                .collect();
            let mut off = 0;
            for _ in 0..outer {
                for (gi, &l) in grads.iter_mut().zip(&lens) {
                    gi.extend_from_slice(&g[off..off + l * inner]);
                    off += l * inner;
                }
            }
            grads.into_iter().map(Some).collect()
        }))
    }

    /// Pads each axis with `(before, after)` copies of `value`.
    pub fn pad(&self, pads: &[(usize, usize)], value: f32) -> Result<Tensor> {
        if pads.len() != self.rank() {
            return Err(CoreError::arg(
                "pad",
                "pads",
                format!(
                    "{} (before, after) pairs for rank {}, found {}",
                    self.rank(),
                    self.rank(),
                    pads.len()
                ),
            ));
        }
        let in_shape = self.shape().to_vec();
        let out_shape: Vec<usize> = in_shape
            .iter()
            .zip(pads)
            .map(|(d, (b, a))| d + b + a)
            .collect();
        let mut out = vec![value; numel(&out_shape)];
        let in_str = strides(&in_shape);
        let out_str = strides(&out_shape);
        let offset_of = |idx: usize| {
            let mut rem = idx;
            let mut off = 0;
            for ax in 0..in_shape.len() {
                off += (rem / in_str[ax] + pads[ax].0) * out_str[ax];
                rem %= in_str[ax];
            }
            off
        };
        for (i, &v) in self.data().iter().enumerate() {
            out[offset_of(i)] = v;
        }
        let offsets: Vec<usize> = (0..self.numel()).map(offset_of).collect();
        Ok(Tensor::from_op(out, out_shape, "pad", &[self], move |g| {
            vec![Some(offsets.iter().map(|&o| g[o]).collect())]
        }))
    }

    /// Repeats this tensor up to `shape` by numpy broadcasting.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let b = broadcast_shapes("broadcast_to", self.shape(), shape)?;
        if b != shape {
            return Err(CoreError::shape(
                "broadcast_to",
                fmt_shape(shape),
                fmt_shape(self.shape()),
            ));
        }
        let mut padded = vec![1; shape.len() - self.rank()];
        padded.extend_from_slice(self.shape());
        let data = crate::ops::reduce::broadcast_back(&self.data(), &padded, shape);
        let (from, to) = (shape.to_vec(), self.shape().to_vec());
        Ok(Tensor::from_op(
            data,
            shape.to_vec(),
            "broadcast_to",
            &[self],
            move |g| vec![Some(reduce_to_shape(g, &from, &to))],
        ))
    }

    /// Collapses every axis after the first: `(b, ...) -> (b, prod(...))`.
    pub fn flatten_batch(&self) -> Result<Tensor> {
        if self.rank() == 0 {
            return Err(CoreError::shape(
                "flatten",
                "a tensor of rank >= 1",
                "a scalar",
            ));
        }
        let b = self.shape()[0];
        self.reshape(&[b, numel(&self.shape()[1..])])
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::check_gradients;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    fn seq(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        Tensor::from_vec((0..n).map(|v| v as f32).collect(), shape).unwrap()
    }

    #[test]
    fn values() {
        let t = seq(&[2, 3]);
        assert_eq!(
            t.transpose(0, 1).unwrap().to_vec(),
            vec![0., 3., 1., 4., 2., 5.]
        );
        assert_eq!(t.slice(1, 1, 3).unwrap().to_vec(), vec![1., 2., 4., 5.]);
        let c = Tensor::concat(&[t.clone(), seq(&[2, 1])], 1).unwrap();
        assert_eq!(c.to_vec(), vec![0., 1., 2., 0., 3., 4., 5., 1.]);
        let p = seq(&[1, 2]).pad(&[(0, 0), (1, 2)], -1.0).unwrap();
        assert_eq!(p.to_vec(), vec![-1., 0., 1., -1., -1.]);
        assert_eq!(
            seq(&[3]).broadcast_to(&[2, 3]).unwrap().to_vec(),
            vec![0., 1., 2., 0., 1., 2.]
        );
        assert!(t.reshape(&[4]).is_err());
        assert!(t.permute(&[0, 0]).is_err());
        assert!(t.slice(0, 1, 3).is_err());
        assert!(Tensor::concat(&[t.clone(), seq(&[3, 1])], 1).is_err());
    }

    #[test]
    fn gradients() {
        let mut r = Rng::new(8);
        let x = Tensor::rand_normal(&[2, 3, 4], 0.0, 1.0, &mut r);
        let y = Tensor::rand_normal(&[2, 1, 4], 0.0, 1.0, &mut r);
        check_gradients(std::slice::from_ref(&x), |t| t[0].reshape(&[6, 4]));
        check_gradients(std::slice::from_ref(&x), |t| t[0].permute(&[2, 0, 1]));
        check_gradients(std::slice::from_ref(&x), |t| t[0].slice(1, 1, 3));
        check_gradients(&[x.clone(), y.clone()], |t| Tensor::concat(t, 1));
        check_gradients(std::slice::from_ref(&x), |t| {
            t[0].pad(&[(0, 1), (2, 0), (1, 1)], 0.5)
        });
        check_gradients(std::slice::from_ref(&y), |t| {
            t[0].broadcast_to(&[3, 2, 3, 4])
        });
    }
}
