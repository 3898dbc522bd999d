//! Model spec files (JSON, see CONTRACT.md): Sequential (`input_shape` +
//! `layers`) or functional (`inputs` + `layers` with `inputs` + `outputs`).
//! Every argument is checked: unknown ones, bad values, duplicate names,
//! unknown inputs and cycles are errors naming the layer and the field.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::{Map, Value};

use super::{Model, Source};
use crate::activations::Activation;
use crate::error::{NnError, Result};
use crate::initializers::Initializer;
use crate::layers::*;
use strata_core::ops::Padding;

mod args;
mod known_arguments;
mod read_layer;
mod weight_budget;

use args::*;
use known_arguments::*;
pub use read_layer::*;
use weight_budget::*;

/// The largest size a spec may give one argument or input dimension (2^24):
/// sums and products of a few sizes then stay far from overflowing.
const MAX_SIZE: u64 = 1 << 24;
/// The most elements one input sample may have (2^31).
const MAX_INPUT_ELEMENTS: u128 = 1 << 31;
/// The most weight values a spec may ask for in all (2^28 floats, 1 GiB),
/// checked before a layer allocates: a model file cannot exhaust memory.
pub const MAX_SPEC_WEIGHTS: u128 = 1 << 28;

/// Builds one layer from its spec object (`type` plus Keras arguments).
pub fn layer_from_spec(obj: &Map<String, Value>, position: usize) -> Result<Box<dyn Layer>> {
    let ty = obj
        .get("type")
        .and_then(|v| v.as_str())
        .ok_or_else(|| NnError::Spec(format!("layer {position}: missing \"type\"")))?;
    let label = obj
        .get("name")
        .and_then(|v| v.as_str())
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("#{position} ({ty})"));
    if let Some(known) = known_arguments(ty) {
        // misspelt arguments first: a missing required one is often one of them
        let unknown: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| !known.contains(k) && !COMMON_KEYS.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(unknown_arguments(&label, ty, &unknown, known));
        }
    }
    let mut a = Args {
        layer: label.clone(),
        ty,
        map: obj,
        used: HashSet::new(),
    };
    let mut layer = read_layer(ty, &label, &mut a)?;
    let trainable = match obj.get("trainable") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(NnError::config(
                &label,
                "trainable",
                format!("expected true or false, found {v}"),
            ))
        }
    };
    a.finish()?;
    if let Some(n) = obj.get("name") {
        let n = n
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| NnError::config(&label, "name", "expected a non-empty string"))?;
        layer.set_name(n);
    }
    if !trainable {
        layer.base_mut().trainable = false;
    }
    Ok(layer)
}

/// Builds a model from a parsed spec; `seed` drives weight initialisation.
pub fn model_from_spec(spec: &Value, seed: u64) -> Result<Model> {
    let obj = spec
        .as_object()
        .ok_or_else(|| NnError::Spec("the spec must be a JSON object".into()))?;
    for k in obj.keys() {
        if !["name", "input_shape", "inputs", "layers", "outputs"].contains(&k.as_str()) {
            return Err(NnError::Spec(format!("unknown top-level field '{k}'")));
        }
    }
    let name = obj.get("name").and_then(|v| v.as_str()).unwrap_or("model");
    let layers = obj
        .get("layers")
        .and_then(|v| v.as_array())
        .ok_or_else(|| NnError::Spec("\"layers\" must be a list".into()))?;
    let objs: Vec<&Map<String, Value>> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.as_object()
                .ok_or_else(|| NnError::Spec(format!("layer {i}: expected an object")))
        })
        .collect::<Result<_>>()?;
    // weight values planned so far (checked against MAX_SPEC_WEIGHTS)
    let mut weights: u128 = 0;
    // explicit names are reserved first so default names skip them
    let mut explicit = HashSet::new();
    for (i, o) in objs.iter().enumerate() {
        if let Some(n) = o.get("name").and_then(|v| v.as_str()) {
            if !explicit.insert(n.to_string()) {
                return Err(NnError::config(
                    n,
                    "name",
                    format!("duplicate layer name (layer {i})"),
                ));
            }
        }
    }
    if let Some(shape) = obj.get("input_shape") {
        if obj.contains_key("inputs") || obj.contains_key("outputs") {
            return Err(NnError::Spec(
                "use either input_shape (Sequential) or inputs/outputs (functional), not both"
                    .into(),
            ));
        }
        let shape = shape_list(shape, "input_shape")?;
        let mut m = Model::sequential(name, &shape, seed);
        for n in &explicit {
            m.namer.reserve(n);
        }
        for (i, o) in objs.iter().enumerate() {
            if o.contains_key("inputs") {
                return Err(NnError::config(
                    &label_of(o, i),
                    "inputs",
                    "a Sequential spec takes no per-layer inputs",
                ));
            }
            let mut layer = layer_from_spec(o, i)?;
            if layer.name().is_empty() {
                let n = m.namer.default_name(layer.class_name());
                layer.set_name(&n);
            }
            let trainable = layer.trainable();
            let prev = m.outputs[0];
            check_weight_budget(&m, layer.as_ref(), &[prev], &mut weights)?;
            m.layers.push(layer);
            let out = m.reuse(m.layers.len() - 1, &[prev])?;
            m.outputs = vec![out];
            if !trainable {
                if let Some(l) = m.layers.last_mut() {
                    l.set_trainable(false)
                }
            }
        }
        return Ok(m);
    }
    let inputs = obj
        .get("inputs")
        .and_then(|v| v.as_object())
        .ok_or_else(|| {
            NnError::Spec(
                "a spec needs \"input_shape\" (Sequential) or \"inputs\" (functional)".into(),
            )
        })?;
    let mut m = Model::functional(name, seed);
    let mut sources: HashMap<String, Source> = HashMap::new();
    for (n, s) in inputs {
        if explicit.contains(n) {
            return Err(NnError::config(
                n,
                "name",
                "a layer has the same name as an input",
            ));
        }
        let src = m.input(n, &shape_list(s, &format!("input '{n}'"))?)?;
        sources.insert(n.clone(), src);
    }
    for n in &explicit {
        m.namer.reserve(n);
    }
    // layers may be listed in any order: place each once all its inputs exist
    let mut pending: Vec<usize> = (0..objs.len()).collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for i in pending {
            let o = objs[i];
            let label = label_of(o, i);
            let ins = o.get("inputs").and_then(|v| v.as_array()).ok_or_else(|| {
                NnError::config(
                    &label,
                    "inputs",
                    "a functional layer needs a list of input names",
                )
            })?;
            let names: Vec<&str> = ins
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        NnError::config(&label, "inputs", format!("expected names, found {v}"))
                    })
                })
                .collect::<Result<_>>()?;
            for n in &names {
                if !sources.contains_key(*n) && !explicit.contains(*n) {
                    return Err(NnError::config(
                        &label,
                        "inputs",
                        format!("unknown input '{n}'"),
                    ));
                }
            }
            if names.iter().all(|n| sources.contains_key(*n)) {
                let srcs: Vec<Source> = names.iter().map(|n| sources[*n]).collect();
                let mut layer = layer_from_spec(o, i)?;
                if layer.name().is_empty() {
                    let n = m.namer.default_name(layer.class_name());
                    layer.set_name(&n);
                }
                let trainable = layer.trainable();
                let lname = layer.name().to_string();
                check_weight_budget(&m, layer.as_ref(), &srcs, &mut weights)?;
                m.layers.push(layer);
                let out = m.reuse(m.layers.len() - 1, &srcs)?;
                if !trainable {
                    if let Some(l) = m.layers.last_mut() {
                        l.set_trainable(false)
                    }
                }
                sources.insert(lname, out);
            } else {
                rest.push(i);
            }
        }
        if rest.len() == before {
            let names: Vec<String> = rest.iter().map(|&i| label_of(objs[i], i)).collect();
            return Err(NnError::Spec(format!(
                "the graph has a cycle through {}",
                names.join(", ")
            )));
        }
        pending = rest;
    }
    let outs = obj
        .get("outputs")
        .and_then(|v| v.as_array())
        .ok_or_else(|| {
            NnError::Spec("a functional spec needs \"outputs\": a list of layer names".into())
        })?;
    let outs: Vec<Source> = outs
        .iter()
        .map(|v| {
            let n = v.as_str().ok_or_else(|| {
                NnError::Spec(format!("outputs: expected layer names, found {v}"))
            })?;
            sources
                .get(n)
                .copied()
                .ok_or_else(|| NnError::Spec(format!("outputs: unknown layer '{n}'")))
        })
        .collect::<Result<_>>()?;
    m.set_outputs(&outs)?;
    Ok(m)
}

