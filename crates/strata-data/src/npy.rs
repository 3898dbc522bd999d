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

/// Bytes before the data that a file's first bytes declare: the magic, the
/// version and the header length. `None` when `bytes` is too short to say.
pub(crate) fn prefix_len(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 12 {
        return None;
    }
    match bytes[6] {
        1 => Some(10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        _ => Some(12 + u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize),
    }
}

/// Parses the magic, version and header dict at the start of `bytes`;
/// returns the header and where the data starts.
pub(crate) fn parse_prefix(name: &str, bytes: &[u8]) -> Result<(Header, usize)> {
    let err = |field: &str, msg: String| DataError::format(name, field, msg);
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        return Err(err(
            "magic",
            "not a .npy file (expected \\x93NUMPY)".to_string(),
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, start) = match major {
        1 => (2, 10),
        2 | 3 => (4, 12),
        _ => {
            return Err(err(
                "version",
                format!("{major}.{minor} is not supported (1.0, 2.0, 3.0)"),
            ))
        }
    };
    if minor != 0 {
        return Err(err(
            "version",
            format!("{major}.{minor} is not supported (1.0, 2.0, 3.0)"),
        ));
    }
    if bytes.len() < start {
        return Err(err("header length", "file truncated".to_string()));
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let data_start = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            err(
                "header length",
                format!(
                    "declares {header_len} header bytes, file has {}",
                    bytes.len() - start
                ),
            )
        })?;
    let header = std::str::from_utf8(&bytes[start..data_start])
        .map_err(|e| err("header", format!("not valid UTF-8: {e}")))?;
    let h = parse_header(name, header)?;
    Ok((h, data_start))
}

/// The data bytes the header's shape and dtype need (overflow-checked).
pub(crate) fn payload_bytes(name: &str, h: &Header) -> Result<u64> {
    let err = |msg: String| DataError::format(name, "shape", msg);
    let count = h
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| err(format!("{:?} overflows the element count", h.shape)))?;
    count
        .checked_mul(h.dtype.itemsize() as u64)
        .ok_or_else(|| err(format!("{:?} overflows the byte count", h.shape)))
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

// ---------------------------------------------------------------------------
// Header dict: a tiny Python literal, parsed by hand.

#[derive(Debug, Clone, PartialEq)]
enum PyValue {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<PyValue>),
    List(Vec<PyValue>),
    Dict(Vec<(PyValue, PyValue)>),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    name: &'a str,
}

impl<'a> Parser<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> DataError {
        DataError::format(
            self.name,
            "header",
            format!("{msg} at byte {} of the header dict", self.pos),
        )
    }
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }
    fn expect(&mut self, c: u8) -> Result<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected '{}'", c as char)))
        }
    }
    fn value(&mut self, depth: usize) -> Result<PyValue> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.peek() {
            Some(b'\'') | Some(b'"') => self.string(),
            Some(b'(') => self.seq(b')', depth).map(PyValue::Tuple),
            Some(b'[') => self.seq(b']', depth).map(PyValue::List),
            Some(b'{') => self.dict(depth),
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' => self.int(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_alphanumeric() {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(PyValue::Bool(true)),
                    b"False" => Ok(PyValue::Bool(false)),
                    b"None" => Ok(PyValue::None),
                    other => {
                        self.pos = start;
                        Err(self.err(format!(
                            "unexpected word '{}'",
                            String::from_utf8_lossy(other)
                        )))
                    }
                }
            }
            Some(c) => Err(self.err(format!("unexpected character '{}'", c as char))),
            None => Err(self.err("unexpected end")),
        }
    }
    fn string(&mut self) -> Result<PyValue> {
        let quote = self.s[self.pos];
        self.pos += 1;
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos] != quote {
            if self.s[self.pos] == b'\\' {
                return Err(self.err("escape sequences are not supported in header strings"));
            }
            self.pos += 1;
        }
        if self.pos >= self.s.len() {
            return Err(self.err("unterminated string"));
        }
        let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        self.pos += 1;
        Ok(PyValue::Str(text))
    }
    fn int(&mut self) -> Result<PyValue> {
        let start = self.pos;
        if matches!(self.s[self.pos], b'-' | b'+') {
            self.pos += 1;
        }
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        let v: i128 = text
            .parse()
            .map_err(|_| self.err(format!("'{text}' is not an integer")))?;
        // Python 2 long suffix.
        if self.pos < self.s.len() && matches!(self.s[self.pos], b'L' | b'l') {
            self.pos += 1;
        }
        Ok(PyValue::Int(v))
    }
    fn seq(&mut self, close: u8, depth: usize) -> Result<Vec<PyValue>> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err(self.err(format!("expected ',' or '{}'", close as char))),
            }
        }
    }
    fn dict(&mut self, depth: usize) -> Result<PyValue> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(PyValue::Dict(items));
            }
            let k = self.value(depth + 1)?;
            self.expect(b':')?;
            let v = self.value(depth + 1)?;
            items.push((k, v));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }
}

