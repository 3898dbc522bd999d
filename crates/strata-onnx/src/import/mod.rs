//! ONNX model -> strata model.
//!
//! [`import_bytes`] reads an ONNX file's bytes and builds a strata functional
//! model with its weights; [`import_file`] reads the file first. The result is
//! an ordinary strata model: summary, explain, predict, fine-tuning, the
//! pictures and export work on it.
//!
//! - NCHW graphs become NHWC (see [`value`]): kernels become HWIO, Gemm
//!   weights (in, out), and a Flatten of NCHW feature maps reorders the next
//!   Dense layer's rows so that the outputs are unchanged. Transposes cost
//!   nothing: they only change how ONNX axes map to strata's.
//! - Operators (default domain, opset 13 and up): Conv (group, dilations,
//!   pads, auto_pad), BatchNormalization, Relu, LeakyRelu, Clip (as ReLU and
//!   ReLU6), Sigmoid, Tanh, Softplus, Softmax, MaxPool, AveragePool, GlobalAveragePool,
//!   GlobalMaxPool, Gemm, MatMul, Add, Mul, Concat, Flatten, Reshape, Pad,
//!   Dropout, Identity, Transpose, Constant; Sub, Div and Sigmoid on
//!   constants are folded. A bias added after a Conv or MatMul folds into its
//!   layer, an activation right after one becomes the layer's activation.
//! - Anything else is refused with every unsupported node listed at once.

mod decode;
mod elementwise;
mod graph_order;
mod linear;
mod naming;
mod spatial;
mod value;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::{json, Map, Value as Json};
use strata_nn::model::{model_from_spec, Model, ModelInfo};

use crate::error::{OnnxError, Result};
use crate::proto::{tensor_shape_proto::dimension, type_proto, DataType, NodeProto};
use decode::{Attrs, Const};
use graph_order::node_label;
use value::Val;

pub use decode::MIN_OPSET;

/// An imported model and what the import has to say about it.
pub struct Imported {
    /// The strata model with the ONNX file's weights.
    pub model: Model,
    /// Things a user should know (layout changes of inputs and outputs).
    pub notes: Vec<String>,
    /// The number of ONNX nodes read.
    pub onnx_nodes: usize,
}

/// Reads an ONNX file and imports it (see [`import_bytes`]).
pub fn import_file(path: &Path) -> Result<Imported> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.display().to_string(),
        source,
    })?;
    import_bytes(&bytes).map_err(|e| OnnxError::InFile {
        path: path.display().to_string(),
        source: Box::new(e),
    })
}

