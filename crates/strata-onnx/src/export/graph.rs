//! The exporter's graph under construction: each strata value's NHWC and
//! NCHW forms, the nodes and initializers made so far, fresh names.

use std::collections::HashSet;

use strata_nn::Layer;

use crate::error::{OnnxError, Result};
use strata_core::ops::Padding;

use crate::build::attr_ints;
use crate::proto::{AttributeProto, DataType, NodeProto, TensorProto};

/// Which of its forms a layer reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// Strata's own order (also every non-image tensor).
    Nhwc,
    /// ONNX's image order.
    Nchw,
}

/// A strata value in the ONNX graph: its per-sample shape (strata's order)
/// and the names of the forms made so far.
#[derive(Debug, Clone)]
pub(super) struct Value {
    pub(super) shape: Vec<usize>,
    pub(super) nhwc: Option<String>,
    pub(super) nchw: Option<String>,
}

impl Value {
    pub(super) fn nhwc(name: String, shape: Vec<usize>) -> Self {
        Value {
            shape,
            nhwc: Some(name),
            nchw: None,
        }
    }
    pub(super) fn nchw(name: String, shape: Vec<usize>) -> Self {
        Value {
            shape,
            nhwc: None,
            nchw: Some(name),
        }
    }
    pub(super) fn with(layout: Layout, name: String, shape: Vec<usize>) -> Self {
        match layout {
            Layout::Nhwc => Value::nhwc(name, shape),
            Layout::Nchw => Value::nchw(name, shape),
        }
    }
    /// An image: (H, W, C) per sample, which has two forms.
    pub(super) fn is_image(&self) -> bool {
        self.shape.len() == 3
    }
    /// The form an elementwise op keeps: NCHW where made (a convolution's
    /// output stays there), else NHWC.
    pub(super) fn current(&self) -> Layout {
        if self.nchw.is_some() {
            Layout::Nchw
        } else {
            Layout::Nhwc
        }
    }
}

/// The position of strata axis `axis` (batch = 0) in a tensor of `layout`.
pub(super) fn map_axis(axis: usize, rank: usize, layout: Layout) -> i64 {
    match layout {
        Layout::Nchw if rank == 4 => [0, 2, 3, 1][axis],
        _ => axis as i64,
    }
}

pub(super) fn pair(p: (usize, usize)) -> Vec<i64> {
    vec![p.0 as i64, p.1 as i64]
}

/// The graph under construction.
#[derive(Default)]
pub(super) struct Builder {
    pub(super) nodes: Vec<NodeProto>,
    pub(super) inits: Vec<TensorProto>,
    pub(super) names: HashSet<String>,
}

/// A convolution's window, as the Conv node takes it.
pub(super) struct Window {
    pub(super) padding: Padding,
    pub(super) kernel: (usize, usize),
    pub(super) strides: (usize, usize),
    pub(super) dilation: (usize, usize),
    pub(super) group: usize,
}

/// What a layer handler needs to report an error.
pub(super) struct Ctx<'a> {
    pub(super) layer: &'a dyn Layer,
    pub(super) base: &'a str,
}

impl Ctx<'_> {
    pub(super) fn unsupported(&self, what: impl Into<String>) -> OnnxError {
        OnnxError::Unsupported {
            layer: self.layer.name().to_string(),
            class: self.layer.class_name().to_string(),
            what: what.into(),
        }
    }
    pub(super) fn error(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Layer {
            layer: self.layer.name().to_string(),
            class: self.layer.class_name().to_string(),
            message: message.into(),
        }
    }
    /// A weight's shape and values, by its Keras name.
    pub(super) fn weight(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        Ok(self
            .layer
            .weights()
            .into_iter()
            .find(|w| w.name == name)
            .map(|w| (w.value.shape().to_vec(), w.value.data().clone())))
    }
    pub(super) fn required(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        self.weight(name)?
            .ok_or_else(|| self.error(format!("weight '{name}' is missing (not built?)")))
    }
    pub(super) fn one_input(&self, ins: Vec<Value>) -> Result<Value> {
        let n = ins.len();
        let mut it = ins.into_iter();
        match (it.next(), n) {
            (Some(v), 1) => Ok(v),
            _ => Err(self.error(format!("takes 1 input, found {n}"))),
        }
    }
    pub(super) fn image(&self, v: &Value) -> Result<()> {
        if v.is_image() {
            Ok(())
        } else {
            Err(self.error(format!(
                "expects an (H, W, C) input, found per-sample shape {:?}",
                v.shape
            )))
        }
    }
}

impl Builder {
    /// A name not used yet, `base` itself where free.
    pub(super) fn fresh(&mut self, base: &str) -> String {
        crate::build::unique_name(&mut self.names, base, "__")
    }

    pub(super) fn node(
        &mut self,
        op: &str,
        name: &str,
        input: Vec<String>,
        output: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input,
            output,
            name: name.to_string(),
            op_type: op.to_string(),
            attribute,
            ..Default::default()
        });
    }

    /// One node with one fresh output named after `base`; returns the output.
    pub(super) fn op(
        &mut self,
        op: &str,
        base: &str,
        input: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(base);
        self.node(op, &out, input, vec![out.clone()], attribute);
        out
    }

    pub(super) fn init_f32(&mut self, base: &str, dims: &[usize], data: &[f32]) -> String {
        let name = self.fresh(base);
        self.inits.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            name: name.clone(),
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    pub(super) fn init_i64(&mut self, base: &str, data: &[i64]) -> String {
        let name = self.fresh(base);
        self.inits.push(TensorProto {
            dims: vec![data.len() as i64],
            data_type: DataType::Int64 as i32,
            name: name.clone(),
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// The NCHW form of an image value (made once, then reused).
    pub(super) fn nchw(&mut self, v: &mut Value, base: &str) -> String {
        if let Some(n) = &v.nchw {
            return n.clone();
        }
        let src = v.nhwc.clone().unwrap_or_default();
        if !v.is_image() {
            return src;
        }
        let out = self.op(
            "Transpose",
            &format!("{base}/to_nchw"),
            vec![src],
            vec![attr_ints("perm", vec![0, 3, 1, 2])],
        );
        v.nchw = Some(out.clone());
        out
    }

    /// The NHWC (strata-order) form of a value.
    pub(super) fn nhwc(&mut self, v: &mut Value, base: &str) -> String {
        if let Some(n) = &v.nhwc {
            return n.clone();
        }
        let src = v.nchw.clone().unwrap_or_default();
        let out = self.op(
            "Transpose",
            &format!("{base}/to_nhwc"),
            vec![src],
            vec![attr_ints("perm", vec![0, 2, 3, 1])],
        );
        v.nhwc = Some(out.clone());
        out
    }

    pub(super) fn form(&mut self, v: &mut Value, layout: Layout, base: &str) -> String {
        match layout {
            Layout::Nhwc => self.nhwc(v, base),
            Layout::Nchw => self.nchw(v, base),
        }
    }

    /// The inputs of an elementwise merge in one layout: NCHW when the first
    /// is there already (images only), else NHWC.
    pub(super) fn common_forms(
        &mut self,
        cx: &Ctx,
        mut ins: Vec<Value>,
    ) -> Result<(Layout, Vec<String>)> {
        let first = ins
            .first()
            .ok_or_else(|| cx.error("takes at least 1 input, found 0"))?;
        let layout = if first.is_image() && ins.iter().all(Value::is_image) {
            first.current()
        } else {
            Layout::Nhwc
        };
        let xs = ins
            .iter_mut()
            .map(|v| self.form(v, layout, cx.base))
            .collect();
        Ok((layout, xs))
    }
}
