//! The ONNX nodes several layers share: activations, Conv, window padding,
//! pools, and the kernel layout change.

use strata_core::ops::Padding;
use strata_nn::Activation;

use super::graph::{map_axis, pair, Builder, Ctx, Layout, Value, Window};
use crate::build::{attr_int, attr_ints};
use crate::error::{OnnxError, Result};

impl Builder {
    /// Applies a fused activation to `x`, a tensor of `rank` (batch included)
    /// in `layout`; `Linear` returns `x` itself.
    pub(super) fn activation(
        &mut self,
        cx: &Ctx,
        act: Activation,
        x: String,
        rank: usize,
        layout: Layout,
    ) -> Result<String> {
        let base = cx.base;
        let last = map_axis(rank - 1, rank, layout);
        Ok(match act {
            Activation::Linear => x,
            Activation::Relu => self.op("Relu", &format!("{base}/relu"), vec![x], vec![]),
            Activation::Sigmoid => self.op("Sigmoid", &format!("{base}/sigmoid"), vec![x], vec![]),
            Activation::Tanh => self.op("Tanh", &format!("{base}/tanh"), vec![x], vec![]),
            Activation::Softmax => self.op(
                "Softmax",
                &format!("{base}/softmax"),
                vec![x],
                vec![attr_int("axis", last)],
            ),
            Activation::LogSoftmax => self.op(
                "LogSoftmax",
                &format!("{base}/log_softmax"),
                vec![x],
                vec![attr_int("axis", last)],
            ),
            Activation::Softplus => {
                self.op("Softplus", &format!("{base}/softplus"), vec![x], vec![])
            }
            Activation::Silu => {
                let s = self.op(
                    "Sigmoid",
                    &format!("{base}/silu_sigmoid"),
                    vec![x.clone()],
                    vec![],
                );
                self.op("Mul", &format!("{base}/silu"), vec![x, s], vec![])
            }
            Activation::Gelu => {
                // z * Phi(z) = z * 0.5 * (1 + erf(z / sqrt(2)))
                let r2 = self.init_f32(
                    &format!("{base}/gelu_sqrt2"),
                    &[],
                    &[std::f32::consts::SQRT_2],
                );
                let one = self.init_f32(&format!("{base}/gelu_one"), &[], &[1.0]);
                let half = self.init_f32(&format!("{base}/gelu_half"), &[], &[0.5]);
                let d = self.op(
                    "Div",
                    &format!("{base}/gelu_div"),
                    vec![x.clone(), r2],
                    vec![],
                );
                let e = self.op("Erf", &format!("{base}/gelu_erf"), vec![d], vec![]);
                let p = self.op("Add", &format!("{base}/gelu_add"), vec![e, one], vec![]);
                let h = self.op(
                    "Mul",
                    &format!("{base}/gelu_half_mul"),
                    vec![p, half],
                    vec![],
                );
                self.op("Mul", &format!("{base}/gelu"), vec![x, h], vec![])
            }
        })
    }

    /// A Conv node on `x` (NCHW) with the kernel initializer `kernel`, the
    /// layer's bias if it has one, then its fused activation.
    pub(super) fn conv(
        &mut self,
        cx: &Ctx,
        shape: &[usize],
        x: String,
        kernel: String,
        w: Window,
        act: Activation,
    ) -> Result<String> {
        let base = cx.base;
        let mut inputs = vec![x, kernel];
        if let Some((bshape, bias)) = cx.weight("bias")? {
            inputs.push(self.init_f32(&format!("{base}.bias"), &bshape, &bias));
        }
        let pads = self.window(cx, shape, w.padding, w.kernel, w.strides, w.dilation)?;
        let y = self.op(
            "Conv",
            &format!("{base}/conv"),
            inputs,
            vec![
                attr_ints("kernel_shape", pair(w.kernel)),
                attr_ints("strides", pair(w.strides)),
                attr_ints("dilations", pair(w.dilation)),
                attr_ints("pads", pads),
                attr_int("group", w.group as i64),
            ],
        );
        self.activation(cx, act, y, 4, Layout::Nchw)
    }

    /// ONNX `pads` ([top, left, bottom, right]) of a window over an image
    /// value, "same" resolved for its actual size as the layer does.
    pub(super) fn window(
        &mut self,
        cx: &Ctx,
        shape: &[usize],
        padding: Padding,
        kernel: (usize, usize),
        strides: (usize, usize),
        dilation: (usize, usize),
    ) -> Result<Vec<i64>> {
        let g = padding
            .resolve(
                cx.layer.class_name(),
                (shape[0], shape[1]),
                kernel,
                strides,
                dilation,
            )
            .map_err(|source| OnnxError::Core {
                layer: cx.layer.name().to_string(),
                source,
            })?;
        Ok([g.pad_top, g.pad_left, g.pad_bottom, g.pad_right]
            .map(|p| p as i64)
            .to_vec())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn pool(
        &mut self,
        cx: &Ctx,
        op: &str,
        ins: Vec<Value>,
        pool: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
        out: Vec<usize>,
    ) -> Result<Value> {
        let mut v = cx.one_input(ins)?;
        cx.image(&v)?;
        let x = self.nchw(&mut v, cx.base);
        let pads = self.window(cx, &v.shape, padding, pool, strides, (1, 1))?;
        let mut attrs = vec![
            attr_ints("kernel_shape", pair(pool)),
            attr_ints("strides", pair(strides)),
            attr_ints("pads", pads),
        ];
        if op == "AveragePool" {
            // strata (as Keras) averages only the real cells of a window.
            attrs.push(attr_int("count_include_pad", 0));
        }
        let y = self.op(
            op,
            &format!("{}/{}", cx.base, op.to_lowercase()),
            vec![x],
            attrs,
        );
        Ok(Value::nchw(y, out))
    }

    pub(super) fn global_pool(
        &mut self,
        cx: &Ctx,
        op: &str,
        ins: Vec<Value>,
        keepdims: bool,
        out: Vec<usize>,
    ) -> Result<Value> {
        let mut v = cx.one_input(ins)?;
        cx.image(&v)?;
        let x = self.nchw(&mut v, cx.base);
        let y = self.op(
            op,
            &format!("{}/{}", cx.base, op.to_lowercase()),
            vec![x],
            vec![],
        );
        if keepdims {
            // (N, C, 1, 1) is the NCHW form of strata's (N, 1, 1, C).
            return Ok(Value::nchw(y, out));
        }
        let y = self.op(
            "Flatten",
            &format!("{}/flatten", cx.base),
            vec![y],
            vec![attr_int("axis", 1)],
        );
        Ok(Value::nhwc(y, out))
    }
}

/// A Conv2D kernel (kh, kw, C_in/groups, C_out) in ONNX's (C_out, C_in/groups, kh, kw).
pub(super) fn hwio_to_oihw(shape: &[usize], k: &[f32]) -> Vec<f32> {
    let (kh, kw, ci, co) = (shape[0], shape[1], shape[2], shape[3]);
    let mut w = vec![0.0f32; k.len()];
    for y in 0..kh {
        for x in 0..kw {
            for i in 0..ci {
                for o in 0..co {
                    w[((o * ci + i) * kh + y) * kw + x] = k[((y * kw + x) * ci + i) * co + o];
                }
            }
        }
    }
    w
}
