//! Activations, Softmax, Dropout, Add/Mul (and arithmetic on constants),
//! Concat and Transpose.

use serde_json::json;

use super::decode::{Attrs, Const};
use super::value::Val;
use super::{Importer, Item, NodeResult};
use crate::proto::NodeProto;

/// `f` over two constants of the same shape, or one of them a scalar.
fn fold2(a: &Const, b: &Const, f: impl Fn(f32, f32) -> f32) -> NodeResult<Const> {
    let (x, y) = (a.floats(), b.floats());
    let dims = if a.numel() == 1 {
        b.dims.clone()
    } else {
        a.dims.clone()
    };
    if !(a.dims == b.dims || a.numel() == 1 || b.numel() == 1) {
        return Err(format!("constants of shapes {:?} and {:?}", a.dims, b.dims));
    }
    let n = x.len().max(y.len());
    let v = (0..n).map(|i| f(x[i % x.len()], y[i % y.len()])).collect();
    Ok(Const::f32(dims, v))
}

impl Importer {
    /// Relu, Sigmoid, Tanh, LeakyRelu, Clip (as ReLU with a max), Softplus.
    pub(super) fn activation(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let a = Attrs(node);
        if let Item::Const(c) = self.item(node, 0)? {
            let f: fn(f32) -> f32 = match node.op_type.as_str() {
                "Sigmoid" => |v| 1.0 / (1.0 + (-v).exp()),
                "Tanh" => f32::tanh,
                "Relu" => |v| v.max(0.0),
                _ => return Err("a constant input".into()),
            };
            let v = c.floats().into_iter().map(f).collect();
            return Ok(Item::Const(Const::f32(c.dims, v)));
        }
        let x = self.val(node, 0)?;
        let (ty, args, fused) = match node.op_type.as_str() {
            "Relu" => ("Activation", json!({"activation": "relu"}), Some("relu")),
            "Sigmoid" => (
                "Activation",
                json!({"activation": "sigmoid"}),
                Some("sigmoid"),
            ),
            "Tanh" => ("Activation", json!({"activation": "tanh"}), Some("tanh")),
            "Softplus" => (
                "Activation",
                json!({"activation": "softplus"}),
                Some("softplus"),
            ),
            "LeakyRelu" => (
                "ReLU",
                json!({"negative_slope": a.float("alpha").unwrap_or(0.01)}),
                None,
            ),
            _ => {
                // Clip: bounds from inputs 1 and 2.
                let bound = |c: Option<Const>| -> NodeResult<Option<f32>> {
                    c.map(|c| {
                        c.scalar()
                            .ok_or_else(|| format!("a bound of shape {:?}", c.dims))
                    })
                    .transpose()
                };
                let lo = bound(self.konst(node, 1)?)?;
                let hi = bound(self.konst(node, 2)?)?;
                match (lo, hi) {
                    (Some(0.0), None) => {
                        ("Activation", json!({"activation": "relu"}), Some("relu"))
                    }
                    (Some(l), Some(h)) if l == 0.0 && h.is_finite() && h > 0.0 => {
                        ("ReLU", json!({"max_value": h}), None)
                    }
                    _ => {
                        return Err(format!(
                            "min {lo:?}, max {hi:?} (only min 0, as ReLU or ReLU6)"
                        ))
                    }
                }
            }
        };
        if let Some(act) = fused {
            if let Some(v) = self.fuse_activation(node, &x, act) {
                return Ok(Item::Val(v));
            }
        }
        let name = self.layer(node, None, ty, args, &[&x.src]);
        Ok(Item::Val(Val { src: name, ..x }))
    }

    /// Makes `act` the activation of the Conv2D/Dense layer that produced
    /// `x`, where nothing else reads its output.
    fn fuse_activation(&mut self, node: &NodeProto, x: &Val, act: &str) -> Option<Val> {
        if !self.affine.contains(&x.src) || !self.read_once(&node.input[0]) {
            return None;
        }
        let spec = self.spec_mut(&x.src)?;
        spec.insert("activation".into(), json!(act));
        self.affine.remove(&x.src);
        Some(x.clone())
    }

