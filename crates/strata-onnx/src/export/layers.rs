//! One strata layer application as ONNX nodes.

use strata_nn::layers::{
    ActivationLayer, Add, AveragePooling2D, BatchNormalization, Blend, Concatenate, Conv2D, Dense,
    DepthwiseConv2D, Dropout, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D,
    Multiply, ReLU, Reshape, Softmax, ZeroPadding2D,
};
use strata_nn::Layer;

use super::graph::{map_axis, Builder, Ctx, Layout, Value, Window};
use super::ops::hwio_to_oihw;
use crate::build::{attr_float, attr_int, attr_ints};
use crate::error::Result;

impl Builder {
    /// Emits the ONNX nodes of one layer application.
    pub(super) fn layer(
        &mut self,
        layer: &dyn Layer,
        base: &str,
        ins: Vec<Value>,
        out_shape: &[usize],
    ) -> Result<Value> {
        let cx = Ctx { layer, base };
        let any = layer.as_any();
        let out = out_shape.to_vec();
        if let Some(l) = any.downcast_ref::<Conv2D>() {
            let mut v = cx.one_input(ins)?;
            cx.image(&v)?;
            let x = self.nchw(&mut v, base);
            let (kshape, k) = cx.required("kernel")?;
            let w = hwio_to_oihw(&kshape, &k);
            let wname = self.init_f32(
                &format!("{base}.kernel"),
                &[kshape[3], kshape[2], kshape[0], kshape[1]],
                &w,
            );
            let window = Window {
                padding: l.padding,
                kernel: l.kernel_size,
                strides: l.strides,
                dilation: l.dilation_rate,
                group: l.groups,
            };
            let y = self.conv(&cx, &v.shape, x, wname, window, l.activation)?;
            return Ok(Value::nchw(y, out));
        }
        if let Some(l) = any.downcast_ref::<DepthwiseConv2D>() {
            let mut v = cx.one_input(ins)?;
            cx.image(&v)?;
            let x = self.nchw(&mut v, base);
            let (kshape, k) = cx.required("depthwise_kernel")?;
            let (kh, kw, c, m) = (kshape[0], kshape[1], kshape[2], kshape[3]);
            // (kh, kw, C, m) -> (C*m, 1, kh, kw); output channel c*m + j.
            let mut w = vec![0.0f32; k.len()];
            for y in 0..kh {
                for xx in 0..kw {
                    for ci in 0..c {
                        for j in 0..m {
                            w[((ci * m + j) * kh + y) * kw + xx] =
                                k[((y * kw + xx) * c + ci) * m + j];
                        }
                    }
                }
            }
            let wname = self.init_f32(&format!("{base}.depthwise_kernel"), &[c * m, 1, kh, kw], &w);
            let window = Window {
                padding: l.padding,
                kernel: l.kernel_size,
                strides: l.strides,
                dilation: l.dilation_rate,
                group: c,
            };
            let y = self.conv(&cx, &v.shape, x, wname, window, l.activation)?;
            return Ok(Value::nchw(y, out));
        }
        if let Some(l) = any.downcast_ref::<Dense>() {
            let mut v = cx.one_input(ins)?;
            let x = self.nhwc(&mut v, base);
            let (kshape, k) = cx.required("kernel")?;
            let wname = self.init_f32(&format!("{base}.kernel"), &kshape, &k);
            let bias = cx.weight("bias")?;
            let rank = v.shape.len() + 1;
            let y = if rank == 2 {
                let mut inputs = vec![x, wname];
                if let Some((bshape, b)) = bias {
                    inputs.push(self.init_f32(&format!("{base}.bias"), &bshape, &b));
                }
                self.op("Gemm", &format!("{base}/gemm"), inputs, vec![])
            } else {
                let y = self.op("MatMul", &format!("{base}/matmul"), vec![x, wname], vec![]);
                match bias {
                    Some((bshape, b)) => {
                        let bname = self.init_f32(&format!("{base}.bias"), &bshape, &b);
                        self.op("Add", &format!("{base}/bias_add"), vec![y, bname], vec![])
                    }
                    None => y,
                }
            };
            let y = self.activation(&cx, l.activation, y, rank, Layout::Nhwc)?;
            return Ok(Value::nhwc(y, out));
        }
        if let Some(l) = any.downcast_ref::<BatchNormalization>() {
            let mut v = cx.one_input(ins)?;
            let c = *v.shape.last().unwrap_or(&0);
            let (_, mean) = cx.required("moving_mean")?;
            let (_, var) = cx.required("moving_variance")?;
            let gamma = cx
                .weight("gamma")?
                .map(|w| w.1)
                .unwrap_or_else(|| vec![1.0; c]);
            let beta = cx
                .weight("beta")?
                .map(|w| w.1)
                .unwrap_or_else(|| vec![0.0; c]);
            let params = [
                ("gamma", gamma),
                ("beta", beta),
                ("moving_mean", mean),
                ("moving_variance", var),
            ];
            if v.shape.len() == 3 || v.shape.len() == 1 {
                // ONNX normalises axis 1: NCHW images, or (N, C).
                let x = self.nchw(&mut v, base);
                let y = self.batch_norm(base, x, c, params, l.epsilon);
                return Ok(if v.is_image() {
                    Value::nchw(y, out)
                } else {
                    Value::nhwc(y, out)
                });
            }
            // Other ranks: the channel axis moved to ONNX's axis 1 and back.
            let x = self.nhwc(&mut v, base);
            let r = v.shape.len() as i64 + 1;
            let mut to_front = vec![0, r - 1];
            to_front.extend(1..r - 1);
            let mut back = vec![0];
            back.extend(2..r);
            back.push(1);
            let t = self.op(
                "Transpose",
                &format!("{base}/channels_first"),
                vec![x],
                vec![attr_ints("perm", to_front)],
            );
            let y = self.batch_norm(base, t, c, params, l.epsilon);
            let y = self.op(
                "Transpose",
                &format!("{base}/channels_last"),
                vec![y],
                vec![attr_ints("perm", back)],
            );
            return Ok(Value::nhwc(y, out));
        }
        if let Some(l) = any.downcast_ref::<MaxPooling2D>() {
            return self.pool(&cx, "MaxPool", ins, l.pool_size, l.strides, l.padding, out);
        }
        if let Some(l) = any.downcast_ref::<AveragePooling2D>() {
            return self.pool(
                &cx,
                "AveragePool",
                ins,
                l.pool_size,
                l.strides,
                l.padding,
                out,
            );
        }
        if let Some(l) = any.downcast_ref::<GlobalAveragePooling2D>() {
            return self.global_pool(&cx, "GlobalAveragePool", ins, l.keepdims, out);
        }
        if let Some(l) = any.downcast_ref::<GlobalMaxPooling2D>() {
            return self.global_pool(&cx, "GlobalMaxPool", ins, l.keepdims, out);
        }
        if let Some(l) = any.downcast_ref::<ActivationLayer>() {
            let mut v = cx.one_input(ins)?;
            let layout = v.current();
            let x = self.form(&mut v, layout, base);
            let y = self.activation(&cx, l.activation, x, v.shape.len() + 1, layout)?;
            return Ok(Value::with(layout, y, out));
        }
        if let Some(l) = any.downcast_ref::<ReLU>() {
            if l.threshold != 0.0 {
                return Err(cx.unsupported(format!("threshold {} (only 0)", l.threshold)));
            }
            let mut v = cx.one_input(ins)?;
            let layout = v.current();
            let x = self.form(&mut v, layout, base);
            let plain = l.negative_slope == 0.0;
            let y = match (l.negative_slope, l.max_value) {
                (_, None) if plain => self.op("Relu", &format!("{base}/relu"), vec![x], vec![]),
                (_, Some(m)) if plain => {
                    let lo = self.init_f32(&format!("{base}/clip_min"), &[], &[0.0]);
                    let hi = self.init_f32(&format!("{base}/clip_max"), &[], &[m]);
                    self.op("Clip", &format!("{base}/clip"), vec![x, lo, hi], vec![])
                }
                (s, max) => {
                    let y = self.op(
                        "LeakyRelu",
                        &format!("{base}/leaky_relu"),
                        vec![x],
                        vec![attr_float("alpha", s)],
                    );
                    match max {
                        Some(m) => {
                            let hi = self.init_f32(&format!("{base}/max_value"), &[], &[m]);
                            self.op("Min", &format!("{base}/min"), vec![y, hi], vec![])
                        }
                        None => y,
                    }
                }
            };
            return Ok(Value::with(layout, y, out));
        }
        if let Some(l) = any.downcast_ref::<Softmax>() {
            let mut v = cx.one_input(ins)?;
            let rank = v.shape.len() + 1;
            let axis = if l.axis < 0 {
                l.axis + rank as isize
            } else {
                l.axis
            };
            if axis <= 0 || axis >= rank as isize {
                return Err(cx.error(format!("axis {} is not a feature axis", l.axis)));
            }
            let layout = v.current();
            let x = self.form(&mut v, layout, base);
            let y = self.op(
                "Softmax",
                &format!("{base}/softmax"),
                vec![x],
                vec![attr_int("axis", map_axis(axis as usize, rank, layout))],
            );
            return Ok(Value::with(layout, y, out));
        }
        if any.downcast_ref::<Dropout>().is_some() {
            // Inference: the identity.
            let mut v = cx.one_input(ins)?;
            v.shape = out;
            return Ok(v);
        }
        if any.downcast_ref::<Flatten>().is_some() || any.downcast_ref::<Reshape>().is_some() {
            let mut v = cx.one_input(ins)?;
            let x = self.nhwc(&mut v, base);
            let y = if any.downcast_ref::<Flatten>().is_some() {
                self.op(
                    "Flatten",
                    &format!("{base}/flatten"),
                    vec![x],
                    vec![attr_int("axis", 1)],
                )
            } else {
                let mut target = vec![0i64];
                target.extend(out.iter().map(|&d| d as i64));
                let s = self.init_i64(&format!("{base}/shape"), &target);
                self.op("Reshape", &format!("{base}/reshape"), vec![x, s], vec![])
            };
            return Ok(Value::nhwc(y, out));
        }
        if let Some(l) = any.downcast_ref::<ZeroPadding2D>() {
            let mut v = cx.one_input(ins)?;
            cx.image(&v)?;
            let x = self.nchw(&mut v, base);
            let ((t, b), (le, r)) = l.padding;
            let pads = [0, 0, t, le, 0, 0, b, r].map(|p| p as i64);
            let p = self.init_i64(&format!("{base}/pads"), &pads);
            let y = self.op("Pad", &format!("{base}/pad"), vec![x, p], vec![]);
            return Ok(Value::nchw(y, out));
        }
        if any.downcast_ref::<Add>().is_some() || any.downcast_ref::<Multiply>().is_some() {
            let op = if any.downcast_ref::<Add>().is_some() {
                "Add"
            } else {
                "Mul"
            };
            let (layout, xs) = self.common_forms(&cx, ins)?;
            let mut it = xs.into_iter();
            let mut y = it.next().unwrap_or_default();
            for x in it {
                y = self.op(
                    op,
                    &format!("{base}/{}", op.to_lowercase()),
                    vec![y, x],
                    vec![],
                );
            }
            return Ok(Value::with(layout, y, out));
        }
        if let Some(l) = any.downcast_ref::<Concatenate>() {
            let rank = out.len() + 1;
            let axis = if l.axis < 0 {
                l.axis + rank as isize
            } else {
                l.axis
            };
            if axis <= 0 || axis >= rank as isize {
                return Err(cx.error(format!("axis {} is not a feature axis", l.axis)));
            }
            let (layout, xs) = self.common_forms(&cx, ins)?;
            let y = self.op(
                "Concat",
                &format!("{base}/concat"),
                xs,
                vec![attr_int("axis", map_axis(axis as usize, rank, layout))],
            );
            return Ok(Value::with(layout, y, out));
        }
        if any.downcast_ref::<Blend>().is_some() {
            // s = sigmoid(alpha); y = a * s + b * (1 - s)
            let (_, alpha) = cx.required("alpha")?;
            if ins.len() != 2 {
                return Err(cx.error(format!("takes 2 inputs, found {}", ins.len())));
            }
            let (layout, xs) = self.common_forms(&cx, ins)?;
            let a = self.init_f32(&format!("{base}.alpha"), &[], &alpha);
            let one = self.init_f32(&format!("{base}/one"), &[], &[1.0]);
            let s = self.op("Sigmoid", &format!("{base}/sigmoid"), vec![a], vec![]);
            let r = self.op(
                "Sub",
                &format!("{base}/one_minus"),
                vec![one, s.clone()],
                vec![],
            );
            let ya = self.op(
                "Mul",
                &format!("{base}/mul_a"),
                vec![xs[0].clone(), s],
                vec![],
            );
            let yb = self.op(
                "Mul",
                &format!("{base}/mul_b"),
                vec![xs[1].clone(), r],
                vec![],
            );
            let y = self.op("Add", &format!("{base}/add"), vec![ya, yb], vec![]);
            return Ok(Value::with(layout, y, out));
        }
        Err(cx.unsupported("the layer type"))
    }

    /// A BatchNormalization node on `x` (channels on axis 1) with the four
    /// per-channel parameters as initializers.
    fn batch_norm(
        &mut self,
        base: &str,
        x: String,
        c: usize,
        params: [(&str, Vec<f32>); 4],
        epsilon: f32,
    ) -> String {
        let mut inputs = vec![x];
        for (name, values) in params {
            inputs.push(self.init_f32(&format!("{base}.{name}"), &[c], &values));
        }
        self.op(
            "BatchNormalization",
            &format!("{base}/batch_norm"),
            inputs,
            vec![attr_float("epsilon", epsilon)],
        )
    }
}
