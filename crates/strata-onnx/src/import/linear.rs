//! Gemm and MatMul as Dense layers, and the shape operators that feed them
//! (Flatten, Reshape).

use serde_json::json;

use super::decode::{Attrs, Const};
use super::value::Val;
use super::{Importer, Item, NodeResult};
use crate::proto::NodeProto;

/// A (rows, cols) matrix constant's values, transposed when `trans`.
fn matrix(c: &Const, trans: bool) -> NodeResult<(usize, usize, Vec<f32>)> {
    let [r, k] = c.dims[..] else {
        return Err(format!(
            "a weight of shape {:?} (a matrix is needed)",
            c.dims
        ));
    };
    let v = c.floats();
    if !trans {
        return Ok((r, k, v));
    }
    let mut t = vec![0.0f32; v.len()];
    for i in 0..r {
        for j in 0..k {
            t[j * r + i] = v[i * k + j];
        }
    }
    Ok((k, r, t))
}

impl Importer {
    /// A Dense layer on `x` with the (in, out) kernel given in ONNX's
    /// feature order (rows follow `x.flat_order`).
    fn dense(
        &mut self,
        node: &NodeProto,
        x: &Val,
        (k, n, mut kernel): (usize, usize, Vec<f32>),
        bias: Option<Vec<f32>>,
    ) -> NodeResult<String> {
        let last = *x.shape.last().ok_or("a scalar input")?;
        if k != last {
            return Err(format!("a weight of {k} rows for {last} input features"));
        }
        if let Some(order) = &x.flat_order {
            let mut rows = vec![0.0f32; kernel.len()];
            for (j, &s) in order.iter().enumerate() {
                rows[s * n..(s + 1) * n].copy_from_slice(&kernel[j * n..(j + 1) * n]);
            }
            kernel = rows;
        }
        let wname = node.input.get(1).map(String::as_str);
        let args = json!({"units": n, "use_bias": bias.is_some()});
        let name = self.layer(node, wname, "Dense", args, &[&x.src]);
        self.weight(&name, "kernel", vec![k, n], kernel);
        if let Some(b) = bias {
            self.weight(&name, "bias", vec![n], b);
        }
        self.affine.insert(name.clone());
        Ok(name)
    }

    pub(super) fn gemm(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let a = Attrs(node);
        if a.int("transA").unwrap_or(0) != 0 {
            return Err("transA=1".into());
        }
        let x = self.val(node, 0)?;
        if x.rank() != 2 || x.shape.len() != 1 {
            return Err(format!(
                "an input of ONNX dims {:?} (a matrix is needed)",
                x.onnx_dims()
            ));
        }
        let w = self.konst(node, 1)?.ok_or("no B input")?;
        let (k, n, mut kernel) = matrix(&w, a.int("transB").unwrap_or(0) != 0)?;
        let alpha = a.float("alpha").unwrap_or(1.0);
        let beta = a.float("beta").unwrap_or(1.0);
        if alpha != 1.0 {
            kernel.iter_mut().for_each(|v| *v *= alpha);
        }
        let bias = match self.konst(node, 2)? {
            None => None,
            Some(c) if c.numel() == n || c.numel() == 1 => {
                let v = c.floats();
                Some((0..n).map(|i| beta * v[i % v.len()]).collect())
            }
            Some(c) => return Err(format!("C of shape {:?} for {n} outputs", c.dims)),
        };
        let name = self.dense(node, &x, (k, n, kernel), bias)?;
        Ok(Item::Val(Val::plain(name, vec![n])))
    }

    pub(super) fn matmul(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let x = self.val(node, 0)?;
        if x.strata_axis(-1) != Some(x.shape.len()) {
            return Err(format!(
                "its contracted axis is not strata's last axis (ONNX dims {:?})",
                x.onnx_dims()
            ));
        }
        let w = self.konst(node, 1)?.ok_or("no B input")?;
        let (k, n, kernel) = matrix(&w, false)?;
        let name = self.dense(node, &x, (k, n, kernel), None)?;
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("checked above") = n;
        Ok(Item::Val(Val {
            src: name,
            shape,
            flat_order: None,
            ..x
        }))
    }