    pub(super) fn softmax(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let x = self.val(node, 0)?;
        let axis = Attrs(node).int("axis").unwrap_or(-1);
        let k = x
            .strata_axis(axis)
            .filter(|&k| k >= 1)
            .ok_or_else(|| format!("axis {axis} (the batch axis or one strata does not have)"))?;
        let last = k == x.shape.len();
        if last {
            if let Some(v) = self.fuse_activation(node, &x, "softmax") {
                return Ok(Item::Val(v));
            }
        }
        let axis = if last { -1 } else { k as i64 };
        let name = self.layer(node, None, "Softmax", json!({"axis": axis}), &[&x.src]);
        Ok(Item::Val(Val { src: name, ..x }))
    }

    pub(super) fn dropout(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let x = self.val(node, 0)?;
        let rate = match self.konst(node, 1)? {
            Some(c) => c.scalar().ok_or("a ratio that is not a scalar")?,
            None => Attrs(node).float("ratio").unwrap_or(0.5),
        };
        if !(0.0..1.0).contains(&rate) {
            return Err(format!("ratio {rate}"));
        }
        let name = self.layer(node, None, "Dropout", json!({"rate": rate}), &[&x.src]);
        Ok(Item::Val(Val { src: name, ..x }))
    }

    /// Add, Mul, Sub, Div: folded on constants; a bias added after a
    /// Conv2D/Dense folds into it; Mul by a scalar waits for its Blend;
    /// two tensors of one layout become an Add or Multiply layer.
    pub(super) fn arithmetic(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let op = node.op_type.as_str();
        let (a, b) = (self.item(node, 0)?, self.item(node, 1)?);
        match (a, b) {
            (Item::Const(a), Item::Const(b)) => {
                let f: fn(f32, f32) -> f32 = match op {
                    "Add" => |x, y| x + y,
                    "Sub" => |x, y| x - y,
                    "Mul" => |x, y| x * y,
                    _ => |x, y| x / y,
                };
                fold2(&a, &b, f).map(Item::Const)
            }
            (Item::Val(v), Item::Const(c)) | (Item::Const(c), Item::Val(v)) => match op {
                "Mul" if v.scale.is_none() => {
                    let s = c.scalar().ok_or_else(|| {
                        format!(
                            "Mul by a constant of shape {:?} (only a scalar, in a Blend)",
                            c.dims
                        )
                    })?;
                    Ok(Item::Val(Val {
                        scale: Some(s),
                        ..v
                    }))
                }
                "Add" => {
                    let input = if matches!(self.item(node, 0)?, Item::Val(_)) {
                        0
                    } else {
                        1
                    };
                    self.fold_bias(node, input, v, &c).map(Item::Val)
                }
                _ => Err(format!("{op} of a tensor and a constant")),
            },
            (Item::Val(x), Item::Val(y)) => {
                if op == "Add" {
                    if let (Some(s), Some(t)) = (x.scale, y.scale) {
                        return self.blend(node, x, y, s, t).map(Item::Val);
                    }
                }
                if x.scale.is_some() || y.scale.is_some() {
                    return Err("a Mul by a constant strata has no layer for".into());
                }
                let ty = match op {
                    "Add" => "Add",
                    "Mul" => "Multiply",
                    _ => return Err(format!("{op} of two tensors")),
                };
                if x.axes != y.axes || x.shape != y.shape || x.flat_order != y.flat_order {
                    return Err(format!(
                        "inputs of ONNX dims {:?} and {:?} (broadcasting is not supported)",
                        x.onnx_dims(),
                        y.onnx_dims()
                    ));
                }
                let name = self.layer(node, None, ty, json!({}), &[&x.src, &y.src]);
                Ok(Item::Val(Val { src: name, ..x }))
            }
        }
    }

    /// `s * x + t * y` with `s + t = 1`: strata's Blend, `alpha = logit(s)`.
    fn blend(&mut self, node: &NodeProto, x: Val, y: Val, s: f32, t: f32) -> NodeResult<Val> {
        if (s + t - 1.0).abs() > 1e-5 || !(s > 0.0 && s < 1.0) {
            return Err(format!(
                "a weighted sum {s} * a + {t} * b that is not a Blend"
            ));
        }
        if x.axes != y.axes || x.shape != y.shape || x.flat_order != y.flat_order {
            return Err("a Blend of tensors of different shapes".into());
        }
        let name = self.layer(node, None, "Blend", json!({}), &[&x.src, &y.src]);
        self.weight(&name, "alpha", vec![], vec![(s / (1.0 - s)).ln()]);
        Ok(Val {
            src: name,
            scale: None,
            ..x
        })
    }

