//! Depthwise 2-d convolution (Keras `DepthwiseConv2D`): NHWC input (N, H, W, C),
//! kernel (kh, kw, C, multiplier); output channel `c*multiplier + m` reads input
//! channel `c` through `kernel[:, :, c, m]`.
//!
//! Direct loops, not a loop of grouped convolutions: each output row is one
//! parallel task whose inner loop runs over the contiguous `C*multiplier` axis.
//! Backward: `dx` in gather form (each input row sums what read it, fixed order),
//! `dkernel` as per-image partial sums added in image order, `dbias` column sums.

use crate::error::{fmt_shape, CoreError, Result};
use crate::kernels::parallel;
use crate::ops::conv2d::column_sums;
use crate::ops::padding::{nhwc, Geometry2d, Padding};
use crate::tensor::Tensor;

#[derive(Debug, Clone, Copy)]
struct DwPlan {
    n: usize,
    c: usize,
    mult: usize,
    geo: Geometry2d,
}

impl DwPlan {
    fn cm(&self) -> usize {
        self.c * self.mult
    }
}

fn plan(
    x: &[usize],
    k: &[usize],
    bias: Option<&[usize]>,
    strides: (usize, usize),
    padding: Padding,
    dilation: (usize, usize),
) -> Result<DwPlan> {
    const OP: &str = "depthwise_conv2d";
    let (n, h, w, c) = nhwc(OP, x)?;
    let [kh, kw, kc, mult] = *k else {
        return Err(CoreError::shape(
            OP,
            "a rank-4 kernel (kh, kw, in_channels, depth_multiplier)",
            fmt_shape(k),
        ));
    };
    if kc != c || mult == 0 {
        return Err(CoreError::shape(
            OP,
            format!(
                "kernel (kh, kw, {c}, multiplier >= 1) for input {}",
                fmt_shape(x)
            ),
            format!("kernel {}", fmt_shape(k)),
        ));
    }
    if let Some(b) = bias {
        if b != [c * mult] {
            return Err(CoreError::shape(
                OP,
                format!("bias {}", fmt_shape(&[c * mult])),
                fmt_shape(b),
            ));
        }
    }
    if (strides.0 > 1 || strides.1 > 1) && (dilation.0 > 1 || dilation.1 > 1) {
        return Err(CoreError::arg(
            OP,
            "dilation",
            format!(
                "strides {strides:?} > 1 together with dilation {dilation:?} > 1 is not supported (Keras refuses it)"
            ),
        ));
    }
    let geo = padding.resolve(OP, (h, w), (kh, kw), strides, dilation)?;
    Ok(DwPlan { n, c, mult, geo })
}

fn forward(x: &[f32], k: &[f32], bias: Option<&[f32]>, p: &DwPlan) -> Vec<f32> {
    let g = &p.geo;
    let cm = p.cm();
    let mut out = vec![0.0; p.n * g.out_h * g.out_w * cm];
    let img = g.in_h * g.in_w * p.c;
    parallel::for_each_chunk_mut(&mut out, (g.out_w * cm).max(1), |idx, row| {
        let (n, oh) = (idx / g.out_h, idx % g.out_h);
        let xi = &x[n * img..(n + 1) * img];
        for ow in 0..g.out_w {
            let o = &mut row[ow * cm..(ow + 1) * cm];
            if let Some(b) = bias {
                o.copy_from_slice(b);
            }
            for ki in 0..g.kh {
                let Some(ih) = g.in_row(oh, ki) else { continue };
                for kj in 0..g.kw {
                    let Some(iw) = g.in_col(ow, kj) else { continue };
                    let xs = &xi[(ih * g.in_w + iw) * p.c..][..p.c];
                    let ks = &k[(ki * g.kw + kj) * cm..][..cm];
                    for (c, &xv) in xs.iter().enumerate() {
                        let (oc, kc) =
                            (&mut o[c * p.mult..][..p.mult], &ks[c * p.mult..][..p.mult]);
                        oc.iter_mut().zip(kc).for_each(|(o, &kv)| *o += xv * kv);
                    }
                }
            }
        }
    });
    out
}

fn grad_input(k: &[f32], dy: &[f32], p: &DwPlan) -> Vec<f32> {
    let g = &p.geo;
    let cm = p.cm();
    let mut dx = vec![0.0; p.n * g.in_h * g.in_w * p.c];
    parallel::for_each_chunk_mut(&mut dx, (g.in_w * p.c).max(1), |idx, row| {
        let (n, ih) = (idx / g.in_h, idx % g.in_h);
        for ki in 0..g.kh {
            let Some(oh) = g.out_row(ih, ki) else {
                continue;
            };
            for iw in 0..g.in_w {
                let d = &mut row[iw * p.c..(iw + 1) * p.c];
                for kj in 0..g.kw {
                    let Some(ow) = g.out_col(iw, kj) else {
                        continue;
                    };
                    let gs = &dy[((n * g.out_h + oh) * g.out_w + ow) * cm..][..cm];
                    let ks = &k[(ki * g.kw + kj) * cm..][..cm];
                    for (c, dc) in d.iter_mut().enumerate() {
                        let r = c * p.mult..(c + 1) * p.mult;
                        *dc += gs[r.clone()]
                            .iter()
                            .zip(&ks[r])
                            .map(|(a, b)| a * b)
                            .sum::<f32>();
                    }
                }
            }
        }
    });
    dx
}

