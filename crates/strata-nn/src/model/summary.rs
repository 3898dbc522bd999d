//! `summary`: the Keras-style table and its JSON form (CONTRACT.md), with
//! each layer's multiply-adds, activation memory, receptive field and jump
//! (`profile.rs` defines them) and torchinfo's totals.

use serde::Serialize;
use serde_json::Value;

use super::{Field, Model, Source};
use crate::error::batch_shape;
use crate::explain::{decimal_bytes, thousands};

#[derive(Debug, Clone, Serialize)]
pub struct WeightSummary {
    /// The file name `<layer>.<weight>`.
    pub name: String,
    /// The Keras weight name (`kernel`, `moving_mean`, ...).
    pub keras_name: String,
    pub shape: Vec<usize>,
    pub trainable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub class: String,
    /// `[null, d1, ...]`, or a list of such shapes for a layer applied at several nodes.
    pub output_shape: Value,
    pub params: usize,
    pub trainable: bool,
    pub weights: Vec<WeightSummary>,
    /// Names of the layers (or inputs) feeding this one (graphs only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connected_to: Vec<String>,
    /// Multiply-adds per sample, summed over the layer's applications.
    pub macs: u64,
    /// Bytes of the layer's output per sample (float32), summed over its applications.
    pub activation_bytes: u64,
    /// `[h, w]` input pixels one output value sees; `null` where it sees the
    /// whole input (after global pooling or Flatten) or the input is no
    /// image; a list of these for a layer applied at several nodes.
    pub receptive_field: Value,
    /// `[h, w]`: how many input pixels apart neighbouring output values'
    /// fields start (the effective stride); `null` and lists as above.
    pub jump: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub layers: Vec<LayerSummary>,
    pub total_params: usize,
    pub trainable_params: usize,
    pub non_trainable_params: usize,
    /// Bytes of all weights (float32).
    pub weights_bytes: usize,
    /// Multiply-adds of a forward pass per sample (torchinfo's "Total mult-adds").
    pub total_macs: u64,
    /// The model inputs' bytes per sample (torchinfo's "Input size").
    pub input_bytes: u64,
    /// Every layer's output per sample, summed: the forward activation memory.
    pub total_activation_bytes: u64,
    /// torchinfo's "Forward/backward pass size": twice the outputs of the
    /// layers with weights.
    pub forward_backward_bytes: u64,
}

fn shape_json(s: &[usize]) -> Value {
    let mut v = vec![Value::Null];
    v.extend(s.iter().map(|&d| Value::from(d)));
    Value::Array(v)
}

/// `[h, w]`, or `null` where the field is not a window.
fn pair_json(p: Option<[usize; 2]>) -> Value {
    p.map_or(Value::Null, |[h, w]| Value::from(vec![h, w]))
}

/// torchinfo's `Total mult-adds (G): 4.09`: the unit chosen by size.
fn mult_adds_line(n: u64) -> String {
    let x = n as f64;
    match n {
        1_000_000_000_000.. => format!("Total mult-adds (T): {:.2}", x / 1e12),
        1_000_000_000.. => format!("Total mult-adds (G): {:.2}", x / 1e9),
        1_000_000.. => format!("Total mult-adds (M): {:.2}", x / 1e6),
        1_000.. => format!("Total mult-adds (K): {:.2}", x / 1e3),
        _ => format!("Total mult-adds: {n}"),
    }
}