    /// Adds constant `c` to the bias of the Conv2D/Dense layer that made `v`
    /// (which must vary only along strata's last axis).
    fn fold_bias(&mut self, node: &NodeProto, input: usize, v: Val, c: &Const) -> NodeResult<Val> {
        let refuse = || {
            "Add of a constant that is not the bias of a preceding Conv, Gemm or MatMul".to_string()
        };
        if v.scale.is_some() || !self.affine.contains(&v.src) || !self.read_once(&node.input[input])
        {
            return Err(refuse());
        }
        let n = *v.shape.last().ok_or_else(refuse)?;
        let rank = v.rank();
        if c.dims.len() > rank {
            return Err(refuse());
        }
        // Right-align the constant's dims against ONNX's; only the axis that
        // is strata's last may be longer than 1.
        let offset = rank - c.dims.len();
        for (i, &d) in c.dims.iter().enumerate() {
            let is_last = v.axes[i + offset] == Some(v.shape.len());
            if d != 1 && !(is_last && d == n) {
                return Err(refuse());
            }
        }
        let vals = c.floats();
        let add: Vec<f32> = (0..n)
            .map(|i| vals[if vals.len() == 1 { 0 } else { i }])
            .collect();
        let key = format!("{}.bias", v.src);
        if let Some(w) = self.weights.iter_mut().find(|w| w.0 == key) {
            w.2.iter_mut().zip(&add).for_each(|(b, a)| *b += a);
        } else {
            if let Some(spec) = self.spec_mut(&v.src) {
                spec.insert("use_bias".into(), json!(true));
            }
            self.weights.push((key, vec![n], add));
        }
        Ok(v)
    }

    pub(super) fn concat(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let xs: Vec<Val> = (0..node.input.len())
            .map(|i| self.val(node, i))
            .collect::<NodeResult<_>>()?;
        let first = xs.first().ok_or("no inputs")?.clone();
        if xs.len() == 1 {
            return Ok(Item::Val(first));
        }
        let axis = Attrs(node).int("axis").ok_or("no axis")?;
        let k = first
            .strata_axis(axis)
            .filter(|&k| k >= 1)
            .ok_or_else(|| format!("axis {axis}"))?;
        let mut shape = first.shape.clone();
        shape[k - 1] = 0;
        for x in &xs {
            let same_rest = x.shape.len() == first.shape.len()
                && x.shape
                    .iter()
                    .zip(&first.shape)
                    .enumerate()
                    .all(|(i, (a, b))| i == k - 1 || a == b);
            if x.axes != first.axes || x.flat_order.is_some() || !same_rest {
                return Err(format!(
                    "inputs of ONNX dims {:?} and {:?}",
                    first.onnx_dims(),
                    x.onnx_dims()
                ));
            }
            shape[k - 1] += x.shape[k - 1];
        }
        let srcs: Vec<&str> = xs.iter().map(|x| x.src.as_str()).collect();
        let axis = if k == shape.len() { -1 } else { k as i64 };
        let name = self.layer(node, None, "Concatenate", json!({"axis": axis}), &srcs);
        Ok(Item::Val(Val {
            src: name,
            shape,
            ..first
        }))
    }

    /// A Transpose moves no data: ONNX's axes map to strata's anew.
    pub(super) fn transpose(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let x = self.val(node, 0)?;
        let r = x.rank();
        let perm: Vec<i64> = Attrs(node)
            .ints("perm")
            .unwrap_or_else(|| (0..r as i64).rev().collect());
        let mut seen = vec![false; r];
        let mut axes = Vec::with_capacity(r);
        for &p in &perm {
            let p = usize::try_from(p)
                .ok()
                .filter(|&p| p < r && !seen[p])
                .ok_or_else(|| format!("perm {perm:?}"))?;
            seen[p] = true;
            axes.push(x.axes[p]);
        }
        if axes.len() != r || axes[0] != Some(0) {
            return Err(format!("perm {perm:?} (the batch axis must stay first)"));
        }
        if x.flat_order.is_some() && axes != x.axes {
            return Err(format!("perm {perm:?} of flattened features"));
        }
        Ok(Item::Val(Val { axes, ..x }))
    }
}
