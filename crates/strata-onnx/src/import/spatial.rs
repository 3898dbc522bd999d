//! The image operators: Conv, BatchNormalization, MaxPool, AveragePool,
//! the global pools and Pad.

use serde_json::json;

use super::decode::Attrs;
use super::value::Val;
use super::{Importer, Item, NodeResult};
use crate::proto::NodeProto;

/// Padding per side: top, bottom, left, right.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pads {
    t: usize,
    b: usize,
    l: usize,
    r: usize,
}

impl Pads {
    fn is_zero(&self) -> bool {
        *self
            == Pads {
                t: 0,
                b: 0,
                l: 0,
                r: 0,
            }
    }
    /// strata's spec form: "valid" or `[[top, bottom], [left, right]]`.
    fn spec(&self) -> serde_json::Value {
        if self.is_zero() {
            json!("valid")
        } else {
            json!([[self.t, self.b], [self.l, self.r]])
        }
    }
}

/// A window's geometry from a Conv or pool node's attributes.
struct Window {
    kernel: (usize, usize),
    strides: (usize, usize),
    dilations: (usize, usize),
    pads: Pads,
}

fn pair(v: Option<Vec<i64>>, default: (usize, usize), what: &str) -> NodeResult<(usize, usize)> {
    match v.as_deref() {
        None => Ok(default),
        Some([a, b]) if *a > 0 && *b > 0 && *a <= 1 << 16 && *b <= 1 << 16 => {
            Ok((*a as usize, *b as usize))
        }
        Some(other) => Err(format!("{what} {other:?} (2-D windows only)")),
    }
}

/// Reads kernel, strides, dilations and padding (explicit `pads` or
/// `auto_pad`) for an input of `hw`.
fn window(a: &Attrs, kernel: (usize, usize), hw: (usize, usize)) -> NodeResult<Window> {
    let strides = pair(a.ints("strides"), (1, 1), "strides")?;
    let dilations = pair(a.ints("dilations"), (1, 1), "dilations")?;
    let eff = (
        (kernel.0 - 1) * dilations.0 + 1,
        (kernel.1 - 1) * dilations.1 + 1,
    );
    let auto = a.string("auto_pad").unwrap_or_default();
    let same = |inp: usize, s: usize, k: usize| {
        let out = inp.div_ceil(s);
        ((out - 1) * s + k).saturating_sub(inp)
    };
    let pads = match auto.as_str() {
        "" | "NOTSET" => match a.ints("pads").as_deref() {
            None => Pads {
                t: 0,
                b: 0,
                l: 0,
                r: 0,
            },
            Some(&[t, l, b, r]) if [t, l, b, r].iter().all(|&p| (0..=1 << 16).contains(&p)) => {
                Pads {
                    t: t as usize,
                    b: b as usize,
                    l: l as usize,
                    r: r as usize,
                }
            }
            Some(p) => return Err(format!("pads {p:?} (four non-negative values)")),
        },
        "VALID" => Pads {
            t: 0,
            b: 0,
            l: 0,
            r: 0,
        },
        "SAME_UPPER" | "SAME_LOWER" => {
            let (th, tw) = (same(hw.0, strides.0, eff.0), same(hw.1, strides.1, eff.1));
            let (small_h, small_w) = (th / 2, tw / 2);
            if auto == "SAME_UPPER" {
                Pads {
                    t: small_h,
                    b: th - small_h,
                    l: small_w,
                    r: tw - small_w,
                }
            } else {
                Pads {
                    t: th - small_h,
                    b: small_h,
                    l: tw - small_w,
                    r: small_w,
                }
            }
        }
        other => return Err(format!("auto_pad '{other}'")),
    };
    Ok(Window {
        kernel,
        strides,
        dilations,
        pads,
    })
}

/// Output size of a window over `n` padded by `lo + hi`.
fn out_size(n: usize, lo: usize, hi: usize, eff: usize, s: usize) -> NodeResult<usize> {
    let padded = n + lo + hi;
    if padded < eff {
        return Err(format!(
            "a window of {eff} does not fit an input of {n} padded to {padded}"
        ));
    }
    Ok((padded - eff) / s + 1)
}

