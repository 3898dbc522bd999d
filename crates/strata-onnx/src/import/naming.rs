//! Layer names for imported nodes: the module path the exporter recorded
//! (`fc.weight` -> `fc`, `/layer1/layer1.0/conv1/Conv` -> `layer1_0_conv1`),
//! else the op type.

use crate::proto::NodeProto;

/// `name` with every character outside `[A-Za-z0-9_]` made `_`, runs of
/// `_` collapsed and the ends trimmed; `None` when nothing is left or it
/// would start with a digit.
pub fn sanitize(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    for ch in name.chars() {
        let ch = if ch.is_ascii_alphanumeric() { ch } else { '_' };
        if ch == '_' && out.ends_with('_') {
            continue;
        }
        out.push(ch);
    }
    let out = out.trim_matches('_').to_string();
    (!out.is_empty() && !out.starts_with(|c: char| c.is_ascii_digit())).then_some(out)
}

/// The name of the layer made from `node`; `weight` is the name of its main
/// initializer where it has one.
pub fn layer_name(node: &NodeProto, weight: Option<&str>) -> String {
    if let Some(w) = weight.filter(|w| !w.starts_with("onnx::")) {
        if let Some((module, _)) = w.rsplit_once('.') {
            if let Some(n) = sanitize(module) {
                return n;
            }
        }
    }
    let segments: Vec<&str> = node.name.split('/').filter(|s| !s.is_empty()).collect();
    if segments.len() >= 2 {
        // Drop the op's own segment and each segment that the next one
        // extends (`layer1` before `layer1.0`).
        let path = &segments[..segments.len() - 1];
        let kept: Vec<&str> = path
            .iter()
            .enumerate()
            .filter(|(i, s)| path.get(i + 1).is_none_or(|next| !next.starts_with(**s)))
            .map(|(_, s)| *s)
            .collect();
        if let Some(n) = sanitize(&kept.join("_")) {
            return n;
        }
    }
    sanitize(&node.name).unwrap_or_else(|| node.op_type.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, op: &str) -> NodeProto {
        NodeProto {
            name: name.into(),
            op_type: op.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_come_from_weights_then_module_paths_then_op_types() {
        let conv = node("/layer1/layer1.0/conv1/Conv", "Conv");
        assert_eq!(
            layer_name(&conv, Some("layer1.0.conv1.weight")),
            "layer1_0_conv1"
        );
        assert_eq!(layer_name(&conv, Some("onnx::Conv_239")), "layer1_0_conv1");
        assert_eq!(layer_name(&node("conv2d/conv", "Conv"), None), "conv2d");
        assert_eq!(layer_name(&node("Relu_3", "Relu"), None), "Relu_3");
        assert_eq!(layer_name(&node("", "Relu"), None), "relu");
        assert_eq!(sanitize("input.1").as_deref(), Some("input_1"));
        assert_eq!(sanitize("1abc"), None);
    }
}