    /// ONNX's (N, features) view of `x`, with a strata Flatten where strata's
    /// tensor has more than one axis.
    fn flat(&mut self, node: &NodeProto, x: Val) -> Val {
        if x.rank() == 2 {
            return x;
        }
        let order = x.flat_order_of_view();
        let n: usize = x.shape.iter().product();
        let src = if x.shape.len() == 1 {
            x.src
        } else {
            self.layer(node, None, "Flatten", json!({}), &[&x.src])
        };
        Val {
            src,
            shape: vec![n],
            axes: vec![Some(0), Some(1)],
            flat_order: order,
            scale: None,
        }
    }

    pub(super) fn flatten(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let x = self.val(node, 0)?;
        let axis = Attrs(node).int("axis").unwrap_or(1);
        let r = x.rank() as i64;
        if (if axis < 0 { axis + r } else { axis }) != 1 {
            return Err(format!("axis {axis} (only 1: keep the batch axis)"));
        }
        Ok(Item::Val(self.flat(node, x)))
    }

    pub(super) fn reshape(&mut self, node: &NodeProto) -> NodeResult<Item> {
        let x = self.val(node, 0)?;
        let target = self.konst(node, 1)?.ok_or("no shape input")?;
        let t = target
            .ints()
            .ok_or("a shape that is not integers")?
            .to_vec();
        let allow_zero = Attrs(node).int("allowzero").unwrap_or(0) != 0;
        let dims = x.onnx_dims();
        let numel: usize = dims.iter().product();
        if t.is_empty() {
            return Err("a reshape to a scalar".into());
        }
        // t[0] is the batch: 0 (copy it), -1 (all that the rest leaves), or
        // the batch size the graph was traced with when another axis is -1.
        let rest = &t[1..];
        let inferred = rest.iter().filter(|&&d| d == -1).count();
        let batch_ok = (t[0] == 0 && !allow_zero)
            || (t[0] == -1 && inferred == 0)
            || (t[0] > 0 && inferred == 1);
        if !batch_ok || inferred > 1 {
            return Err(format!("shape {t:?} (the first axis must stay the batch)"));
        }
        let mut out = Vec::with_capacity(rest.len());
        for (i, &d) in rest.iter().enumerate() {
            match d {
                0 if !allow_zero => out.push(
                    *dims
                        .get(i)
                        .ok_or_else(|| format!("shape {t:?} copies a missing axis"))?,
                ),
                -1 => out.push(0),
                d if d > 0 => out.push(d as usize),
                _ => return Err(format!("shape {t:?}")),
            }
        }
        let known: usize = out.iter().filter(|&&d| d > 0).product();
        if inferred == 1 {
            if known == 0 || !numel.is_multiple_of(known) {
                return Err(format!("shape {t:?} for {numel} values per sample"));
            }
            out.iter_mut()
                .filter(|d| **d == 0)
                .for_each(|d| *d = numel / known);
        }
        if out.iter().product::<usize>() != numel || out.contains(&0) {
            return Err(format!("shape {t:?} for {numel} values per sample"));
        }
        if out.len() == 1 {
            return Ok(Item::Val(self.flat(node, x)));
        }
        if out == dims {
            return Ok(Item::Val(x));
        }
        if !x.is_plain() {
            return Err(format!(
                "a reshape of ONNX dims {dims:?}, which strata holds in another order, to {out:?} (only to (N, -1))"
            ));
        }
        let name = self.layer(
            node,
            None,
            "Reshape",
            json!({"target_shape": out}),
            &[&x.src],
        );
        Ok(Item::Val(Val::plain(name, out)))
    }
}