impl Importer {
    /// Input `i` as an NCHW image; a pooled (N, C, 1, 1) value gets a
    /// Reshape to strata's (1, 1, C) first.
    fn image_input(&mut self, node: &NodeProto, i: usize) -> NodeResult<Val> {
        let v = self.val(node, i)?;
        if v.is_nchw_image() {
            return Ok(v);
        }
        if v.shape.len() == 1 && v.onnx_dims().len() == 3 && v.onnx_dims()[0] == v.shape[0] {
            let c = v.shape[0];
            let name = self.layer(
                node,
                None,
                "Reshape",
                json!({"target_shape": [1, 1, c]}),
                &[&v.src],
            );
            return Ok(Val::nchw(name, vec![1, 1, c]));
        }
        Err(format!(
            "input {i} is not an image in NCHW order (ONNX dims {:?})",
            v.onnx_dims()
        ))
    }

    pub(super) fn conv(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let a = Attrs(node);
        let x = self.image_input(node, 0)?;
        let w = self.konst(node, 1)?.ok_or("no weight input")?;
        let bias = self.konst(node, 2)?;
        let (h, wd, c) = (x.shape[0], x.shape[1], x.shape[2]);
        let [m, cg, kh, kw] = w.dims[..] else {
            return Err(format!(
                "weight of shape {:?} (2-D convolutions only)",
                w.dims
            ));
        };
        if let Some(k) = a.ints("kernel_shape") {
            if k != [kh as i64, kw as i64] {
                return Err(format!(
                    "kernel_shape {k:?} does not match the weight {:?}",
                    w.dims
                ));
            }
        }
        let g = usize::try_from(a.int("group").unwrap_or(1)).map_err(|_| "a negative group")?;
        if g == 0 || c % g != 0 || m % g != 0 || cg != c / g {
            return Err(format!(
                "group {g} with {c} input channels and a weight of shape {:?}",
                w.dims
            ));
        }
        let win = window(&a, (kh, kw), (h, wd))?;
        if (win.dilations.0 > 1 || win.dilations.1 > 1) && (win.strides.0 > 1 || win.strides.1 > 1)
        {
            return Err(
                "dilation and stride above 1 together (strata, as Keras, refuses them)".into(),
            );
        }
        let (eh, ew) = (
            (kh - 1) * win.dilations.0 + 1,
            (kw - 1) * win.dilations.1 + 1,
        );
        let oh = out_size(h, win.pads.t, win.pads.b, eh, win.strides.0)?;
        let ow = out_size(wd, win.pads.l, win.pads.r, ew, win.strides.1)?;
        if let Some(b) = &bias {
            if b.numel() != m {
                return Err(format!("bias of shape {:?} for {m} filters", b.dims));
            }
        }
        let wname = node.input.get(1).map(String::as_str);
        let k = w.floats();
        let depthwise = g == c && g > 1;
        let mut args = json!({
            "kernel_size": [kh, kw],
            "strides": [win.strides.0, win.strides.1],
            "padding": win.pads.spec(),
            "dilation_rate": [win.dilations.0, win.dilations.1],
            "use_bias": bias.is_some(),
        });
        let (ty, kname, kernel, kshape) = if depthwise {
            let mult = m / c;
            args["depth_multiplier"] = json!(mult);
            // (C*mult, 1, kh, kw) -> (kh, kw, C, mult); channel c*mult + j.
            let mut out = vec![0.0f32; k.len()];
            for o in 0..m {
                for y in 0..kh {
                    for xx in 0..kw {
                        out[((y * kw + xx) * c + o / mult) * mult + o % mult] =
                            k[(o * kh + y) * kw + xx];
                    }
                }
            }
            (
                "DepthwiseConv2D",
                "depthwise_kernel",
                out,
                vec![kh, kw, c, mult],
            )
        } else {
            args["filters"] = json!(m);
            if g > 1 {
                args["groups"] = json!(g);
            }
            // (M, C/g, kh, kw) -> (kh, kw, C/g, M)
            let mut out = vec![0.0f32; k.len()];
            for o in 0..m {
                for i in 0..cg {
                    for y in 0..kh {
                        for xx in 0..kw {
                            out[((y * kw + xx) * cg + i) * m + o] =
                                k[((o * cg + i) * kh + y) * kw + xx];
                        }
                    }
                }
            }
            ("Conv2D", "kernel", out, vec![kh, kw, cg, m])
        };
        let name = self.layer(node, wname, ty, args, &[&x.src]);
        self.weight(&name, kname, kshape, kernel);
        if let Some(b) = bias {
            self.weight(&name, "bias", vec![m], b.floats());
        }
        self.affine.insert(name.clone());
        Ok(Item::Val(Val::nchw(name, vec![oh, ow, m])))
    }