fn label_of(o: &Map<String, Value>, i: usize) -> String {
    o.get("name")
        .and_then(|v| v.as_str())
        .map(|s| s.to_string())
        .unwrap_or_else(|| {
            format!(
                "#{i} ({})",
                o.get("type").and_then(|v| v.as_str()).unwrap_or("?")
            )
        })
}

/// Reads and builds a spec file.
pub fn model_from_spec_file(path: impl AsRef<Path>, seed: u64) -> Result<Model> {
    let path = path.as_ref();
    let text = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    let text = String::from_utf8(text)
        .map_err(|_| NnError::Spec(format!("{}: not UTF-8 text", path.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| NnError::Spec(format!("{}: invalid JSON: {e}", path.display())))?;
    model_from_spec(&v, seed).map_err(|e| match e {
        NnError::Spec(m) => NnError::Spec(format!("{}: {m}", path.display())),
        other => other,
    })
}

impl Model {
    /// The model as spec JSON (what `model_from_spec` reads back).
    pub fn to_spec(&self) -> Value {
        let mut root = Map::new();
        root.insert("name".into(), self.name().into());
        let layer_json = |l: &dyn Layer| {
            let mut o = Map::new();
            o.insert("type".into(), l.class_name().into());
            o.insert("name".into(), l.name().into());
            o.extend(l.config());
            if !l.trainable() {
                o.insert("trainable".into(), false.into());
            }
            o
        };
        let src_name = |s: &Source| match s {
            Source::Input(i) => self.inputs[*i].0.clone(),
            Source::Node(i) => self.layers[self.nodes[*i].layer].name().to_string(),
        };
        if self.sequential {
            root.insert("input_shape".into(), Value::from(self.inputs[0].1.clone()));
            root.insert(
                "layers".into(),
                Value::Array(
                    self.layers
                        .iter()
                        .map(|l| Value::Object(layer_json(l.as_ref())))
                        .collect(),
                ),
            );
        } else {
            let mut ins = Map::new();
            for (n, s) in &self.inputs {
                ins.insert(n.clone(), Value::from(s.clone()));
            }
            root.insert("inputs".into(), Value::Object(ins));
            let layers = self
                .nodes
                .iter()
                .map(|n| {
                    let mut o = layer_json(self.layers[n.layer].as_ref());
                    o.insert(
                        "inputs".into(),
                        Value::from(n.inputs.iter().map(src_name).collect::<Vec<_>>()),
                    );
                    Value::Object(o)
                })
                .collect();
            root.insert("layers".into(), Value::Array(layers));
            root.insert(
                "outputs".into(),
                Value::from(self.outputs.iter().map(src_name).collect::<Vec<_>>()),
            );
        }
        Value::Object(root)
    }
}

#[cfg(test)]
mod tests;
