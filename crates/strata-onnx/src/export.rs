//! strata model -> ONNX graph.
//!
//! The graph's inputs take strata's layout (NHWC float32, batch axis dynamic,
//! `dim_param` "batch"). Inside, image tensors live in NCHW, ONNX's layout for
//! Conv/Pool/BatchNormalization: each value keeps its NHWC and/or NCHW form,
//! and a Transpose is inserted only when a layer asks for the form it lacks
//! (Flatten, Reshape and Dense on images read NHWC, so they flatten and
//! contract in Keras order). Outputs are transposed back to NHWC.

use std::collections::HashSet;
use std::path::Path;

use strata_core::ops::Padding;
use strata_nn::layers::{
    ActivationLayer, Add, AveragePooling2D, BatchNormalization, Blend, Concatenate, Conv2D, Dense,
    DepthwiseConv2D, Dropout, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D,
    Multiply, ReLU, Reshape, Softmax, ZeroPadding2D,
};
use strata_nn::model::{Model, Source};
use strata_nn::{Activation, Layer};

use crate::error::{OnnxError, Result};
use crate::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// The opset written when none is asked for.
pub const DEFAULT_OPSET: i64 = 13;
/// The opsets the exporter writes (every operator it uses has the same
/// semantics across them).
pub const SUPPORTED_OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// Export settings.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Default ONNX operator set version, in [`SUPPORTED_OPSETS`].
    pub opset: i64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            opset: DEFAULT_OPSET,
        }
    }
}

/// The IR version that goes with an opset (onnx/helper.py's table).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// Builds the ONNX model of `model` with its current weights.
pub fn export_model(model: &Model, opts: &ExportOptions) -> Result<ModelProto> {
    if !SUPPORTED_OPSETS.contains(&opts.opset) {
        return Err(OnnxError::Opset(opts.opset));
    }
    let mut b = Builder::default();
    let mut graph_inputs = Vec::new();
    for (name, _) in model.inputs() {
        b.names.insert(name.clone());
    }
    // Graph outputs are named after their layers; reserve them first.
    let mut out_names = Vec::new();
    for src in model.graph_outputs() {
        let base = match *src {
            Source::Node(i) => {
                let node = model
                    .nodes()
                    .get(i)
                    .ok_or_else(|| OnnxError::Graph(format!("unknown output node {i}")))?;
                model.layers()[node.layer].name().to_string()
            }
            Source::Input(i) => format!("{}_output", input_name(model, i)?),
        };
        out_names.push(b.fresh(&base));
    }

    let inputs: Vec<Value> = model
        .inputs()
        .iter()
        .map(|(name, shape)| {
            graph_inputs.push(value_info(name, shape));
            Value::nhwc(name.clone(), shape.clone())
        })
        .collect();
    let mut values: Vec<Value> = Vec::with_capacity(model.nodes().len());
    let mut uses = vec![0usize; model.layers().len()];
    for node in model.nodes() {
        let layer = model.layers()[node.layer].as_ref();
        let k = uses[node.layer];
        uses[node.layer] += 1;
        let base = if k == 0 {
            layer.name().to_string()
        } else {
            format!("{}_{k}", layer.name())
        };
        let ins: Vec<Value> =
            node.inputs
                .iter()
                .map(|s| match *s {
                    Source::Input(i) => inputs
                        .get(i)
                        .cloned()
                        .ok_or_else(|| OnnxError::Graph(format!("unknown input {i}"))),
                    Source::Node(i) => values.get(i).cloned().ok_or_else(|| {
                        OnnxError::Graph(format!("node {i} used before it is made"))
                    }),
                })
                .collect::<Result<_>>()?;
        let v = b.layer(layer, &base, ins, &node.output_shape)?;
        values.push(v);
    }

    let mut graph_outputs = Vec::new();
    for (src, name) in model.graph_outputs().iter().zip(&out_names) {
        let mut v = match *src {
            Source::Input(i) => inputs[i].clone(),
            Source::Node(i) => values[i].clone(),
        };
        let x = b.nhwc(&mut v, name);
        b.node("Identity", name, vec![x], vec![name.clone()], vec![]);
        graph_outputs.push(value_info(name, &v.shape));
    }

    let mut metadata = vec![StringStringEntryProto {
        key: "strata_version".into(),
        value: env!("CARGO_PKG_VERSION").into(),
    }];
    let classes = &model.info().class_names;
    if !classes.is_empty() {
        metadata.push(StringStringEntryProto {
            key: "class_names".into(),
            value: serde_json::Value::from(classes.clone()).to_string(),
        });
    }
    Ok(ModelProto {
        ir_version: ir_version(opts.opset),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opts.opset,
        }],
        producer_name: "strata".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            node: b.nodes,
            name: model.name().to_string(),
            initializer: b.inits,
            input: graph_inputs,
            output: graph_outputs,
            ..Default::default()
        }),
        metadata_props: metadata,
        ..Default::default()
    })
}