    pub(super) fn batch_norm(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let a = Attrs(node);
        if a.int("training_mode").unwrap_or(0) != 0 {
            return Err("training_mode=1 (export the model in eval mode)".into());
        }
        let x = self.val(node, 0)?;
        if x.flat_order.is_some() || x.strata_axis(1) != Some(x.shape.len()) {
            return Err(format!(
                "its channel axis is not strata's last axis (ONNX dims {:?})",
                x.onnx_dims()
            ));
        }
        let c = x.shape[x.shape.len() - 1];
        let mut params = Vec::new();
        for (i, w) in [
            (1, "gamma"),
            (2, "beta"),
            (3, "moving_mean"),
            (4, "moving_variance"),
        ] {
            let p = self
                .konst(node, i)?
                .ok_or_else(|| format!("no {w} input"))?;
            if p.numel() != c {
                return Err(format!("{w} of shape {:?} for {c} channels", p.dims));
            }
            params.push((w, p.floats()));
        }
        let epsilon = a.float("epsilon").unwrap_or(1e-5);
        let momentum = a.float("momentum").unwrap_or(0.9);
        if epsilon <= 0.0 {
            return Err(format!("epsilon {epsilon}"));
        }
        let wname = node.input.get(1).map(String::as_str);
        let args = json!({"epsilon": epsilon, "momentum": momentum});
        let name = self.layer(node, wname, "BatchNormalization", args, &[&x.src]);
        for (w, p) in params {
            self.weight(&name, w, vec![c], p);
        }
        Ok(Item::Val(Val { src: name, ..x }))
    }

    pub(super) fn pool(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let a = Attrs(node);
        let max = node.op_type == "MaxPool";
        let x = self.image_input(node, 0)?;
        let (h, w, c) = (x.shape[0], x.shape[1], x.shape[2]);
        let kernel = pair(a.ints("kernel_shape"), (0, 0), "kernel_shape")?;
        if kernel.0 == 0 {
            return Err("no kernel_shape".into());
        }
        let mut win = window(&a, kernel, (h, w))?;
        if win.dilations != (1, 1) {
            return Err(format!("dilations {:?}", win.dilations));
        }
        if a.int("storage_order").unwrap_or(0) != 0 {
            return Err("storage_order=1".into());
        }
        let (s, k) = (win.strides, win.kernel);
        let mut oh = out_size(h, win.pads.t, win.pads.b, k.0, s.0)?;
        let mut ow = out_size(w, win.pads.l, win.pads.r, k.1, s.1)?;
        let mut extra = (0, 0);
        if a.int("ceil_mode").unwrap_or(0) != 0 {
            // PyTorch's rule: one more window where it starts inside the
            // input or its leading padding.
            let ceil = |n: usize, lo: usize, hi: usize, k: usize, s: usize, floor: usize| {
                let more = !(n + lo + hi - k).is_multiple_of(s) && floor * s < n + lo;
                if more {
                    (floor + 1, floor * s + k - (n + lo + hi))
                } else {
                    (floor, 0)
                }
            };
            let (nh, eh) = ceil(h, win.pads.t, win.pads.b, k.0, s.0, oh);
            let (nw, ew) = ceil(w, win.pads.l, win.pads.r, k.1, s.1, ow);
            (oh, ow, extra) = (nh, nw, (eh, ew));
        }
        let include_pad = !max && a.int("count_include_pad").unwrap_or(0) != 0;
        let mut src = x.src.clone();
        if include_pad && !win.pads.is_zero() {
            if extra != (0, 0) {
                return Err("count_include_pad=1 with ceil_mode=1".into());
            }
            let p = win.pads;
            let args = json!({"padding": [[p.t, p.b], [p.l, p.r]]});
            src = self.layer(node, None, "ZeroPadding2D", args, &[&src]);
            win.pads = Pads {
                t: 0,
                b: 0,
                l: 0,
                r: 0,
            };
        }
        win.pads.b += extra.0;
        win.pads.r += extra.1;
        let p = win.pads;
        if p.t.max(p.b) >= k.0 || p.l.max(p.r) >= k.1 {
            return Err(format!("padding {p:?} as large as the window {k:?}"));
        }
        let ty = if max {
            "MaxPooling2D"
        } else {
            "AveragePooling2D"
        };
        let args = json!({"pool_size": [k.0, k.1], "strides": [s.0, s.1], "padding": p.spec()});
        let name = self.layer(node, None, ty, args, &[&src]);
        Ok(Item::Val(Val::nchw(name, vec![oh, ow, c])))
    }

