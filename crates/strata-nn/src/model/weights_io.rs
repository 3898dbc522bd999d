//! Weights files: safetensors with one tensor per weight named
//! `<layer>.<weight>` (CONTRACT.md). Written to a temporary file and renamed;
//! loading checks every name and shape and reports all mismatches at once.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::Model;
use crate::error::{NnError, Result};

/// One tensor read from a file: name, shape, float32 values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

fn werr(path: &Path, message: impl Into<String>) -> NnError {
    NnError::Weights {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads every tensor of a safetensors file (F32, or F64/F16/BF16 converted to
/// F32) and its metadata. Sizes are validated by the parser before any copy.
pub fn read_safetensors(
    path: impl AsRef<Path>,
) -> Result<(Vec<NamedTensor>, HashMap<String, String>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    parse_safetensors(path, &bytes)
}

/// [`read_safetensors`] on bytes in memory (`path` is only used in messages).
pub fn parse_safetensors(
    path: &Path,
    bytes: &[u8],
) -> Result<(Vec<NamedTensor>, HashMap<String, String>)> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| werr(path, format!("not a valid safetensors file: {e}")))?;
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| werr(path, format!("bad header: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    for name in names {
        let view = st
            .tensor(&name)
            .map_err(|e| werr(path, format!("{name}: {e}")))?;
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| {
                    i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            other => {
                return Err(werr(
                    path,
                    format!("{name}: dtype {other:?} is not a float type"),
                ))
            }
        };
        out.push((name, view.shape().to_vec(), values));
    }
    Ok((out, metadata))
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: normalise
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// Writes float32 tensors (and string metadata) as safetensors, through a
/// temporary file in the same folder that is renamed over `path`.
pub fn write_safetensors_atomic(
    path: impl AsRef<Path>,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| werr(path, format!("cannot encode: {e}")))?;
    let data = safetensors::serialize(views, &metadata)
        .map_err(|e| werr(path, format!("cannot encode: {e}")))?;
    write_atomic(path, &data)
}

/// Writes `data` to `path` via a temporary sibling and a rename, so a crash
/// leaves either the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(NnError::io(path, e));
    }
    Ok(())
}

impl Model {
    /// Every weight as (file name, shape, values).
    pub fn weight_tensors(&self) -> Vec<NamedTensor> {
        self.named_weights()
            .into_iter()
            .map(|(n, w)| (n, w.shape().to_vec(), w.value.to_vec()))
            .collect()
    }

