//! Writing `.npy` files: version 1.0, the header padded to a multiple of 64
//! bytes, written to a temporary file and renamed.

use super::*;

pub(super) fn py_shape(shape: &[usize]) -> String {
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
pub(super) fn encode(dtype: NpyDtype, shape: &[usize], payload: &[u8]) -> Vec<u8> {
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

pub(super) static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
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