/// The encoded bytes of [`export_model`].
pub fn export_bytes(model: &Model, opts: &ExportOptions) -> Result<Vec<u8>> {
    Ok(encode(&export_model(model, opts)?))
}

/// A model's protobuf encoding (the bytes of an .onnx file).
pub fn encode(proto: &ModelProto) -> Vec<u8> {
    prost::Message::encode_to_vec(proto)
}

/// Exports `model` to `path`, written atomically (a temporary file renamed).
pub fn export_to_file(model: &Model, path: &Path, opts: &ExportOptions) -> Result<()> {
    let bytes = export_bytes(model, opts)?;
    strata_nn::model::write_atomic(path, &bytes)?;
    Ok(())
}

fn input_name(model: &Model, i: usize) -> Result<String> {
    model
        .inputs()
        .get(i)
        .map(|(n, _)| n.clone())
        .ok_or_else(|| OnnxError::Graph(format!("unknown input {i}")))
}

/// `[batch, shape...]` float32, the batch axis symbolic.
fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let mut dim = vec![Dimension {
        value: Some(dimension::Value::DimParam("batch".into())),
        denotation: String::new(),
    }];
    dim.extend(shape.iter().map(|&d| Dimension {
        value: Some(dimension::Value::DimValue(d as i64)),
        denotation: String::new(),
    }));
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

/// Which of its forms a layer reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Strata's own order (also every non-image tensor).
    Nhwc,
    /// ONNX's image order.
    Nchw,
}

/// A strata value in the ONNX graph: its per-sample shape (strata's order)
/// and the names of the forms made so far.
#[derive(Debug, Clone)]
struct Value {
    shape: Vec<usize>,
    nhwc: Option<String>,
    nchw: Option<String>,
}

impl Value {
    fn nhwc(name: String, shape: Vec<usize>) -> Self {
        Value {
            shape,
            nhwc: Some(name),
            nchw: None,
        }
    }
    fn nchw(name: String, shape: Vec<usize>) -> Self {
        Value {
            shape,
            nhwc: None,
            nchw: Some(name),
        }
    }
    fn with(layout: Layout, name: String, shape: Vec<usize>) -> Self {
        match layout {
            Layout::Nhwc => Value::nhwc(name, shape),
            Layout::Nchw => Value::nchw(name, shape),
        }
    }
    /// An image: (H, W, C) per sample, which has two forms.
    fn is_image(&self) -> bool {
        self.shape.len() == 3
    }
    /// The form an elementwise op keeps: NCHW where made (a convolution's
    /// output stays there), else NHWC.
    fn current(&self) -> Layout {
        if self.nchw.is_some() {
            Layout::Nchw
        } else {
            Layout::Nhwc
        }
    }
}

/// The position of strata axis `axis` (batch = 0) in a tensor of `layout`.
fn map_axis(axis: usize, rank: usize, layout: Layout) -> i64 {
    match layout {
        Layout::Nchw if rank == 4 => [0, 2, 3, 1][axis],
        _ => axis as i64,
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints,
        ..Default::default()
    }
}

fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

fn pair(p: (usize, usize)) -> Vec<i64> {
    vec![p.0 as i64, p.1 as i64]
}

/// The graph under construction.
#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    names: HashSet<String>,
}

/// What a layer handler needs to report an error.
/// A convolution's window, as the Conv node takes it.
struct Window {
    padding: Padding,
    kernel: (usize, usize),
    strides: (usize, usize),
    dilation: (usize, usize),
    group: usize,
}

