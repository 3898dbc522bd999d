//! From bytes to checked ONNX pieces: the model message, its operator set,
//! constant tensors with data that matches their shape, node attributes.

use prost::Message;

use crate::error::{OnnxError, Result};
use crate::proto::{AttributeProto, DataType, ModelProto, NodeProto, TensorProto};

/// The oldest default-domain opset the importer reads (the operators it maps
/// have kept their meaning since).
pub const MIN_OPSET: i64 = 13;

/// The most elements one constant tensor may claim (2^31): a larger claim is
/// refused before anything is allocated.
const MAX_ELEMENTS: usize = 1 << 31;

/// Decodes `bytes` as an ONNX model with a graph and a default-domain opset
/// of at least [`MIN_OPSET`]; returns the model and that opset.
pub fn model(bytes: &[u8]) -> Result<(ModelProto, i64)> {
    if bytes.is_empty() {
        return Err(OnnxError::NotOnnx("the file is empty".into()));
    }
    let proto = ModelProto::decode(bytes).map_err(|e| OnnxError::NotOnnx(e.to_string()))?;
    if proto.ir_version <= 0 || proto.graph.is_none() {
        return Err(OnnxError::NotOnnx(
            "no IR version or no graph (is this an ONNX model file?)".into(),
        ));
    }
    let opset = proto
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .ok_or_else(|| OnnxError::Invalid("the model imports no default-domain opset".into()))?;
    if opset < MIN_OPSET {
        return Err(OnnxError::Invalid(format!(
            "opset {opset} is older than {MIN_OPSET}: re-export with opset_version={MIN_OPSET} or later"
        )));
    }
    Ok((proto, opset))
}

/// A constant's values: float tensors become f32, integer ones i64.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A constant tensor (an initializer or a Constant node's value).
#[derive(Debug, Clone, PartialEq)]
pub struct Const {
    pub dims: Vec<usize>,
    pub data: Data,
}

impl Const {
    /// A float tensor.
    pub fn f32(dims: Vec<usize>, values: Vec<f32>) -> Const {
        Const {
            dims,
            data: Data::F32(values),
        }
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// The values as f32 (integers converted).
    pub fn floats(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as i64, `None` for a float tensor.
    pub fn ints(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            Data::F32(_) => None,
        }
    }

    /// The one value of a one-element tensor.
    pub fn scalar(&self) -> Option<f32> {
        (self.numel() == 1).then(|| self.floats()[0])
    }
}

/// Reads a tensor message, refusing external data, unknown element types,
/// negative or absurd sizes, and data whose length does not match the shape.
pub fn tensor(t: &TensorProto) -> std::result::Result<Const, String> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err(
            "its data is in an external file; save the model with the weights inside".into(),
        );
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut n: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| format!("negative dimension {d}"))?;
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                format!(
                    "shape {:?} claims more than {MAX_ELEMENTS} elements",
                    t.dims
                )
            })?;
        dims.push(d);
    }
    let raw = &t.raw_data;
    let check = |found: usize, what: &str| {
        if found == n {
            Ok(())
        } else {
            Err(format!(
                "shape {:?} needs {n} values, {what} holds {found}",
                t.dims
            ))
        }
    };
    let data = match DataType::try_from(t.data_type) {
        Ok(DataType::Float) if !raw.is_empty() => {
            check_len(raw.len(), n, 4)?;
            Data::F32(
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            )
        }
        Ok(DataType::Float) => {
            check(t.float_data.len(), "float_data")?;
            Data::F32(t.float_data.clone())
        }
        Ok(DataType::Double) if !raw.is_empty() => {
            check_len(raw.len(), n, 8)?;
            Data::F32(
                raw.chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                    .collect(),
            )
        }
        Ok(DataType::Double) => {
            check(t.double_data.len(), "double_data")?;
            Data::F32(t.double_data.iter().map(|&v| v as f32).collect())
        }
        Ok(DataType::Int64) if !raw.is_empty() => {
            check_len(raw.len(), n, 8)?;
            Data::I64(
                raw.chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect(),
            )
        }
        Ok(DataType::Int64) => {
            check(t.int64_data.len(), "int64_data")?;
            Data::I64(t.int64_data.clone())
        }
        Ok(DataType::Int32) if !raw.is_empty() => {
            check_len(raw.len(), n, 4)?;
            Data::I64(
                raw.chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                    .collect(),
            )
        }
        Ok(DataType::Int32) => {
            check(t.int32_data.len(), "int32_data")?;
            Data::I64(t.int32_data.iter().map(|&v| v as i64).collect())
        }
        _ => {
            return Err(format!(
                "element type {} is not supported (float32, float64, int32, int64)",
                t.data_type
            ))
        }
    };
    Ok(Const { dims, data })
}

fn check_len(bytes: usize, n: usize, size: usize) -> std::result::Result<(), String> {
    if Some(bytes) == n.checked_mul(size) {
        Ok(())
    } else {
        Err(format!(
            "raw_data holds {bytes} bytes, the shape needs {n} x {size}"
        ))
    }
}

/// A node's attributes by name.
pub struct Attrs<'a>(pub &'a NodeProto);

impl<'a> Attrs<'a> {
    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0.attribute.iter().find(|a| a.name == name)
    }
    /// An int attribute.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).map(|a| a.i)
    }
    /// A list-of-ints attribute.
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }
    /// A float attribute.
    pub fn float(&self, name: &str) -> Option<f32> {
        self.get(name).map(|a| a.f)
    }
    /// A string attribute.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
    /// A tensor attribute.
    pub fn tensor(&self, name: &str) -> Option<&'a TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }
}

/// The value of a Constant node.
pub fn constant_node(node: &NodeProto) -> std::result::Result<Const, String> {
    let a = Attrs(node);
    if let Some(t) = a.tensor("value") {
        return tensor(t);
    }
    if let Some(v) = a.get("value_float") {
        return Ok(Const::f32(vec![], vec![v.f]));
    }
    if let Some(v) = a.get("value_floats") {
        return Ok(Const::f32(vec![v.floats.len()], v.floats.clone()));
    }
    if let Some(v) = a.get("value_int") {
        return Ok(Const {
            dims: vec![],
            data: Data::I64(vec![v.i]),
        });
    }
    if let Some(v) = a.get("value_ints") {
        return Ok(Const {
            dims: vec![v.ints.len()],
            data: Data::I64(v.ints.clone()),
        });
    }
    Err("a Constant without a tensor, float(s) or int(s) value".into())
}
