//! `NpyRows`: the samples of a `.npy` file too large to read whole, read a
//! batch at a time with positioned reads. The file is opened and its header
//! checked once; each batch then costs one read per sample, served by the
//! operating system's page cache, and memory holds only the batch.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use strata_core::{fmt_shape, Tensor};

use crate::error::{DataError, Result};
use crate::npy::{parse_prefix, payload_bytes, prefix_len, NpyDtype};

/// A float `.npy` file opened for reading rows (samples along axis 0).
#[derive(Debug)]
pub struct NpyRows {
    file: File,
    name: String,
    shape: Vec<usize>,
    dtype: NpyDtype,
    data_start: u64,
}

impl NpyRows {
    /// Opens `path` and checks its header and length; the data is not read.
    pub fn open(path: impl AsRef<Path>) -> Result<NpyRows> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        let mut head = vec![0u8; 12.min(file_len as usize)];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| DataError::io(path, e))?;
        // A header longer than the file is refused by parse_prefix below.
        let want = prefix_len(&head)
            .unwrap_or(head.len())
            .min(file_len as usize);
        let mut prefix = vec![0u8; want];
        file.read_exact_at(&mut prefix, 0)
            .map_err(|e| DataError::io(path, e))?;
        let (h, data_start) = parse_prefix(&name, &prefix)?;
        if !h.dtype.is_float() {
            return Err(DataError::format(
                &name,
                "header.descr",
                format!(
                    "{} rows are read as inputs: expected <f4 or <f8",
                    h.dtype.descr()
                ),
            ));
        }
        if h.shape.is_empty() {
            return Err(DataError::shape(&name, "inputs (N, ...)", "a scalar"));
        }
        let need = payload_bytes(&name, &h)?;
        let have = file_len - data_start as u64;
        if need != have {
            return Err(DataError::format(
                &name,
                "shape",
                format!(
                    "{} of {} needs {need} data bytes, file has {have}",
                    fmt_shape(&h.shape),
                    h.dtype.descr()
                ),
            ));
        }
        Ok(NpyRows {
            file,
            name,
            shape: h.shape,
            dtype: h.dtype,
            data_start: data_start as u64,
        })
    }

    /// Number of rows (samples).
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// True when the file holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole array's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Bytes of data in the file.
    pub fn data_bytes(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product::<u64>() * self.dtype.itemsize() as u64
    }

    /// The rows at `indices`, in that order, as float32 `(len, ...)`.
    pub fn read_rows(&self, indices: &[usize]) -> Result<Tensor> {
        let row: usize = self.shape[1..].iter().product();
        let item = self.dtype.itemsize();
        let mut bytes = vec![0u8; row * item];
        let mut out = Vec::with_capacity(indices.len() * row);
        for &i in indices {
            if i >= self.len() {
                return Err(DataError::arg(
                    &self.name,
                    "row",
                    format!("index {i} out of range for {} rows", self.len()),
                ));
            }
            let at = self.data_start + (i * row * item) as u64;
            self.file
                .read_exact_at(&mut bytes, at)
                .map_err(|e| DataError::io(&self.name, e))?;
            match self.dtype {
                NpyDtype::F64 => out.extend(bytes.chunks_exact(8).map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })),
                _ => out.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                ),
            }
        }
        let mut shape = self.shape.clone();
        shape[0] = indices.len();
        Ok(Tensor::from_vec(out, &shape)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::{write_npy_f32, write_npy_i64};

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("strata-npyrows-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("x.npy")
    }

    #[test]
    fn rows_equal_the_whole_read() {
        let p = tmp("ok");
        let x: Vec<f32> = (0..5 * 2 * 3).map(|v| v as f32 * 0.5 - 3.0).collect();
        let t = Tensor::from_vec(x.clone(), &[5, 2, 3]).unwrap();
        write_npy_f32(&p, &t).unwrap();
        let r = NpyRows::open(&p).unwrap();
        assert_eq!((r.len(), r.shape()), (5, &[5, 2, 3][..]));
        assert_eq!(r.data_bytes(), 5 * 6 * 4);
        let got = r.read_rows(&[4, 0, 4]).unwrap();
        assert_eq!(got.shape(), &[3, 2, 3]);
        let mut want = x[24..30].to_vec();
        want.extend_from_slice(&x[0..6]);
        want.extend_from_slice(&x[24..30]);
        assert_eq!(got.to_vec(), want);
        assert!(r.read_rows(&[5]).is_err());
        assert_eq!(r.read_rows(&[]).unwrap().shape(), &[0, 2, 3]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let p = tmp("bad");
        write_npy_i64(&p, &[1, 2, 3], &[3]).unwrap();
        let e = NpyRows::open(&p).unwrap_err().to_string();
        assert!(e.contains("<f4"), "{e}");
        let t = Tensor::from_vec(vec![1.0; 8], &[2, 4]).unwrap();
        write_npy_f32(&p, &t).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let e = NpyRows::open(&p).unwrap_err().to_string();
        assert!(e.contains("needs 32 data bytes"), "{e}");
        std::fs::write(&p, b"\x93NUMPY\x01\x00\xff\xff{").unwrap();
        assert!(NpyRows::open(&p).is_err());
        std::fs::write(&p, b"").unwrap();
        assert!(NpyRows::open(&p).is_err());
        assert!(NpyRows::open(p.with_file_name("missing.npy")).is_err());
    }
}