pub(crate) struct Header {
    pub(crate) dtype: NpyDtype,
    pub(crate) shape: Vec<usize>,
}

fn parse_descr(name: &str, descr: &str) -> Result<NpyDtype> {
    let err = |msg: String| DataError::format(name, "header.descr", msg);
    let mut chars = descr.chars();
    let order = chars.next().unwrap_or(' ');
    let kind = chars.as_str();
    if order == '>' && !matches!(kind, "u1" | "b1" | "i1") {
        return Err(err(format!(
            "'{descr}' is big-endian; only little-endian data is supported"
        )));
    }
    if kind.starts_with('O') || descr == "O" {
        return Err(err(format!("'{descr}' is an object array; not supported")));
    }
    let little = order == '<' || (order == '=' && cfg!(target_endian = "little"));
    let any_order = matches!(order, '<' | '>' | '|' | '=');
    let dtype = match kind {
        "f4" if little => NpyDtype::F32,
        "f8" if little => NpyDtype::F64,
        "i4" if little => NpyDtype::I32,
        "i8" if little => NpyDtype::I64,
        "u1" if any_order => NpyDtype::U8,
        "b1" if any_order => NpyDtype::Bool,
        _ => {
            return Err(err(format!(
                "'{descr}' is not supported (<f4, <f8, <i4, <i8, |u1, |b1)"
            )))
        }
    };
    Ok(dtype)
}

fn parse_header(name: &str, header: &str) -> Result<Header> {
    let mut p = Parser {
        s: header.as_bytes(),
        pos: 0,
        name,
    };
    let dict = match p.value(0)? {
        PyValue::Dict(items) => items,
        _ => return Err(DataError::format(name, "header", "not a dict")),
    };
    if p.peek().is_some() {
        return Err(p.err("trailing characters after the dict"));
    }
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (k, v) in dict {
        let key = match k {
            PyValue::Str(s) => s,
            other => {
                return Err(DataError::format(
                    name,
                    "header",
                    format!("key {other:?} is not a string"),
                ))
            }
        };
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran,
            "shape" => &mut shape,
            _ => {
                return Err(DataError::format(
                    name,
                    "header",
                    format!("unexpected key '{key}'"),
                ))
            }
        };
        if slot.replace(v).is_some() {
            return Err(DataError::format(
                name,
                "header",
                format!("duplicate key '{key}'"),
            ));
        }
    }
    let missing = |k: &str| DataError::format(name, "header", format!("missing key '{k}'"));
    let dtype = match descr.ok_or_else(|| missing("descr"))? {
        PyValue::Str(s) => parse_descr(name, &s)?,
        PyValue::List(_) => {
            return Err(DataError::format(
                name,
                "header.descr",
                "structured (record) arrays are not supported",
            ))
        }
        other => {
            return Err(DataError::format(
                name,
                "header.descr",
                format!("{other:?} is not a dtype string"),
            ))
        }
    };
    match fortran.ok_or_else(|| missing("fortran_order"))? {
        PyValue::Bool(false) => {}
        PyValue::Bool(true) => {
            return Err(DataError::format(
                name,
                "header.fortran_order",
                "Fortran-ordered arrays are not supported; save with C order",
            ))
        }
        other => {
            return Err(DataError::format(
                name,
                "header.fortran_order",
                format!("{other:?} is not True or False"),
            ))
        }
    }
    let shape = match shape.ok_or_else(|| missing("shape"))? {
        PyValue::Tuple(dims) => dims
            .into_iter()
            .map(|d| match d {
                PyValue::Int(v) => usize::try_from(v).map_err(|_| {
                    DataError::format(name, "header.shape", format!("dimension {v} is invalid"))
                }),
                other => Err(DataError::format(
                    name,
                    "header.shape",
                    format!("{other:?} is not an integer"),
                )),
            })
            .collect::<Result<Vec<usize>>>()?,
        other => {
            return Err(DataError::format(
                name,
                "header.shape",
                format!("{other:?} is not a tuple"),
            ))
        }
    };
    Ok(Header { dtype, shape })
}