fn human_bytes(b: usize) -> String {
    if b >= 1 << 20 {
        format!("{:.2} MB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.2} KB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

impl Model {
    /// The summary as data.
    pub fn summary(&self) -> Summary {
        let profile = self.profile();
        let src_name = |s: &Source| match s {
            Source::Input(i) => self.inputs[*i].0.clone(),
            Source::Node(i) => self.layers[self.nodes[*i].layer].name().to_string(),
        };
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(li, l)| {
                let at: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].layer == li)
                    .collect();
                let nodes: Vec<_> = at.iter().map(|&i| &self.nodes[i]).collect();
                let output_shape = match nodes.len() {
                    1 => shape_json(&nodes[0].output_shape),
                    _ => Value::Array(nodes.iter().map(|n| shape_json(&n.output_shape)).collect()),
                };
                let costs: Vec<_> = at.iter().filter_map(|&i| profile.nodes.get(i)).collect();
                let per_node = |f: &dyn Fn(&Field) -> Value| match costs.as_slice() {
                    [one] => f(&one.field),
                    many => Value::Array(many.iter().map(|n| f(&n.field)).collect()),
                };
                let connected_to = if self.sequential {
                    Vec::new()
                } else {
                    nodes
                        .iter()
                        .flat_map(|n| n.inputs.iter().map(src_name))
                        .collect()
                };
                let weights = super::named_weights_of(l.as_ref())
                    .into_iter()
                    .map(|(name, w)| WeightSummary {
                        name,
                        keras_name: w.name.to_string(),
                        shape: w.shape().to_vec(),
                        trainable: w.value.requires_grad(),
                    })
                    .collect();
                LayerSummary {
                    name: l.name().to_string(),
                    class: l.class_name().to_string(),
                    output_shape,
                    params: l.param_count(),
                    trainable: l.trainable(),
                    weights,
                    connected_to,
                    macs: costs.iter().fold(0, |a, n| a.saturating_add(n.macs)),
                    activation_bytes: costs
                        .iter()
                        .fold(0, |a, n| a.saturating_add(n.activation_bytes)),
                    receptive_field: per_node(&|f| pair_json(f.size())),
                    jump: per_node(&|f| pair_json(f.jump())),
                }
            })
            .collect();
        let total = self.count_params();
        let trainable = self.count_trainable_params();
        Summary {
            name: self.name().to_string(),
            layers,
            total_params: total,
            trainable_params: trainable,
            non_trainable_params: total - trainable,
            weights_bytes: total * 4,
            total_macs: profile.total_macs(),
            input_bytes: profile.input_bytes,
            total_activation_bytes: profile.activation_bytes(),
            forward_backward_bytes: profile.forward_backward_bytes(),
        }
    }

    /// The summary as the Keras-style text table. After Keras's columns come
    /// each layer's multiply-adds, activation memory (decimal units, as
    /// torchinfo prints them), receptive field and jump (`h x w`), and after
    /// Keras's totals torchinfo's: mult-adds, input size, forward/backward
    /// pass size and params size, with the forward activation memory.
    pub fn summary_table(&self) -> String {
        let s = self.summary();
        let profile = self.profile();
        let graph = !self.sequential;
        let mut rows: Vec<Vec<String>> = Vec::new();
        if graph {
            for (i, (n, shape)) in self.inputs.iter().enumerate() {
                let field = self.field_of(&profile, Source::Input(i));
                rows.push(vec![
                    format!("{n} (InputLayer)"),
                    batch_shape(shape),
                    "0".into(),
                    "-".into(),
                    "0".into(),
                    "-".into(),
                    field.size_text(),
                    field.jump_text(),
                ]);
            }
        }
        for (li, l) in s.layers.iter().enumerate() {
            let shape = match &l.output_shape {
                Value::Array(v) if v.first().is_some_and(|x| x.is_array()) => {
                    v.iter().map(json_shape_text).collect::<Vec<_>>().join(", ")
                }
                v => json_shape_text(v),
            };
            let frozen = if l.trainable || l.params == 0 {
                ""
            } else {
                " [frozen]"
            };
            let fields: Vec<Field> = self
                .nodes
                .iter()
                .zip(&profile.nodes)
                .filter(|(n, _)| n.layer == li)
                .map(|(_, p)| p.field)
                .collect();
            let texts =
                |f: fn(&Field) -> String| fields.iter().map(f).collect::<Vec<_>>().join(", ");
            rows.push(vec![
                format!("{} ({}){frozen}", l.name, l.class),
                shape,
                thousands(l.params),
                if l.connected_to.is_empty() {
                    "-".into()
                } else {
                    l.connected_to.join(", ")
                },
                thousands(usize::try_from(l.macs).unwrap_or(usize::MAX)),
                decimal_bytes(l.activation_bytes),
                texts(Field::size_text),
                texts(Field::jump_text),
            ]);
        }
        let head = [
            "Layer (type)",
            "Output Shape",
            "Param #",
            "Connected to",
            "Mult-adds",
            "Activation memory",
            "Receptive field",
            "Jump",
        ];
        // Keras's columns first ("Connected to" for graphs only), then the profile's
        let cols: Vec<usize> = (0..head.len()).filter(|&c| graph || c != 3).collect();
        let right = |c: usize| matches!(c, 2 | 4 | 5);
        let width: Vec<usize> = (0..head.len())
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].chars().count())
                    .chain([head[c].len()])
                    .max()
                    .unwrap_or(0)
                    + 2
            })
            .collect();
        let line = |ch: &str| ch.repeat(cols.iter().map(|&c| width[c]).sum::<usize>());
        let fmt_row = |r: &[String]| {
            cols.iter()
                .map(|&c| {
                    if right(c) {
                        format!("{:>w$}  ", r[c], w = width[c] - 2)
                    } else {
                        format!("{:<w$}", r[c], w = width[c])
                    }
                })
                .collect::<String>()
                .trim_end()
                .to_string()
        };
        let mut out = format!(
            "Model: \"{}\"\n{}\n{}\n{}\n",
            s.name,
            line("━"),
            fmt_row(&head.map(String::from)),
            line("━")
        );
        for (i, r) in rows.iter().enumerate() {
            out.push_str(&fmt_row(r));
            out.push('\n');
            out.push_str(&if i + 1 == rows.len() {
                line("━")
            } else {
                line("─")
            });
            out.push('\n');
        }
        let bytes = |n: usize| human_bytes(n * 4);
        out.push_str(&format!(
            " Total params: {} ({})\n Trainable params: {} ({})\n Non-trainable params: {} ({})\n",
            thousands(s.total_params),
            bytes(s.total_params),
            thousands(s.trainable_params),
            bytes(s.trainable_params),
            thousands(s.non_trainable_params),
            bytes(s.non_trainable_params)
        ));
        let mb = |b: u64| format!("{:.2}", b as f64 / 1e6);
        out.push_str(&format!(
            " {}\n Input size (MB): {}\n Forward activation memory (MB): {} (every layer's output)\n Forward/backward pass size (MB): {} (torchinfo's: twice the outputs of layers with weights)\n Params size (MB): {}\n",
            mult_adds_line(s.total_macs),
            mb(s.input_bytes),
            mb(s.total_activation_bytes),
            mb(s.forward_backward_bytes),
            mb(s.weights_bytes as u64),
        ));
        out
    }

    /// The CONTRACT JSON document of `strata summary --json`.
    pub fn summary_json(&self) -> Value {
        serde_json::to_value(self.summary()).unwrap_or(Value::Null)
    }
}

