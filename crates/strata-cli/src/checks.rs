//! One rule per value, shared by every command, checked before any data is
//! loaded or any step is trained: counts, rates and fractions, thread
//! counts, and output paths (creatable, writable, a regular file or absent,
//! with an extension the command can write).

use std::path::{Path, PathBuf};

use crate::model_arg::CliResult;

/// A count that must be at least 1 (batch size, steps, epochs, top-k).
pub fn at_least_one(flag: &str, v: usize) -> CliResult<()> {
    if v == 0 {
        return Err(format!("{flag} must be at least 1, found 0").into());
    }
    Ok(())
}

/// A positive, finite value (learning rate, epsilon).
pub fn positive(flag: &str, v: f32) -> CliResult<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{flag} must be a positive finite number, found {v}").into());
    }
    Ok(())
}

/// A value in [0, 1) (betas, momentum, rho).
pub fn unit_interval(flag: &str, v: f32) -> CliResult<()> {
    if !(0.0..1.0).contains(&v) {
        return Err(format!("{flag} must be in [0, 1), found {v}").into());
    }
    Ok(())
}

/// A value in (0, 1) (validation split).
pub fn open_fraction(flag: &str, v: f32) -> CliResult<()> {
    if !(v > 0.0 && v < 1.0) {
        return Err(format!("{flag} must be in (0, 1), found {v}").into());
    }
    Ok(())
}

/// A non-negative, finite value (weight decay).
pub fn non_negative(flag: &str, v: f32) -> CliResult<()> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{flag} must be a finite number >= 0, found {v}").into());
    }
    Ok(())
}

/// A precision policy by Keras's name: `float32` or `mixed_bfloat16`.
pub fn precision(flag: &str, v: &str) -> CliResult<strata_core::Precision> {
    v.parse().map_err(|_| {
        format!("{flag} {v}: expected float32 or mixed_bfloat16 (Keras's policy names)").into()
    })
}

/// Cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A kernel thread count: at least 1 and at most the cores (more only
/// time-slice the same cores, and slow every kernel down).
pub fn threads(source: &str, v: usize) -> CliResult<()> {
    let cores = cores();
    if v == 0 || v > cores {
        return Err(
            format!("{source} {v}: expected 1 to {cores} (the cores this machine has)").into(),
        );
    }
    Ok(())
}

/// The thread count of `STRATA_NUM_THREADS`, checked like `--threads`.
pub fn env_threads() -> CliResult<Option<usize>> {
    match std::env::var("STRATA_NUM_THREADS") {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(_) => Err("STRATA_NUM_THREADS is not valid text".into()),
        Ok(s) => {
            let n = s.trim().parse::<usize>().map_err(|_| {
                format!("STRATA_NUM_THREADS={s}: expected a whole number of threads")
            })?;
            threads("STRATA_NUM_THREADS", n)?;
            Ok(Some(n))
        }
    }
}

/// The lower-case extension of `path`, if any.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Checks that `path` can be written by this command before any work: its
/// extension is one of `extensions`, it is a regular file or absent (never
/// a folder, a device or another special file), and its folder exists or
/// can be created and takes a new file. Creates the folder, as `--save`
/// always did; writes nothing else.
pub fn output_path(flag: &str, path: &Path, extensions: &[&str]) -> CliResult<()> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(format!("{flag} {shown}: is a folder, not a file").into());
        }
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::metadata(path);
            if !target.as_ref().is_ok_and(|t| t.is_file()) {
                return Err(format!(
                    "{flag} {shown}: is a link to something that is not a regular file"
                )
                .into());
            }
        }
        Ok(m) if !m.is_file() => {
            return Err(format!(
                "{flag} {shown}: is not a regular file (a device or other special file); strata writes files only"
            )
            .into());
        }
        _ => {}
    }
    match extension(path) {
        Some(e) if extensions.contains(&e.as_str()) => {}
        _ => {
            return Err(format!(
                "{flag} {shown}: expected a file name ending in .{}",
                extensions.join(" or .")
            )
            .into())
        }
    }
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        format!(
            "{flag} {shown}: cannot create the folder {}: {e}",
            dir.display()
        )
    })?;
    // The only sure test of a folder's permissions: create a file in it.
    let probe = dir.join(format!(".strata-write-test-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            return Err(format!(
                "{flag} {shown}: cannot write in the folder {}: {e}",
                dir.display()
            )
            .into())
        }
    }
    if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| format!("{flag} {shown}: cannot be replaced: {e}"))?;
    }
    Ok(())
}

/// `path`, or the first of `stem-2.ext`, `stem-3.ext`, ... that does not
/// exist yet, so a default output never replaces an earlier one.
pub fn fresh_path(path: &Path) -> PathBuf {
    if !path.exists() {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    let ext = extension(path).map(|e| format!(".{e}")).unwrap_or_default();
    (2..)
        .map(|i| path.with_file_name(format!("{stem}-{i}{ext}")))
        .find(|p| !p.exists() && !p.with_extension("spec.json").exists())
        .unwrap_or_else(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("strata-checks-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn values() {
        assert!(at_least_one("--steps", 0).is_err());
        assert!(at_least_one("--steps", 1).is_ok());
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert!(positive("--lr", bad).is_err(), "{bad}");
        }
        assert!(unit_interval("--beta-1", 1.0).is_err());
        assert!(unit_interval("--beta-1", 0.0).is_ok());
        assert!(open_fraction("--validation-split", 0.0).is_err());
        assert!(non_negative("--weight-decay", -0.1).is_err());
        assert!(threads("--threads", 0).is_err());
        assert!(threads("--threads", cores() + 1).is_err());
        assert!(threads("--threads", 1).is_ok());
    }

    #[test]
    fn outputs() {
        let d = tmp("out");
        let e = output_path("--save", &d.join("m.bin"), &["safetensors"]).unwrap_err();
        assert!(e.to_string().contains("ending in .safetensors"), "{e}");
        let folder = d.join("x.safetensors");
        std::fs::create_dir_all(&folder).unwrap();
        let e = output_path("--save", &folder, &["safetensors"]).unwrap_err();
        assert!(e.to_string().contains("is a folder"), "{e}");
        let e = output_path("--save", Path::new("/dev/full"), &["safetensors"]).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let nested = d.join("a/b/m.safetensors");
        output_path("--save", &nested, &["safetensors"]).unwrap();
        assert!(d.join("a/b").is_dir());
        assert!(!nested.exists(), "nothing written");
        assert_eq!(std::fs::read_dir(d.join("a/b")).unwrap().count(), 0);
        // fresh names
        let p = d.join("m.safetensors");
        assert_eq!(fresh_path(&p), p);
        std::fs::write(&p, b"x").unwrap();
        assert_eq!(fresh_path(&p), d.join("m-2.safetensors"));
    }
}
