//! strata model -> ONNX graph.
//!
//! The graph's inputs take strata's layout (NHWC float32, batch axis dynamic,
//! `dim_param` "batch"). Inside, image tensors live in NCHW, ONNX's layout for
//! Conv/Pool/BatchNormalization: each value keeps its NHWC and/or NCHW form,
//! and a Transpose is inserted only when a layer asks for the form it lacks
//! (Flatten, Reshape and Dense on images read NHWC, so they flatten and
//! contract in Keras order). Outputs are transposed back to NHWC.

mod graph;
mod layers;
mod ops;

use std::path::Path;

use strata_nn::model::{Model, Source};

use crate::build::value_info as typed_value;
use crate::error::{OnnxError, Result};
use crate::proto::{
    GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto, ValueInfoProto,
};
use graph::{Builder, Value};

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
    let mut dims = vec![None];
    dims.extend(shape.iter().map(|&d| Some(d)));
    typed_value(name, &dims)
}
