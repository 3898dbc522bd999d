//! The fixed start of a `.npy` file (magic, version, header length) and the
//! data size its header declares.

use super::*;

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
