//! The header dict: a tiny Python literal (`{'descr': '<f4', 'fortran_order':
//! False, 'shape': (2, 3), }`), parsed by hand.

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum PyValue {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<PyValue>),
    List(Vec<PyValue>),
    Dict(Vec<(PyValue, PyValue)>),
}

pub(super) struct Parser<'a> {
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

pub(super) fn parse_descr(name: &str, descr: &str) -> Result<NpyDtype> {
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

pub(super) fn parse_header(name: &str, header: &str) -> Result<Header> {
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