    pub(super) fn global_pool(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let x = self.image_input(node, 0)?;
        let c = x.shape[2];
        let ty = if node.op_type == "GlobalMaxPool" {
            "GlobalMaxPooling2D"
        } else {
            "GlobalAveragePooling2D"
        };
        let name = self.layer(node, None, ty, json!({}), &[&x.src]);
        // ONNX keeps (N, C, 1, 1); strata's (N, C) is its squeeze.
        Ok(Item::Val(Val {
            src: name,
            shape: vec![c],
            axes: vec![Some(0), Some(1), None, None],
            flat_order: None,
            scale: None,
        }))
    }

    pub(super) fn pad(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let mode = Attrs(node)
            .string("mode")
            .unwrap_or_else(|| "constant".into());
        if mode != "constant" {
            return Err(format!("mode '{mode}' (zero padding only)"));
        }
        if node.input.get(3).is_some_and(|n| !n.is_empty()) {
            return Err("an axes input".into());
        }
        if let Some(v) = self.konst(node, 2)? {
            if v.floats().iter().any(|&x| x != 0.0) {
                return Err("a non-zero constant_value".into());
            }
        }
        let x = self.val(node, 0)?;
        let pads = self.konst(node, 1)?.ok_or("no pads input")?;
        let p = pads.ints().ok_or("pads that are not integers")?.to_vec();
        let r = x.rank();
        if p.len() != 2 * r || p.iter().any(|&v| !(0..=1 << 16).contains(&v)) {
            return Err(format!("pads {p:?} (two non-negative values per axis)"));
        }
        let mut hw = [(0usize, 0usize); 2];
        for i in 0..r {
            let (lo, hi) = (p[i] as usize, p[i + r] as usize);
            if lo == 0 && hi == 0 {
                continue;
            }
            match x.axes[i] {
                Some(a @ (1 | 2)) if x.shape.len() == 3 => hw[a - 1] = (lo, hi),
                _ => {
                    return Err(format!(
                        "padding on ONNX axis {i}, which is not an image row or column"
                    ))
                }
            }
        }
        if x.shape.len() != 3 {
            return Err(format!(
                "an input that is not an image (ONNX dims {:?})",
                x.onnx_dims()
            ));
        }
        let args = json!({"padding": [[hw[0].0, hw[0].1], [hw[1].0, hw[1].1]]});
        let name = self.layer(node, None, "ZeroPadding2D", args, &[&x.src]);
        let shape = vec![
            x.shape[0] + hw[0].0 + hw[0].1,
            x.shape[1] + hw[1].0 + hw[1].1,
            x.shape[2],
        ];
        Ok(Item::Val(Val {
            src: name,
            shape,
            ..x
        }))
    }
}
