//! The order in which an ONNX graph's nodes can run, refusing a cycle or an
//! input that nothing produces.

use std::collections::{HashMap, HashSet};

use crate::error::{OnnxError, Result};
use crate::proto::GraphProto;

/// A display name of node `i`: its name, or its position and op type.
pub fn node_label(graph: &GraphProto, i: usize) -> String {
    let n = &graph.node[i];
    if n.name.is_empty() {
        format!("{} #{i}", n.op_type)
    } else {
        format!("{} '{}'", n.op_type, n.name)
    }
}

/// Node indices in an order where every input is made before it is used.
/// `available` holds the names that exist before any node runs (graph inputs
/// and initializers); an empty input name is ONNX's "optional, absent".
pub fn order(graph: &GraphProto, available: &HashSet<String>) -> Result<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if available.contains(o) || producer.insert(o.as_str(), i).is_some() {
                return Err(OnnxError::Invalid(format!(
                    "value '{o}' is produced twice (by {})",
                    node_label(graph, i)
                )));
            }
        }
    }
    for (i, n) in graph.node.iter().enumerate() {
        for x in n.input.iter().filter(|x| !x.is_empty()) {
            if !available.contains(x) && !producer.contains_key(x.as_str()) {
                return Err(OnnxError::Invalid(format!(
                    "input '{x}' of {} is not a graph input, an initializer or any node's output",
                    node_label(graph, i)
                )));
            }
        }
    }
    for o in &graph.output {
        if !available.contains(&o.name) && !producer.contains_key(o.name.as_str()) {
            return Err(OnnxError::Invalid(format!(
                "graph output '{}' is not produced by any node",
                o.name
            )));
        }
    }
    // Kahn's algorithm over "node j reads an output of node i", keeping the
    // file's order among ready nodes.
    let mut pending: Vec<usize> = vec![0; graph.node.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (j, n) in graph.node.iter().enumerate() {
        let mut from: HashSet<usize> = HashSet::new();
        for x in &n.input {
            if let Some(&i) = producer.get(x.as_str()) {
                from.insert(i);
            }
        }
        pending[j] = from.len();
        for i in from {
            readers[i].push(j);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..graph.node.len()).filter(|&j| pending[j] == 0).collect();
    let mut out = Vec::with_capacity(graph.node.len());
    while let Some(i) = ready.pop_first() {
        out.push(i);
        for &j in &readers[i] {
            pending[j] -= 1;
            if pending[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if out.len() < graph.node.len() {
        let stuck: Vec<String> = (0..graph.node.len())
            .filter(|&j| pending[j] > 0)
            .take(5)
            .map(|j| node_label(graph, j))
            .collect();
        return Err(OnnxError::Invalid(format!(
            "the graph has a cycle through {}",
            stuck.join(", ")
        )));
    }
    Ok(out)
}