// ---------------------------------------------------------------------------
// Writing.

fn py_shape(shape: &[usize]) -> String {
    match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The `.npy` (version 1.0) bytes for `data` of `shape` and `dtype`.
fn encode(dtype: NpyDtype, shape: &[usize], payload: &[u8]) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        dtype.descr(),
        py_shape(shape)
    );
    // Version 1.0 unless the header cannot fit a u16 length.
    let (version, prefix) = if dict.len() + 64 < u16::MAX as usize {
        (1u8, 10usize)
    } else {
        (2u8, 12usize)
    };
    let unpadded = prefix + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(prefix + header_len + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(version);
    out.push(0);
    if version == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// The `.npy` bytes of a float32 tensor (`<f4`, C order).
pub fn npy_bytes_f32(t: &Tensor) -> Vec<u8> {
    let data = t.data();
    let mut payload = Vec::with_capacity(data.len() * 4);
    for v in data.iter() {
        payload.extend_from_slice(&v.to_le_bytes());
    }
    encode(NpyDtype::F32, t.shape(), &payload)
}

/// The `.npy` bytes of int64 values of `shape` (`<i8`).
pub fn npy_bytes_i64(values: &[i64], shape: &[usize]) -> Result<Vec<u8>> {
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(values.len()) {
        return Err(DataError::shape(
            "write_npy_i64",
            format!("{} values", values.len()),
            format!("shape {}", fmt_shape(shape)),
        ));
    }
    let mut payload = Vec::with_capacity(values.len() * 8);
    for v in values {
        payload.extend_from_slice(&v.to_le_bytes());
    }
    Ok(encode(NpyDtype::I64, shape, &payload))
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| {
            DataError::arg(
                "write_npy",
                "path",
                format!("{} has no file name", path.display()),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DataError::io(path, e)
    })
}

/// Writes a float32 tensor as `.npy` (version 1.0, `<f4`), atomically.
pub fn write_npy_f32(path: impl AsRef<Path>, t: &Tensor) -> Result<()> {
    write_atomic(path.as_ref(), &npy_bytes_f32(t))
}

/// Writes int64 values of `shape` as `.npy` (version 1.0, `<i8`), atomically.
pub fn write_npy_i64(path: impl AsRef<Path>, values: &[i64], shape: &[usize]) -> Result<()> {
    let bytes = npy_bytes_i64(values, shape)?;
    write_atomic(path.as_ref(), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A .npy file with an arbitrary header dict and payload.
    fn npy(major: u8, dict: &str, payload: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.push(major);
        v.push(0);
        let h = format!("{dict}\n");
        if major == 1 {
            v.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            v.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn dict(descr: &str, fortran: &str, shape: &str) -> String {
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}")
    }

    fn tmp_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("strata-npy-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn roundtrip_f32_and_i64() {
        let dir = tmp_dir("rt");
        let t =
            Tensor::from_vec((0..24).map(|v| v as f32 * 0.5 - 3.0).collect(), &[2, 3, 4]).unwrap();
        let p = dir.join("x.npy");
        write_npy_f32(&p, &t).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0);
        assert_eq!(bytes[10 + hl - 1], b'\n');
        let a = read_npy(&p).unwrap();
        assert_eq!(a.dtype(), NpyDtype::F32);
        assert_eq!(a.shape(), &[2, 3, 4]);
        assert!(a.to_tensor().unwrap().allclose(&t, 0.0, 0.0));

        let q = dir.join("y.npy");
        write_npy_i64(&q, &[5, -1, 7], &[3]).unwrap();
        let b = read_npy(&q).unwrap();
        assert_eq!(b.dtype(), NpyDtype::I64);
        assert_eq!(b.shape(), &[3]);
        assert_eq!(b.to_i64().unwrap(), vec![5, -1, 7]);
        assert!(b.to_labels().is_err());
        assert!(write_npy_i64(&q, &[1, 2], &[3]).is_err());

        // Scalars and empty arrays.
        write_npy_f32(&p, &Tensor::scalar(2.5)).unwrap();
        let s = read_npy(&p).unwrap();
        assert_eq!(s.shape(), &[] as &[usize]);
        assert_eq!(s.to_f32(), vec![2.5]);
        write_npy_f32(&p, &Tensor::zeros(&[0, 3])).unwrap();
        assert_eq!(read_npy(&p).unwrap().shape(), &[0, 3]);
        // No temporary files left behind.
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 2);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn numpy_written_header_parses() {
        // Exactly what numpy 1.x writes for np.save('a.npy', np.zeros((2,3), 'f4')).
        let d = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let padded = format!("{d}{}", " ".repeat(128 - 10 - d.len() - 1));
        let a = read_npy_bytes("a", &npy(1, &padded, &[0u8; 24])).unwrap();
        assert_eq!(a.shape(), &[2, 3]);
        // Double quotes, no trailing comma, other key order, 1-D tuple.
        let d = r#"{"shape": (4,), "fortran_order": False, "descr": "<i4"}"#;
        let payload: Vec<u8> = [1i32, 2, 3, -4]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let a = read_npy_bytes("b", &npy(1, d, &payload)).unwrap();
        assert_eq!(a.to_i64().unwrap(), vec![1, 2, 3, -4]);
    }

    #[test]
    fn dtypes_and_versions() {
        let f8: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        for major in [1, 2, 3] {
            let a = read_npy_bytes("f8", &npy(major, &dict("<f8", "False", "(2,)"), &f8)).unwrap();
            assert_eq!(a.to_f32(), vec![1.5, -2.0]);
            assert!(a.to_i64().unwrap_err().to_string().contains("whole"));
        }
        let a = read_npy_bytes("u1", &npy(1, &dict("|u1", "False", "(3,)"), &[0, 9, 255])).unwrap();
        assert_eq!(a.to_labels().unwrap(), vec![0, 9, 255]);
        let a = read_npy_bytes("b1", &npy(1, &dict("|b1", "False", "(2,)"), &[1, 0])).unwrap();
        assert_eq!(a.to_f32(), vec![1.0, 0.0]);
        assert!(read_npy_bytes("b1", &npy(1, &dict("|b1", "False", "(1,)"), &[7])).is_err());
        let i8b: Vec<u8> = [3i64, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = read_npy_bytes("i8", &npy(1, &dict("<i8", "False", "(1, 2)"), &i8b)).unwrap();
        assert_eq!(a.to_labels().unwrap(), vec![3, 4]);
        // Float labels that are whole numbers convert.
        let f4: Vec<u8> = [3f32, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = read_npy_bytes("f4", &npy(1, &dict("<f4", "False", "(2,)"), &f4)).unwrap();
        assert_eq!(a.to_labels().unwrap(), vec![3, 1]);
        let e = read_npy_bytes("v", &npy(4, &dict("<f4", "False", "(2,)"), &f4)).unwrap_err();
        assert!(e.to_string().contains("invalid version"), "{e}");
    }

    fn err_of(bytes: &[u8]) -> String {
        read_npy_bytes("bad.npy", bytes).unwrap_err().to_string()
    }

    #[test]
    fn hostile_headers() {
        let e = err_of(&npy(1, &dict("<f4", "True", "(2,)"), &[0; 8]));
        assert!(e.contains("bad.npy: invalid header.fortran_order"), "{e}");
        let e = err_of(&npy(1, &dict(">f4", "False", "(2,)"), &[0; 8]));
        assert!(e.contains("big-endian"), "{e}");
        let e = err_of(&npy(1, &dict("|O", "False", "(2,)"), &[0; 16]));
        assert!(e.contains("object"), "{e}");
        let e = err_of(&npy(1, &dict("<c8", "False", "(2,)"), &[0; 16]));
        assert!(e.contains("not supported"), "{e}");
        let e = err_of(&npy(
            1,
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
            &[0; 8],
        ));
        assert!(e.contains("structured"), "{e}");
        for bad in [
            "{'descr': '<f4', 'fortran_order': False, }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': [2], }",
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ",
            "{'descr': '<f4 , 'fortran_order': False, 'shape': (2,)}",
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk",
            "['descr']",
            "",
            "{1: 2}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': ((((((((((2,),),),),),),),),),)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999999999999999999999,)}",
        ] {
            let e = err_of(&npy(1, bad, &[0; 8]));
            assert!(e.starts_with("bad.npy: invalid header"), "{bad}: {e}");
        }
    }

    #[test]
    fn hostile_sizes_and_encoding() {
        // 10^12 elements declared in a ~100-byte file.
        let e = err_of(&npy(
            1,
            &dict("<f4", "False", "(1000000, 1000000)"),
            &[0; 16],
        ));
        assert!(e.contains("invalid shape"), "{e}");
        // Overflowing element count and byte count.
        let e = err_of(&npy(
            1,
            &dict("<f8", "False", "(4294967296, 4294967296, 4294967296)"),
            &[],
        ));
        assert!(e.contains("overflows"), "{e}");
        let e = err_of(&npy(
            1,
            &dict("<f8", "False", "(4611686018427387904,)"),
            &[],
        ));
        assert!(e.contains("overflows"), "{e}");
        // Truncated data, and extra data.
        assert!(err_of(&npy(1, &dict("<f4", "False", "(3,)"), &[0; 11])).contains("shape"));
        assert!(err_of(&npy(1, &dict("<f4", "False", "(3,)"), &[0; 13])).contains("shape"));
        // Bad UTF-8 in the header.
        let mut b = npy(1, &dict("<f4", "False", "(1,)"), &[0; 4]);
        b[12] = 0xff;
        assert!(err_of(&b).contains("UTF-8"));
        // Header length past the end; truncated prefix; bad magic.
        let mut b = npy(1, &dict("<f4", "False", "(1,)"), &[0; 4]);
        b[8] = 0xff;
        b[9] = 0xff;
        assert!(err_of(&b).contains("header length"));
        let full = npy(2, &dict("<f4", "False", "(1,)"), &[0; 4]);
        for n in 0..full.len() {
            assert!(read_npy_bytes("t", &full[..n]).is_err(), "prefix {n}");
        }
        assert!(err_of(b"PK\x03\x04 not npy").contains("magic"));
        let e = read_npy(std::env::temp_dir().join("strata-no-such.npy")).unwrap_err();
        assert!(matches!(e, DataError::Io { .. }));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz over mutations of a valid file.
        let valid = npy_bytes_f32(&Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).unwrap());
        let mut rng = strata_core::Rng::new(7);
        for _ in 0..3000 {
            let mut b = valid.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                b[i] = rng.below(256) as u8;
            }
            let cut = rng.below(b.len() + 1);
            let _ = read_npy_bytes("fuzz", &b[..cut]);
            let _ = read_npy_bytes("fuzz", &b);
        }
    }
}