fn grad_kernel(x: &[f32], dy: &[f32], p: &DwPlan) -> Vec<f32> {
    let g = &p.geo;
    let cm = p.cm();
    let klen = g.kh * g.kw * cm;
    let img = g.in_h * g.in_w * p.c;
    // one partial kernel gradient per image, summed in image order afterwards
    let mut partial = vec![0.0; p.n * klen];
    parallel::for_each_chunk_mut(&mut partial, klen.max(1), |n, dk| {
        let xi = &x[n * img..(n + 1) * img];
        for oh in 0..g.out_h {
            for ki in 0..g.kh {
                let Some(ih) = g.in_row(oh, ki) else { continue };
                for ow in 0..g.out_w {
                    let gs = &dy[((n * g.out_h + oh) * g.out_w + ow) * cm..][..cm];
                    for kj in 0..g.kw {
                        let Some(iw) = g.in_col(ow, kj) else { continue };
                        let xs = &xi[(ih * g.in_w + iw) * p.c..][..p.c];
                        let d = &mut dk[(ki * g.kw + kj) * cm..][..cm];
                        for (c, &xv) in xs.iter().enumerate() {
                            let r = c * p.mult..(c + 1) * p.mult;
                            d[r.clone()]
                                .iter_mut()
                                .zip(&gs[r])
                                .for_each(|(d, &gv)| *d += xv * gv);
                        }
                    }
                }
            }
        }
    });
    column_sums(&partial, klen)
}

