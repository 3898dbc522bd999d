//! Broadcasting arithmetic: add, sub, mul, div, and their scalar forms.
//!
//! Backward reduces each gradient back to its operand's shape (summing over the
//! axes that were broadcast).

use crate::autograd::GraphRef;
use crate::error::Result;
use crate::kernels::{buffers, parallel};
use crate::ops::relu_mask;
use crate::shape::{broadcast_shapes, broadcast_strides, numel, strides};
use crate::tensor::Tensor;

/// Applies `f` over the broadcast of `a` (shape `sa`) and `b` (shape `sb`).
fn broadcast_zip(
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    out_shape: &[usize],
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Vec<f32> {
    if sa == sb {
        return parallel::zip_map(a, b, f);
    }
    let n = numel(out_shape);
    let rank = out_shape.len();
    let mut out = buffers::zeroed(n);
    if n == 0 {
        return out;
    }
    let sta = broadcast_strides(sa, out_shape);
    let stb = broadcast_strides(sb, out_shape);
    let last = out_shape[rank - 1];
    let (la, lb) = (sta[rank - 1], stb[rank - 1]);
    let ostr = strides(out_shape);
    // one row (the last axis) at a time
    let row = |r: usize, o: &mut [f32]| {
        let mut rem = r * last;
        let (mut oa, mut ob) = (0, 0);
        for ax in 0..rank - 1 {
            let i = rem / ostr[ax];
            rem %= ostr[ax];
            oa += i * sta[ax];
            ob += i * stb[ax];
        }
        for (j, o) in o.iter_mut().enumerate() {
            *o = f(a[oa + j * la], b[ob + j * lb]);
        }
    };
    let rows_per_chunk = (parallel::PAR_THRESHOLD / last.max(1)).max(1);
    parallel::for_each_chunk_mut(&mut out, rows_per_chunk * last, |ci, chunk| {
        for (k, o) in chunk.chunks_mut(last).enumerate() {
            row(ci * rows_per_chunk + k, o);
        }
    });
    out
}

/// Sums `g` (of shape `from`) down to `to`, undoing a broadcast.
pub(crate) fn reduce_to_shape(g: &[f32], from: &[usize], to: &[usize]) -> Vec<f32> {
    if from == to {
        return crate::kernels::buffers::copy_of(g);
    }
    let mut out = buffers::zeroed(numel(to));
    let st = broadcast_strides(to, from);
    let fstr = strides(from);
    for (idx, &v) in g.iter().enumerate() {
        let mut rem = idx;
        let mut off = 0;
        for ax in 0..from.len() {
            let i = rem / fstr[ax];
            rem %= fstr[ax];
            off += i * st[ax];
        }
        out[off] += v;
    }
    out
}

fn binary(
    a: &Tensor,
    b: &Tensor,
    op: &'static str,
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let shape = broadcast_shapes(op, a.shape(), b.shape())?;
    let data = broadcast_zip(&a.data(), a.shape(), &b.data(), b.shape(), &shape, f);
    Ok((data, shape))
}

impl Tensor {
    /// `self + other`, broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        let (data, shape) = binary(self, other, "add", |x, y| x + y)?;
        let (sa, sb, so) = (self.shape().to_vec(), other.shape().to_vec(), shape.clone());
        let (ea, eb) = (GraphRef::of(self), GraphRef::of(other));
        Ok(Tensor::from_op_same_grad(
            data,
            shape,
            "add",
            &[self, other],
            (0, 1),
            move |g| {
                // an input of the output's shape gets `g` itself; when both
                // do, the engine shares the one buffer between them (a
                // residual Add copies nothing); an input that needs no
                // gradient gets none
                let need = [ea.requires_grad(), eb.requires_grad()];
                let pass = [need[0] && sa == so, need[1] && sb == so];
                let mut grads = vec![
                    (need[0] && !pass[0]).then(|| reduce_to_shape(&g, &so, &sa)),
                    (need[1] && !pass[1]).then(|| reduce_to_shape(&g, &so, &sb)),
                ];
                match pass {
                    [true, true] => grads[0] = Some(g),
                    [true, false] => grads[0] = Some(g),
                    [false, true] => grads[1] = Some(g),
                    [false, false] => crate::kernels::buffers::recycle(g),
                }
                grads
            },
        ))
    }

    /// `max(self + other, 0)`: a residual block's Add then ReLU as one op,
    /// bitwise `self.add(other)?.relu()` and the same gradients, without the
    /// sum's buffer or its two sweeps. Operands of different shapes
    /// (broadcasting) go through the two ops.
    pub fn add_relu(&self, other: &Tensor) -> Result<Tensor> {
        if self.shape() != other.shape() {
            return Ok(self.add(other)?.relu());
        }
        let record = crate::autograd::should_record(&[self, other]);
        let (data, mask) = relu_mask::add_relu(&self.data(), &other.data(), record);
        let (ea, eb) = (GraphRef::of(self), GraphRef::of(other));
        Ok(Tensor::from_op_same_grad(
            data,
            self.shape().to_vec(),
            "add_relu",
            &[self, other],
            (0, 1),
            move |mut g| {
                // the ReLU's rule, over the gradient itself, then the Add's:
                // both inputs take the same gradient, one buffer the engine
                // shares between them
                let need = [ea.requires_grad(), eb.requires_grad()];
                match (need, &mask) {
                    ([true, _], Some(m)) => {
                        relu_mask::masked_in_place(&mut g, m);
                        vec![Some(g), None]
                    }
                    ([false, true], Some(m)) => {
                        relu_mask::masked_in_place(&mut g, m);
                        vec![None, Some(g)]
                    }
                    _ => {
                        crate::kernels::buffers::recycle(g);
                        vec![None, None]
                    }
                }
            },
        ))
    }

    /// `self - other`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        let (data, shape) = binary(self, other, "sub", |x, y| x - y)?;
        let (sa, sb, so) = (self.shape().to_vec(), other.shape().to_vec(), shape.clone());
        Ok(Tensor::from_op(
            data,
            shape,
            "sub",
            &[self, other],
            move |g| {
                let neg: Vec<f32> = g.iter().map(|v| -v).collect();
                vec![
                    Some(reduce_to_shape(g, &so, &sa)),
                    Some(reduce_to_shape(&neg, &so, &sb)),
                ]
            },
        ))
    }

    /// `self * other` element-wise, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        let (data, shape) = binary(self, other, "mul", |x, y| x * y)?;
        let (a, b, so) = (self.clone(), other.clone(), shape.clone());
        Ok(Tensor::from_op(
            data,
            shape,
            "mul",
            &[self, other],
            move |g| {
                let ga = a.requires_grad().then(|| {
                    let gb = broadcast_zip(g, &so, &b.data(), b.shape(), &so, |g, y| g * y);
                    reduce_to_shape(&gb, &so, a.shape())
                });
                let gb = b.requires_grad().then(|| {
                    let ga = broadcast_zip(g, &so, &a.data(), a.shape(), &so, |g, x| g * x);
                    reduce_to_shape(&ga, &so, b.shape())
                });
                vec![ga, gb]
            },
        ))
    }

    /// `self / other` element-wise, broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        let (data, shape) = binary(self, other, "div", |x, y| x / y)?;
        let (a, b, so) = (self.clone(), other.clone(), shape.clone());
        Ok(Tensor::from_op(
            data,
            shape,
            "div",
            &[self, other],
            move |g| {
                let bd = b.data();
                let ga = a.requires_grad().then(|| {
                    let t = broadcast_zip(g, &so, &bd, b.shape(), &so, |g, y| g / y);
                    reduce_to_shape(&t, &so, a.shape())
                });
                let gb = b.requires_grad().then(|| {
                    // d(x/y)/dy = -x / y^2
                    let gx = broadcast_zip(g, &so, &a.data(), a.shape(), &so, |g, x| -g * x);
                    let t = broadcast_zip(&gx, &so, &bd, b.shape(), &so, |v, y| v / (y * y));
                    reduce_to_shape(&t, &so, b.shape())
                });
                vec![ga, gb]
            },
        ))
    }

    /// `self + c`.
    pub fn add_scalar(&self, c: f32) -> Tensor {
        let data = parallel::map(&self.data(), move |x| x + c);
        Tensor::from_op(data, self.shape().to_vec(), "add_scalar", &[self], |g| {
            vec![Some(g.to_vec())]
        })
    }

    /// `self * c`.
    pub fn mul_scalar(&self, c: f32) -> Tensor {
        let data = parallel::map(&self.data(), move |x| x * c);
        Tensor::from_op(
            data,
            self.shape().to_vec(),
            "mul_scalar",
            &[self],
            move |g| vec![Some(parallel::map(g, move |v| v * c))],
        )
    }

    /// `c - self` (used for `1 - s`).
    pub fn rsub_scalar(&self, c: f32) -> Tensor {
        self.neg().add_scalar(c)
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::check_gradients;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    /// `add_relu` is bitwise `add` then `relu`, values and gradients, for
    /// sizes below and past the parallel threshold, with either or both
    /// inputs taking a gradient; it passes the finite-difference check; a
    /// broadcast goes through the two ops.
    #[test]
    fn add_relu_is_bitwise_add_then_relu() {
        let mut rng = Rng::new(41);
        for n in [5, 300, (1 << 15) + 77] {
            for need in [[true, true], [true, false], [false, true]] {
                let a = Tensor::rand_normal(&[n], 0.0, 1.0, &mut rng);
                let b = Tensor::rand_normal(&[n], 0.0, 1.0, &mut rng);
                let g = Tensor::rand_normal(&[n], 0.0, 1.0, &mut rng);
                let run = |fused: bool| {
                    let (x, y) = (
                        a.detach().requires_grad_(need[0]),
                        b.detach().requires_grad_(need[1]),
                    );
                    let out = if fused {
                        x.add_relu(&y).unwrap()
                    } else {
                        x.add(&y).unwrap().relu()
                    };
                    out.mul(&g).unwrap().sum_all().backward().unwrap();
                    let grad = |t: &Tensor| t.grad().map(|g| g.to_vec());
                    (out.to_vec(), grad(&x), grad(&y))
                };
                assert_eq!(run(true), run(false), "{n} {need:?}");
            }
        }
        let a = Tensor::rand_normal(&[3, 4], 0.0, 1.0, &mut rng).requires_grad_(true);
        let b = Tensor::rand_normal(&[3, 4], 0.0, 1.0, &mut rng).requires_grad_(true);
        check_gradients(&[a.clone(), b.clone()], |t| t[0].add_relu(&t[1]));
        let row = Tensor::rand_normal(&[4], 0.0, 1.0, &mut rng);
        assert_eq!(
            a.add_relu(&row).unwrap().to_vec(),
            a.add(&row).unwrap().relu().to_vec()
        );
    }

    /// `add_relu`'s two inputs share one gradient buffer: a residual block
    /// (the shortcut's input also feeds the other branch, through an op that
    /// only reads its gradient and one that takes it over), the same tensor
    /// on both sides, and a shortcut that is a leaf all get what the two
    /// separate ops give, and the shared buffer is never written while read.
    #[test]
    fn add_relu_shares_one_gradient_between_its_inputs() {
        let mut rng = Rng::new(43);
        let n = (1 << 15) + 9;
        let a = Tensor::rand_normal(&[n], 0.0, 1.0, &mut rng);
        let c = Tensor::rand_normal(&[n], 0.0, 1.0, &mut rng);
        let g = Tensor::rand_normal(&[n], 0.0, 1.0, &mut rng);
        type Graph = fn(&Tensor, &Tensor, bool) -> Tensor;
        let graphs: [Graph; 3] = [
            // x -> exp (reads its gradient) and x as the shortcut
            |x, _, fused| match fused {
                true => x.exp().add_relu(x).unwrap(),
                false => x.exp().add(x).unwrap().relu(),
            },
            // x -> add c (takes its gradient over), then x * the sum
            |x, c, fused| {
                let h = x.add(c).unwrap();
                let out = match fused {
                    true => h.add_relu(x).unwrap(),
                    false => h.add(x).unwrap().relu(),
                };
                out.mul(x).unwrap()
            },
            // the same tensor on both sides
            |x, _, fused| match fused {
                true => x.add_relu(x).unwrap(),
                false => x.add(x).unwrap().relu(),
            },
        ];
        for (i, graph) in graphs.iter().enumerate() {
            let run = |fused: bool| {
                let x = a.detach().requires_grad_(true);
                let out = graph(&x, &c, fused);
                out.mul(&g).unwrap().sum_all().backward().unwrap();
                (out.to_vec(), x.grad().map(|g| g.to_vec()))
            };
            assert_eq!(run(true), run(false), "graph {i}");
        }
    }

    #[test]
    fn add_passes_the_gradient_on_to_each_input_that_needs_it() {
        let n = 70_000; // above the parallel threshold
        let g: Vec<f32> = (0..n).map(|i| (i % 13) as f32 - 6.0).collect();
        let gt = Tensor::from_vec(g.clone(), &[n]).unwrap();
        let x = Tensor::from_vec(vec![1.0; n], &[n])
            .unwrap()
            .requires_grad_(true);
        let c = Tensor::from_vec(vec![2.0; n], &[n]).unwrap();
        let bias = Tensor::from_vec(vec![0.5], &[1])
            .unwrap()
            .requires_grad_(true);
        // x + c (c needs none), x + x (both edges to one tensor), + bias (broadcast)
        let y = x.add(&c).unwrap().add(&x.add(&x).unwrap()).unwrap();
        let y = y.add(&bias).unwrap();
        y.mul(&gt).unwrap().sum_all().backward().unwrap();
        let want: Vec<f32> = g.iter().map(|v| 3.0 * v).collect();
        assert_eq!(x.grad().unwrap().to_vec(), want);
        assert!(c.grad().is_none());
        assert_eq!(bias.grad().unwrap().to_vec(), vec![g.iter().sum::<f32>()]);
    }

    #[test]
    fn broadcast_add_values() {
        let a = Tensor::from_vec(vec![1., 2., 3., 4., 5., 6.], &[2, 3]).unwrap();
        let b = Tensor::from_vec(vec![10., 20., 30.], &[3]).unwrap();
        assert_eq!(
            a.add(&b).unwrap().to_vec(),
            vec![11., 22., 33., 14., 25., 36.]
        );
        let c = Tensor::from_vec(vec![100., 200.], &[2, 1]).unwrap();
        assert_eq!(
            a.add(&c).unwrap().to_vec(),
            vec![101., 102., 103., 204., 205., 206.]
        );
        let e = a.add(&Tensor::zeros(&[2])).unwrap_err();
        assert!(e.to_string().starts_with("add: expected"), "{e}");
    }

    #[test]
    fn gradients_of_broadcast_arithmetic() {
        let mut rng = Rng::new(11);
        let a = Tensor::rand_normal(&[2, 3, 4], 0.0, 1.0, &mut rng);
        let b = Tensor::rand_normal(&[3, 1], 0.0, 1.0, &mut rng);
        let pos = Tensor::rand_uniform(&[4], 1.0, 2.0, &mut rng);
        check_gradients(&[a.clone(), b.clone()], |t| t[0].add(&t[1]));
        check_gradients(&[a.clone(), b.clone()], |t| t[0].sub(&t[1]));
        check_gradients(&[a.clone(), b.clone()], |t| t[0].mul(&t[1]));
        check_gradients(&[a.clone(), pos.clone()], |t| t[0].div(&t[1]));
        check_gradients(&[pos.clone(), a.clone()], |t| {
            t[0].div(&t[1].abs().add_scalar(1.0))
        });
        check_gradients(std::slice::from_ref(&a), |t| {
            Ok(t[0].mul_scalar(3.0).add_scalar(1.0).rsub_scalar(2.0))
        });
    }
}