fn json_shape_text(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "({})",
            a.iter()
                .map(|x| if x.is_null() {
                    "None".to_string()
                } else {
                    x.to_string()
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Dense;

    #[test]
    fn table_and_json() {
        let mut m = Model::sequential("tiny", &[4], 0);
        m.add(Dense::new(3)).unwrap();
        let t = m.summary_table();
        assert!(t.contains("dense (Dense)"), "{t}");
        assert!(t.contains("(None, 3)"), "{t}");
        assert!(t.contains("Total params: 15 (60 B)"), "{t}");
        let j = m.summary_json();
        assert_eq!(j["layers"][0]["output_shape"], serde_json::json!([null, 3]));
        assert_eq!(j["layers"][0]["weights"][0]["name"], "dense.kernel");
        assert_eq!(j["total_params"], 15);
        // a vector input is no image: 4*3 multiply-adds, 3 float32 outputs
        assert_eq!(j["layers"][0]["macs"], 12);
        assert_eq!(j["layers"][0]["activation_bytes"], 12);
        assert!(j["layers"][0]["receptive_field"].is_null());
        assert!(j["layers"][0]["jump"].is_null());
        assert_eq!(j["total_macs"], 12);
        assert_eq!(j["total_activation_bytes"], 12);
        assert_eq!(j["input_bytes"], 16);
        assert_eq!(j["forward_backward_bytes"], 24);
        assert!(t.contains(" Total mult-adds: 12\n"), "{t}");
        let row = t.lines().find(|l| l.starts_with("dense (Dense)")).unwrap();
        let cells: Vec<&str> = row
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            cells,
            ["dense (Dense)", "(None, 3)", "15", "12", "12 B", "-", "-"],
            "{t}"
        );
    }
}
