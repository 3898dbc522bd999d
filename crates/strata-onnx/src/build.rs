//! Hand-built ONNX models: a small builder over the [`crate::proto`]
//! messages for tests, fuzz seeds and examples, and the attribute helpers
//! the exporter uses.

use crate::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// A name not in `taken`, `base` itself where free, else `base{sep}1`,
/// `base{sep}2`, ...; it is added to `taken`.
pub fn unique_name(taken: &mut std::collections::HashSet<String>, base: &str, sep: &str) -> String {
    let mut name = base.to_string();
    let mut k = 1;
    while taken.contains(&name) {
        name = format!("{base}{sep}{k}");
        k += 1;
    }
    taken.insert(name.clone());
    name
}

/// An int attribute.
pub fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

/// A list-of-ints attribute.
pub fn attr_ints(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints,
        ..Default::default()
    }
}

/// A float attribute.
pub fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

/// A string attribute.
pub fn attr_string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A float32 tensor; values little-endian in `raw_data`.
pub fn tensor_f32(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A one-axis int64 tensor.
pub fn tensor_i64(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A float32 value of `dims`, where `None` is the symbolic batch axis.
pub fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v as i64),
                None => dimension::Value::DimParam("batch".into()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
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

/// A graph assembled node by node.
#[derive(Debug, Clone, Default)]
pub struct GraphBuilder {
    pub graph: GraphProto,
}

impl GraphBuilder {
    /// An empty graph named `name`.
    pub fn new(name: &str) -> GraphBuilder {
        GraphBuilder {
            graph: GraphProto {
                name: name.into(),
                ..Default::default()
            },
        }
    }

    /// A float32 graph input with a symbolic batch axis and `dims` after it.
    pub fn input(&mut self, name: &str, dims: &[usize]) -> &mut Self {
        let mut all = vec![None];
        all.extend(dims.iter().map(|&d| Some(d)));
        self.graph.input.push(value_info(name, &all));
        self
    }

    /// A graph output (its type left to the reader).
    pub fn output(&mut self, name: &str) -> &mut Self {
        self.graph.output.push(ValueInfoProto {
            name: name.into(),
            ..Default::default()
        });
        self
    }

    /// A float32 initializer.
    pub fn init(&mut self, name: &str, dims: &[usize], values: &[f32]) -> &mut Self {
        self.graph.initializer.push(tensor_f32(name, dims, values));
        self
    }

    /// A one-axis int64 initializer.
    pub fn init_i64(&mut self, name: &str, values: &[i64]) -> &mut Self {
        self.graph.initializer.push(tensor_i64(name, values));
        self
    }

    /// A node of the default domain named after its first output.
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> &mut Self {
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: outputs.first().map(|s| s.to_string()).unwrap_or_default(),
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
        self
    }

    /// The model around the graph, at `opset`.
    pub fn model(&self, opset: i64) -> ModelProto {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            producer_name: "strata-tests".into(),
            graph: Some(self.graph.clone()),
            ..Default::default()
        }
    }

    /// The model's encoded bytes.
    pub fn bytes(&self, opset: i64) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.model(opset))
    }
}