    /// Saves every weight, non-trainable ones included, as safetensors.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), "strata".to_string());
        meta.insert("spec".to_string(), self.to_spec().to_string());
        self.info.write_to(&mut meta);
        write_safetensors_atomic(path, &self.weight_tensors(), Some(meta))
    }

    /// Loads a weights file; every missing, unexpected or wrongly shaped
    /// tensor is listed in one error and nothing is changed.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<Vec<String>> {
        let path = path.as_ref();
        let (tensors, _) = read_safetensors(path)?;
        self.set_weight_tensors(path, tensors)
    }

    /// Keras's `skip_mismatch`: assigns every tensor whose name and shape match
    /// a weight; the others (missing, wrongly shaped, unexpected) keep or are
    /// ignored and come back as warnings. Fails only when nothing matches.
    pub fn set_matching_weight_tensors(
        &mut self,
        path: &Path,
        tensors: Vec<NamedTensor>,
    ) -> Result<Vec<String>> {
        let mut by_name: HashMap<String, (Vec<usize>, Vec<f32>)> =
            tensors.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
        let mut warnings = Vec::new();
        let mut loaded = 0;
        for (name, w) in self.named_weights() {
            match by_name.remove(&name) {
                Some((s, v)) if s == w.shape() && v.len() == w.numel() => {
                    w.value.assign(&v)?;
                    loaded += 1;
                }
                Some((s, _)) => warnings.push(format!(
                    "skipped {name}: the file has shape {}, the model {}; it keeps its initial values",
                    strata_core::fmt_shape(&s),
                    strata_core::fmt_shape(w.shape())
                )),
                None => warnings.push(format!("{name} is not in the file; it keeps its initial values")),
            }
        }
        let mut rest: Vec<String> = by_name.into_keys().collect();
        rest.sort();
        warnings.extend(
            rest.into_iter()
                .map(|n| format!("ignored {n}: no such weight in the model")),
        );
        if loaded == 0 {
            return Err(werr(path, "no tensor matches a weight of the model"));
        }
        Ok(warnings)
    }

    /// Assigns named tensors to the weights, all or nothing. Returns warnings
    /// (non-finite values).
    pub fn set_weight_tensors(
        &mut self,
        path: &Path,
        tensors: Vec<NamedTensor>,
    ) -> Result<Vec<String>> {
        let mut by_name: HashMap<String, (Vec<usize>, Vec<f32>)> =
            tensors.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let expected: Vec<(String, Vec<usize>)> = self
            .named_weights()
            .into_iter()
            .map(|(n, w)| (n, w.shape().to_vec()))
            .collect();
        for (name, shape) in &expected {
            match by_name.get(name) {
                None => problems.push(format!("missing {name} {}", strata_core::fmt_shape(shape))),
                Some((s, v)) if s != shape || v.len() != shape.iter().product::<usize>() => {
                    problems.push(format!(
                        "{name}: expected shape {}, found {}",
                        strata_core::fmt_shape(shape),
                        strata_core::fmt_shape(s)
                    ))
                }
                Some((_, v)) => {
                    let bad = v.iter().filter(|x| !x.is_finite()).count();
                    if bad > 0 {
                        warnings.push(format!("{name}: {bad} non-finite value(s)"));
                    }
                }
            }
        }
        let known: std::collections::HashSet<&String> = expected.iter().map(|(n, _)| n).collect();
        let mut unexpected: Vec<&String> = by_name.keys().filter(|n| !known.contains(n)).collect();
        unexpected.sort();
        for n in unexpected {
            problems.push(format!("unexpected {n}"));
        }
        if !problems.is_empty() {
            return Err(werr(
                path,
                format!("{} mismatch(es): {}", problems.len(), problems.join("; ")),
            ));
        }
        let mut ws: Vec<(String, &strata_core::Tensor)> = Vec::new();
        for (name, w) in self.named_weights() {
            ws.push((name, &w.value));
        }
        for (name, t) in ws {
            if let Some((_, v)) = by_name.remove(&name) {
                t.assign(&v)?;
            }
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Dense;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("strata-weights-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("w.safetensors")
    }

    #[test]
    fn save_load_round_trip_and_mismatch_report() {
        let mut a = Model::sequential("m", &[3], 1);
        a.add(Dense::new(2)).unwrap();
        let p = tmp("rt");
        a.save_weights(&p).unwrap();
        let mut b = Model::sequential("m", &[3], 2);
        b.add(Dense::new(2)).unwrap();
        b.load_weights(&p).unwrap();
        assert_eq!(a.weight_tensors(), b.weight_tensors());
        let mut c = Model::sequential("m", &[4], 2);
        c.add(Dense::new(2).named("other")).unwrap();
        let e = c.load_weights(&p).unwrap_err().to_string();
        assert!(e.contains("4 mismatch(es)"), "{e}");
        assert!(
            e.contains("missing other.kernel (4, 2)") && e.contains("unexpected dense.bias"),
            "{e}"
        );
        let mut d = Model::sequential("m", &[4], 2);
        d.add(Dense::new(2)).unwrap();
        let e = d.load_weights(&p).unwrap_err().to_string();
        assert!(
            e.contains("dense.kernel: expected shape (4, 2), found (3, 2)"),
            "{e}"
        );
        std::fs::write(&p, b"garbage").unwrap();
        assert!(d
            .load_weights(&p)
            .unwrap_err()
            .to_string()
            .contains("not a valid safetensors"));
    }

    #[test]
    fn half_precision_decodes() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
    }
}