impl Tensor {
    /// Keras `DepthwiseConv2D`: NHWC `self` (N, H, W, C), `kernel` (kh, kw, C, multiplier),
    /// optional `bias` (C*multiplier,) gives (N, OH, OW, C*multiplier).
    pub fn depthwise_conv2d(
        &self,
        kernel: &Tensor,
        bias: Option<&Tensor>,
        strides: (usize, usize),
        padding: Padding,
        dilation: (usize, usize),
    ) -> Result<Tensor> {
        let p = plan(
            self.shape(),
            kernel.shape(),
            bias.map(|b| b.shape()),
            strides,
            padding,
            dilation,
        )?;
        let data = {
            let bd = bias.map(|b| b.data());
            forward(
                &self.data(),
                &kernel.data(),
                bd.as_deref().map(|v| &v[..]),
                &p,
            )
        };
        let shape = vec![p.n, p.geo.out_h, p.geo.out_w, p.cm()];
        let mut inputs = vec![self, kernel];
        inputs.extend(bias);
        let (x, k, has_bias) = (self.clone(), kernel.clone(), bias.is_some());
        let b_grad = bias.is_some_and(|b| b.requires_grad());
        Ok(Tensor::from_op(
            data,
            shape,
            "depthwise_conv2d",
            &inputs,
            move |g| {
                let dx = x.requires_grad().then(|| grad_input(&k.data(), g, &p));
                let dk = k.requires_grad().then(|| grad_kernel(&x.data(), g, &p));
                let mut grads = vec![dx, dk];
                if has_bias {
                    grads.push(b_grad.then(|| column_sums(g, p.cm())));
                }
                grads
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::ops::conv2d::Conv2dConfig;
    use crate::rng::Rng;

    /// A depthwise conv is a grouped conv with groups = C and the kernel laid out
    /// (kh, kw, 1, C*mult): the (slower) grouped conv2d is the oracle.
    #[test]
    fn matches_grouped_conv2d_on_random_configs() {
        let mut rng = Rng::new(31);
        for case in 0..40 {
            let (c, mult) = (1 + rng.below(4), 1 + rng.below(3));
            let (kh, kw) = (1 + rng.below(3), 1 + rng.below(3));
            let (s, d) = if rng.below(2) == 0 {
                ((1 + rng.below(2), 1 + rng.below(3)), (1, 1))
            } else {
                ((1, 1), (1 + rng.below(2), 1 + rng.below(2)))
            };
            let padding = [Padding::Same, Padding::Valid, Padding::symmetric(1)][rng.below(3)];
            let (h, w) = (
                (kh - 1) * d.0 + 1 + rng.below(4),
                (kw - 1) * d.1 + 1 + rng.below(4),
            );
            let n = 1 + rng.below(2);
            let x = Tensor::rand_normal(&[n, h, w, c], 0.0, 1.0, &mut rng).requires_grad_(true);
            let k =
                Tensor::rand_normal(&[kh, kw, c, mult], 0.0, 1.0, &mut rng).requires_grad_(true);
            let b = Tensor::rand_normal(&[c * mult], 0.0, 1.0, &mut rng).requires_grad_(true);
            let y = x.depthwise_conv2d(&k, Some(&b), s, padding, d).unwrap();
            let k2 = k.reshape(&[kh, kw, 1, c * mult]).unwrap();
            let cfg = Conv2dConfig {
                strides: s,
                padding,
                dilation: d,
                groups: c,
                ..Default::default()
            };
            let y2 = x.conv2d(&k2, Some(&b), cfg).unwrap();
            assert!(y.allclose(&y2, 1e-5, 1e-5), "case {case}");
            let dy = Tensor::rand_normal(y.shape(), 0.0, 1.0, &mut rng);
            y.mul(&dy).unwrap().sum_all().backward().unwrap();
            let (gx, gk, gb) = (x.grad().unwrap(), k.grad().unwrap(), b.grad().unwrap());
            for t in [&x, &k, &b] {
                t.zero_grad();
            }
            y2.mul(&dy).unwrap().sum_all().backward().unwrap();
            assert!(
                gx.allclose(&x.grad().unwrap(), 1e-4, 1e-5),
                "dx case {case}"
            );
            assert!(
                gk.allclose(&k.grad().unwrap(), 1e-4, 1e-5),
                "dk case {case}"
            );
            assert!(
                gb.allclose(&b.grad().unwrap(), 1e-4, 1e-5),
                "db case {case}"
            );
        }
    }

    fn gc(xs: &[usize], ks: &[usize], s: (usize, usize), p: Padding, d: (usize, usize)) {
        let mut rng = Rng::new(xs.iter().chain(ks).sum::<usize>() as u64);
        let x = Tensor::rand_normal(xs, 0.0, 1.0, &mut rng);
        let k = Tensor::rand_normal(ks, 0.0, 1.0, &mut rng);
        let b = Tensor::rand_normal(&[ks[2] * ks[3]], 0.0, 1.0, &mut rng);
        check_gradients(&[x, k, b], |t| {
            t[0].depthwise_conv2d(&t[1], Some(&t[2]), s, p, d)
        });
    }

    #[test]
    fn gradients_multiplier_stride_same_dilation() {
        gc(&[2, 4, 5, 2], &[3, 3, 2, 1], (1, 1), Padding::Valid, (1, 1));
        gc(&[1, 5, 4, 2], &[3, 3, 2, 2], (1, 1), Padding::Same, (1, 1));
        gc(&[1, 6, 5, 2], &[3, 3, 2, 2], (2, 2), Padding::Same, (1, 1));
        gc(&[1, 5, 5, 1], &[2, 2, 1, 3], (1, 1), Padding::Same, (2, 2));
    }

    #[test]
    fn parallel_runs_are_bitwise_identical_and_empty_batches_work() {
        let mut rng = Rng::new(33);
        let run = || {
            let x = Tensor::rand_normal(&[4, 32, 32, 16], 0.0, 1.0, &mut Rng::new(1))
                .requires_grad_(true);
            let k = Tensor::rand_normal(&[3, 3, 16, 2], 0.0, 1.0, &mut Rng::new(2))
                .requires_grad_(true);
            let y = x
                .depthwise_conv2d(&k, None, (1, 1), Padding::Same, (1, 1))
                .unwrap();
            y.square().sum_all().backward().unwrap();
            (
                y.to_vec(),
                x.grad().unwrap().to_vec(),
                k.grad().unwrap().to_vec(),
            )
        };
        assert_eq!(run(), run());
        let x = Tensor::zeros(&[0, 5, 5, 2]).requires_grad_(true);
        let k = Tensor::rand_normal(&[3, 3, 2, 2], 0.0, 1.0, &mut rng).requires_grad_(true);
        let y = x
            .depthwise_conv2d(&k, None, (2, 2), Padding::Same, (1, 1))
            .unwrap();
        assert_eq!(y.shape(), &[0, 3, 3, 4]);
        y.sum_all().backward().unwrap();
        assert_eq!(k.grad().unwrap().to_vec(), vec![0.0; 36]);
    }

    #[test]
    fn errors_name_op_and_shapes() {
        let x = Tensor::zeros(&[1, 5, 5, 3]);
        let m = x
            .depthwise_conv2d(
                &Tensor::zeros(&[3, 3, 2, 1]),
                None,
                (1, 1),
                Padding::Valid,
                (1, 1),
            )
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("depthwise_conv2d") && m.contains("(3, 3, 2, 1)"),
            "{m}"
        );
        let k = Tensor::zeros(&[3, 3, 3, 2]);
        assert!(x
            .depthwise_conv2d(
                &k,
                Some(&Tensor::zeros(&[3])),
                (1, 1),
                Padding::Valid,
                (1, 1)
            )
            .is_err());
        assert!(x
            .depthwise_conv2d(&k, None, (2, 2), Padding::Valid, (2, 2))
            .is_err());
        assert!(x
            .depthwise_conv2d(&k, None, (0, 1), Padding::Valid, (1, 1))
            .is_err());
        assert!(Tensor::zeros(&[5, 5, 3])
            .depthwise_conv2d(&k, None, (1, 1), Padding::Valid, (1, 1))
            .is_err());
    }
}