struct Ctx<'a> {
    layer: &'a dyn Layer,
    base: &'a str,
}

impl Ctx<'_> {
    fn unsupported(&self, what: impl Into<String>) -> OnnxError {
        OnnxError::Unsupported {
            layer: self.layer.name().to_string(),
            class: self.layer.class_name().to_string(),
            what: what.into(),
        }
    }
    fn error(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Layer {
            layer: self.layer.name().to_string(),
            class: self.layer.class_name().to_string(),
            message: message.into(),
        }
    }
    /// A weight's shape and values, by its Keras name.
    fn weight(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        Ok(self
            .layer
            .weights()
            .into_iter()
            .find(|w| w.name == name)
            .map(|w| (w.value.shape().to_vec(), w.value.data().clone())))
    }
    fn required(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        self.weight(name)?
            .ok_or_else(|| self.error(format!("weight '{name}' is missing (not built?)")))
    }
    fn one_input(&self, ins: Vec<Value>) -> Result<Value> {
        let n = ins.len();
        let mut it = ins.into_iter();
        match (it.next(), n) {
            (Some(v), 1) => Ok(v),
            _ => Err(self.error(format!("takes 1 input, found {n}"))),
        }
    }
    fn image(&self, v: &Value) -> Result<()> {
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
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.names.contains(&name) {
            name = format!("{base}__{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    fn node(
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
    fn op(
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

    fn init_f32(&mut self, base: &str, dims: &[usize], data: &[f32]) -> String {
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

    fn init_i64(&mut self, base: &str, data: &[i64]) -> String {
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
    fn nchw(&mut self, v: &mut Value, base: &str) -> String {
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
    fn nhwc(&mut self, v: &mut Value, base: &str) -> String {
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

    fn form(&mut self, v: &mut Value, layout: Layout, base: &str) -> String {
        match layout {
            Layout::Nhwc => self.nhwc(v, base),
            Layout::Nchw => self.nchw(v, base),
        }
    }

    /// Applies a fused activation to `x`, a tensor of `rank` (batch included)
    /// in `layout`; `Linear` returns `x` itself.
    fn activation(
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

    /// Emits the ONNX nodes of one layer application.
    fn layer(
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
            if v.shape.len() == 3 || v.shape.len() == 1 {
                // ONNX normalises axis 1: NCHW images, or (N, C).
                let x = self.nchw(&mut v, base);
                let inputs = vec![
                    x,
                    self.init_f32(&format!("{base}.gamma"), &[c], &gamma),
                    self.init_f32(&format!("{base}.beta"), &[c], &beta),
                    self.init_f32(&format!("{base}.moving_mean"), &[c], &mean),
                    self.init_f32(&format!("{base}.moving_variance"), &[c], &var),
                ];
                let y = self.op(
                    "BatchNormalization",
                    &format!("{base}/batch_norm"),
                    inputs,
                    vec![attr_float("epsilon", l.epsilon)],
                );
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
            let inputs = vec![
                t,
                self.init_f32(&format!("{base}.gamma"), &[c], &gamma),
                self.init_f32(&format!("{base}.beta"), &[c], &beta),
                self.init_f32(&format!("{base}.moving_mean"), &[c], &mean),
                self.init_f32(&format!("{base}.moving_variance"), &[c], &var),
            ];
            let y = self.op(
                "BatchNormalization",
                &format!("{base}/batch_norm"),
                inputs,
                vec![attr_float("epsilon", l.epsilon)],
            );
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

    /// A Conv node on `x` (NCHW) with the kernel initializer `kernel`, the
    /// layer's bias if it has one, then its fused activation.
    fn conv(
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
    fn window(
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
    fn pool(
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

    fn global_pool(
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

    /// The inputs of an elementwise merge in one layout: NCHW when the first
    /// is there already (images only), else NHWC.
    fn common_forms(&mut self, cx: &Ctx, mut ins: Vec<Value>) -> Result<(Layout, Vec<String>)> {
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

/// A Conv2D kernel (kh, kw, C_in/groups, C_out) in ONNX's (C_out, C_in/groups, kh, kw).
fn hwio_to_oihw(shape: &[usize], k: &[f32]) -> Vec<f32> {
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
