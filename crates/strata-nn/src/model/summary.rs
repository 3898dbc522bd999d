//! `summary`: the Keras-style table and its JSON form (CONTRACT.md).

use serde::Serialize;
use serde_json::Value;

use super::{Model, Source};
use crate::error::batch_shape;
use crate::explain::thousands;

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
}

fn shape_json(s: &[usize]) -> Value {
    let mut v = vec![Value::Null];
    v.extend(s.iter().map(|&d| Value::from(d)));
    Value::Array(v)
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
        let src_name = |s: &Source| match s {
            Source::Input(i) => self.inputs[*i].0.clone(),
            Source::Node(i) => self.layers[self.nodes[*i].layer].name().to_string(),
        };
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(li, l)| {
                let nodes: Vec<_> = self.nodes.iter().filter(|n| n.layer == li).collect();
                let output_shape = match nodes.len() {
                    1 => shape_json(&nodes[0].output_shape),
                    _ => Value::Array(nodes.iter().map(|n| shape_json(&n.output_shape)).collect()),
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
        }
    }

    /// The summary as the Keras-style text table.
    pub fn summary_table(&self) -> String {
        let s = self.summary();
        let graph = !self.sequential;
        let mut rows: Vec<[String; 4]> = Vec::new();
        if graph {
            for (n, shape) in &self.inputs {
                rows.push([
                    format!("{n} (InputLayer)"),
                    batch_shape(shape),
                    "0".into(),
                    "-".into(),
                ]);
            }
        }
        for l in &s.layers {
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
            rows.push([
                format!("{} ({}){frozen}", l.name, l.class),
                shape,
                thousands(l.params),
                if l.connected_to.is_empty() {
                    "-".into()
                } else {
                    l.connected_to.join(", ")
                },
            ]);
        }
        let head = ["Layer (type)", "Output Shape", "Param #", "Connected to"];
        let cols = if graph { 4 } else { 3 };
        let width: Vec<usize> = (0..cols)
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].chars().count())
                    .chain([head[c].len()])
                    .max()
                    .unwrap_or(0)
                    + 2
            })
            .collect();
        let line = |ch: &str| ch.repeat(width.iter().sum::<usize>());
        let fmt_row = |r: &[String]| {
            (0..cols)
                .map(|c| {
                    if c == 2 {
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
    }
}
