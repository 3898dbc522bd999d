//! NumPy `.npy` files: versions 1.0, 2.0 and 3.0, C order, little-endian.
//!
//! Read dtypes: `<f4`, `<f8` (converted to f32), `<i4`, `<i8`, `|u1`, `|b1`.
//! Fortran order, big-endian data, object/structured arrays, a malformed
//! header dict, or a declared shape whose byte size (overflow-checked) differs
//! from the bytes actually present are errors naming the file and the field;
//! no file content can make the reader panic or allocate more than the file.
//!
//! Written files are version 1.0 with the header padded to a multiple of 64
//! bytes, written to a temporary file in the same folder and then renamed.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_core::{fmt_shape, Tensor};

use crate::error::{DataError, Result};

mod header;
mod prefix;
mod write;

pub(crate) use header::*;
pub(crate) use prefix::*;
pub use write::*;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Nesting allowed inside the header dict (it needs 2: a tuple in a dict).
const MAX_DEPTH: usize = 8;

/// The element types accepted in `.npy` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    /// `<f4`
    F32,
    /// `<f8` (read as f32)
    F64,
    /// `<i4`
    I32,
    /// `<i8`
    I64,
    /// `|u1`
    U8,
    /// `|b1`
    Bool,
}

impl NpyDtype {
    /// The NumPy `descr` string, e.g. `<f4`.
    pub fn descr(self) -> &'static str {
        match self {
            NpyDtype::F32 => "<f4",
            NpyDtype::F64 => "<f8",
            NpyDtype::I32 => "<i4",
            NpyDtype::I64 => "<i8",
            NpyDtype::U8 => "|u1",
            NpyDtype::Bool => "|b1",
        }
    }
    /// Bytes per element.
    pub fn itemsize(self) -> usize {
        match self {
            NpyDtype::F32 | NpyDtype::I32 => 4,
            NpyDtype::F64 | NpyDtype::I64 => 8,
            NpyDtype::U8 | NpyDtype::Bool => 1,
        }
    }
    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, NpyDtype::F32 | NpyDtype::F64)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum NpyData {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

/// A `.npy` array: its shape, its stored dtype, and its values (floats as
/// f32, integers and booleans as i64).
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    name: String,
    shape: Vec<usize>,
    dtype: NpyDtype,
    data: NpyData,
}

impl NpyArray {
    /// The array's shape (`[]` for a scalar).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The dtype stored in the file.
    pub fn dtype(&self) -> NpyDtype {
        self.dtype
    }
    /// The number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            NpyData::Float(v) => v.len(),
            NpyData::Int(v) => v.len(),
        }
    }
    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The values as f32 (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            NpyData::Float(v) => v.clone(),
            NpyData::Int(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    /// Consumes the array, returning its f32 values without a copy when float.
    pub fn into_f32(self) -> Vec<f32> {
        match self.data {
            NpyData::Float(v) => v,
            NpyData::Int(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    /// The values as a float32 tensor of the same shape.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.to_f32(), &self.shape)?)
    }
    /// Consumes the array into a float32 tensor.
    pub fn into_tensor(self) -> Result<Tensor> {
        let shape = self.shape.clone();
        Ok(Tensor::from_vec(self.into_f32(), &shape)?)
    }
    /// The values as i64. Float arrays are accepted only when every value is
    /// a whole number (labels saved as float); otherwise an error.
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        match &self.data {
            NpyData::Int(v) => Ok(v.clone()),
            NpyData::Float(v) => v
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    if x.fract() == 0.0 && x.abs() < 9.0e15 {
                        Ok(x as i64)
                    } else {
                        Err(DataError::format(
                            &self.name,
                            "data",
                            format!("value {x} at index {i} is not a whole number"),
                        ))
                    }
                })
                .collect(),
        }
    }
    /// The values as class ids (whole, non-negative numbers).
    pub fn to_labels(&self) -> Result<Vec<usize>> {
        self.to_i64()?
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                usize::try_from(x).map_err(|_| {
                    DataError::format(
                        &self.name,
                        "data",
                        format!("label {x} at index {i} is negative"),
                    )
                })
            })
            .collect()
    }
}

/// Reads a `.npy` file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    read_npy_bytes(&path.display().to_string(), &bytes)
}

/// Parses `.npy` bytes held in memory; `name` identifies them in errors.
pub fn read_npy_bytes(name: &str, bytes: &[u8]) -> Result<NpyArray> {
    let err = |field: &str, msg: String| DataError::format(name, field, msg);
    let (h, data_start) = parse_prefix(name, bytes)?;
    let payload = &bytes[data_start..];
    let need = payload_bytes(name, &h)?;
    if need != payload.len() as u64 {
        return Err(err(
            "shape",
            format!(
                "{} of {} needs {need} data bytes, file has {}",
                fmt_shape(&h.shape),
                h.dtype.descr(),
                payload.len()
            ),
        ));
    }
    let data = decode_payload(h.dtype, payload);
    if h.dtype == NpyDtype::Bool {
        if let NpyData::Int(v) = &data {
            if let Some(i) = v.iter().position(|&x| x > 1) {
                return Err(err(
                    "data",
                    format!("byte {} at index {i} is not a boolean (0 or 1)", v[i]),
                ));
            }
        }
    }
    Ok(NpyArray {
        name: name.to_string(),
        shape: h.shape,
        dtype: h.dtype,
        data,
    })
}

fn decode_payload(dtype: NpyDtype, p: &[u8]) -> NpyData {
    match dtype {
        NpyDtype::F32 => NpyData::Float(
            p.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        NpyDtype::F64 => NpyData::Float(
            p.chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
        ),
        NpyDtype::I32 => NpyData::Int(
            p.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
        ),
        NpyDtype::I64 => NpyData::Int(
            p.chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        NpyDtype::U8 | NpyDtype::Bool => NpyData::Int(p.iter().map(|&b| b as i64).collect()),
    }
}

#[cfg(test)]
mod tests;