/// Builds the strata model of an ONNX model's bytes.
pub fn import_bytes(bytes: &[u8]) -> Result<Imported> {
    let (proto, _opset) = decode::model(bytes)?;
    let graph = proto
        .graph
        .as_ref()
        .expect("decode::model checks the graph");
    let mut imp = Importer::new();

    for t in &graph.initializer {
        let c = decode::tensor(t)
            .map_err(|e| OnnxError::Invalid(format!("initializer '{}': {e}", t.name)))?;
        imp.items.insert(t.name.clone(), Item::Const(c));
    }
    let mut available: HashSet<String> = imp.items.keys().cloned().collect();
    let mut inputs = Map::new();
    for vi in &graph.input {
        if imp.items.contains_key(&vi.name) {
            continue; // an initializer listed among the inputs (IR < 4 style)
        }
        let (name, val, note) = imp.graph_input(vi, graph)?;
        inputs.insert(name, json!(val.shape));
        if let Some(n) = note {
            imp.notes.push(n);
        }
        imp.items.insert(vi.name.clone(), Item::Val(val));
        available.insert(vi.name.clone());
    }
    if inputs.is_empty() {
        return Err(OnnxError::Invalid("the graph has no input".into()));
    }
    let order = graph_order::order(graph, &available)?;
    for n in &graph.node {
        for x in n.input.iter().filter(|x| !x.is_empty()) {
            *imp.uses.entry(x.clone()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *imp.uses.entry(o.name.clone()).or_default() += 1;
    }

    let mut problems = Vec::new();
    let mut poisoned: HashSet<&str> = HashSet::new();
    for &i in &order {
        let node = &graph.node[i];
        if node.input.iter().any(|x| poisoned.contains(x.as_str())) {
            poisoned.extend(node.output.iter().map(String::as_str));
            continue;
        }
        let unused_extra = node
            .output
            .iter()
            .skip(1)
            .all(|o| o.is_empty() || !imp.uses.contains_key(o));
        let result = if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            Err(format!("operator of domain '{}'", node.domain))
        } else if node.output.is_empty() || !unused_extra {
            Err("only a node's first output can be used".into())
        } else {
            imp.node(node)
        };
        match result {
            Ok(item) => {
                imp.items.insert(node.output[0].clone(), item);
            }
            Err(why) => {
                problems.push(format!("{} ({why})", node_label(graph, i)));
                poisoned.extend(node.output.iter().map(String::as_str));
            }
        }
    }
    if !problems.is_empty() {
        return Err(OnnxError::UnsupportedNodes(problems));
    }

    let mut outputs = Vec::new();
    for o in &graph.output {
        let mut v = match imp.items.get(&o.name) {
            Some(Item::Val(v)) => v.clone(),
            _ => {
                return Err(OnnxError::UnsupportedNodes(vec![format!(
                    "graph output '{}' (a constant, not computed from the inputs)",
                    o.name
                )]))
            }
        };
        if v.scale.is_some() || v.flat_order.is_some() {
            return Err(OnnxError::UnsupportedNodes(vec![format!(
                "graph output '{}' (its features are in an order strata's layers do not make)",
                o.name
            )]));
        }
        let some: Vec<usize> = v.axes.iter().flatten().copied().collect();
        if v.axes.contains(&None) && some.windows(2).all(|w| w[0] < w[1]) {
            // Size-1 axes strata dropped (a global pool's (N, C, 1, 1)):
            // reshape to ONNX's dims, which then are strata's own order.
            let at = NodeProto {
                name: format!("{}/reshape", o.name),
                op_type: "Reshape".into(),
                ..Default::default()
            };
            let dims = v.onnx_dims();
            let src = imp.layer(
                &at,
                None,
                "Reshape",
                json!({"target_shape": dims}),
                &[&v.src],
            );
            v = Val::plain(src, dims);
        }
        if !v.is_plain() {
            imp.notes.push(format!(
                "output '{}' is {:?} per sample in strata's order (ONNX: {:?})",
                o.name,
                v.shape,
                v.onnx_dims()
            ));
        }
        if inputs.contains_key(&v.src) {
            return Err(OnnxError::UnsupportedNodes(vec![format!(
                "graph output '{}' (an input passed through unchanged)",
                o.name
            )]));
        }
        outputs.push(json!(v.src));
    }
    let name = naming::sanitize(&graph.name).unwrap_or_else(|| "imported".into());
    let layers: Vec<Json> = imp.layers.into_iter().map(Json::Object).collect();
    let spec = json!({"name": name, "inputs": inputs, "layers": layers, "outputs": outputs});
    let mut model = model_from_spec(&spec, 0)?;
    let warnings = model.set_weight_tensors(Path::new("the ONNX initializers"), imp.weights)?;
    imp.notes.extend(warnings);
    let class_names = proto
        .metadata_props
        .iter()
        .find(|p| p.key == "class_names")
        .and_then(|p| serde_json::from_str::<Vec<String>>(&p.value).ok())
        .unwrap_or_default();
    model.set_info(ModelInfo {
        class_names,
        preprocessing: None,
    });
    Ok(Imported {
        model,
        notes: imp.notes,
        onnx_nodes: graph.node.len(),
    })
}

/// What an ONNX name stands for while importing.
#[derive(Debug, Clone)]
enum Item {
    /// Computed from the inputs: a strata tensor.
    Val(Val),
    /// Known before any input: an initializer or a folded constant.
    Const(Const),
}

/// Why a node cannot be imported, in a few words.
type NodeResult<T> = std::result::Result<T, String>;

/// The strata model under construction.
struct Importer {
    items: HashMap<String, Item>,
    /// How many node inputs and graph outputs read each ONNX value.
    uses: HashMap<String, usize>,
    layers: Vec<Map<String, Json>>,
    index: HashMap<String, usize>,
    weights: Vec<(String, Vec<usize>, Vec<f32>)>,
    names: HashSet<String>,
    /// Conv2D, DepthwiseConv2D and Dense layers whose output is still
    /// affine: a following bias can fold in, an activation can fuse.
    affine: HashSet<String>,
    notes: Vec<String>,
}

impl Importer {
    fn new() -> Importer {
        Importer {
            items: HashMap::new(),
            uses: HashMap::new(),
            layers: Vec::new(),
            index: HashMap::new(),
            weights: Vec::new(),
            names: HashSet::new(),
            affine: HashSet::new(),
            notes: Vec::new(),
        }
    }

    /// A graph input as a strata input: images (rank 4) are NCHW unless the
    /// only thing reading them is a Transpose to NCHW (strata's own export).
    fn graph_input(
        &mut self,
        vi: &crate::proto::ValueInfoProto,
        graph: &crate::proto::GraphProto,
    ) -> Result<(String, Val, Option<String>)> {
        let bad = |what: String| {
            OnnxError::UnsupportedNodes(vec![format!("input '{}' ({what})", vi.name)])
        };
        let Some(type_proto::Value::TensorType(t)) =
            vi.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Err(bad("not a tensor".into()));
        };
        if t.elem_type != DataType::Float as i32 {
            return Err(bad(format!(
                "element type {}, strata takes float32",
                t.elem_type
            )));
        }
        let dims = t.shape.as_ref().map(|s| &s.dim[..]).unwrap_or(&[]);
        if dims.len() < 2 {
            return Err(bad("no batch and feature axes".into()));
        }
        let mut shape = Vec::new();
        for d in &dims[1..] {
            match d.value {
                Some(dimension::Value::DimValue(v)) if v > 0 && v <= 1 << 24 => {
                    shape.push(v as usize)
                }
                _ => return Err(bad("a per-sample dimension that is not a fixed size".into())),
            }
        }
        let name = naming::sanitize(&vi.name).unwrap_or_else(|| "input".into());
        let name = self.fresh(&name);
        let readers: Vec<&NodeProto> = graph
            .node
            .iter()
            .filter(|n| n.input.contains(&vi.name))
            .collect();
        let to_nchw = !readers.is_empty()
            && readers.iter().all(|n| {
                n.op_type == "Transpose"
                    && Attrs(n).ints("perm").as_deref() == Some(&[0, 3, 1, 2][..])
            });
        if shape.len() == 3 && !to_nchw {
            let (c, h, w) = (shape[0], shape[1], shape[2]);
            let note = format!(
                "input '{}' is NHWC in strata: ({h}, {w}, {c}) per sample for ONNX's NCHW ({c}, {h}, {w})",
                vi.name
            );
            return Ok((name.clone(), Val::nchw(name, vec![h, w, c]), Some(note)));
        }
        Ok((name.clone(), Val::plain(name, shape), None))
    }

    /// Translates one node; its first output's item.
    fn node(&mut self, node: &NodeProto) -> NodeResult<Item> {
        match node.op_type.as_str() {
            "Constant" => decode::constant_node(node).map(Item::Const),
            "Identity" => self.item(node, 0),
            "Conv" => self.conv(node),
            "BatchNormalization" => self.batch_norm(node),
            "MaxPool" | "AveragePool" => self.pool(node),
            "GlobalAveragePool" | "GlobalMaxPool" => self.global_pool(node),
            "Pad" => self.pad(node),
            "Gemm" => self.gemm(node),
            "MatMul" => self.matmul(node),
            "Flatten" => self.flatten(node),
            "Reshape" => self.reshape(node),
            "Relu" | "Sigmoid" | "Tanh" | "LeakyRelu" | "Clip" | "Softplus" => {
                self.activation(node)
            }
            "Softmax" => self.softmax(node),
            "Dropout" => self.dropout(node),
            "Add" | "Mul" | "Sub" | "Div" => self.arithmetic(node),
            "Concat" => self.concat(node),
            "Transpose" => self.transpose(node),
            other => Err(format!("no strata equivalent of {other}")),
        }
    }

    /// Input `i` of `node`, whatever it is.
    fn item(&self, node: &NodeProto, i: usize) -> NodeResult<Item> {
        let name = node
            .input
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("input {i} is missing"))?;
        self.items
            .get(name)
            .cloned()
            .ok_or_else(|| format!("input '{name}' is not known"))
    }

    /// Input `i` of `node` as a computed tensor.
    fn val(&self, node: &NodeProto, i: usize) -> NodeResult<Val> {
        match self.item(node, i)? {
            Item::Val(v) if v.scale.is_some() => Err(format!(
                "input {i} is multiplied by a constant, which strata has no layer for"
            )),
            Item::Val(v) => Ok(v),
            Item::Const(_) => Err(format!("input {i} is a constant, not a computed tensor")),
        }
    }

    /// Input `i` of `node` as a constant; `None` when absent (optional).
    fn konst(&self, node: &NodeProto, i: usize) -> NodeResult<Option<Const>> {
        if node.input.get(i).is_none_or(|n| n.is_empty()) {
            return Ok(None);
        }
        match self.item(node, i)? {
            Item::Const(c) => Ok(Some(c)),
            Item::Val(_) => Err(format!("input {i} must be a constant (an initializer)")),
        }
    }

    /// True when ONNX value `name` is read once and is not a graph output
    /// that must keep its own value.
    fn read_once(&self, name: &str) -> bool {
        self.uses.get(name).copied().unwrap_or(0) == 1
    }

    /// A name not taken yet, `base` itself where free.
    fn fresh(&mut self, base: &str) -> String {
        crate::build::unique_name(&mut self.names, base, "_")
    }

    /// Appends a layer reading `inputs`; returns its name.
    fn layer(
        &mut self,
        node: &NodeProto,
        weight: Option<&str>,
        ty: &str,
        args: Json,
        inputs: &[&str],
    ) -> String {
        let base = naming::layer_name(node, weight);
        let name = self.fresh(&base);
        let mut m = Map::new();
        m.insert("name".into(), json!(name));
        m.insert("type".into(), json!(ty));
        if let Json::Object(a) = args {
            m.extend(a);
        }
        m.insert("inputs".into(), json!(inputs));
        self.index.insert(name.clone(), self.layers.len());
        self.layers.push(m);
        name
    }

    /// Records a weight of `layer` under strata's file name `layer.w`.
    fn weight(&mut self, layer: &str, w: &str, shape: Vec<usize>, data: Vec<f32>) {
        self.weights.push((format!("{layer}.{w}"), shape, data));
    }

    /// A layer's spec object.
    fn spec_mut(&mut self, layer: &str) -> Option<&mut Map<String, Json>> {
        let i = *self.index.get(layer)?;
        self.layers.get_mut(i)
    }
}
