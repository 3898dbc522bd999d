//! Hostile files: malformed IDX, .npy, safetensors, spec, history and image
//! files, each written by the test into a temporary folder and read through
//! strata's public file API. Each must give a clean `Err` naming the file (or
//! tensor, or layer) and the field; none may panic.
//!
//! Memory is bounded: each test re-runs itself (the same test binary, that
//! one test only) under a 2 GB address-space limit (`prlimit --as`, or
//! `ulimit -v` through `sh`), so a reader that allocated what a header claims
//! (10^12 elements, a decompression bomb) would fail to allocate and abort
//! the child, failing the test. `the_memory_limit_is_real` checks that the
//! limit is in force in the child.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_core::Tensor;
use strata_data::{read_idx, read_npy, ImageFolder, ImageFolderConfig, Sha256Sums};
use strata_hostile::seeds::{
    f32_bytes, gzip, idx_bytes, npy_with_header, safetensors_f32, safetensors_raw,
};
use strata_nn::layers::Dense;
use strata_nn::model::{model_from_spec_file, read_safetensors};
use strata_nn::{FitConfig, History, Loss, Model, Optimizer, Targets, Verbosity};

/// The address-space limit of the child process (bytes).
const LIMIT_BYTES: u64 = 2_000_000_000;
const CHILD_ENV: &str = "STRATA_HOSTILE_BOUNDED_CHILD";

/// Runs `body` in a child copy of this test binary under the memory limit
/// (or runs it directly when already in that child).
fn bounded(test_name: &str, body: fn()) {
    if std::env::var_os(CHILD_ENV).is_some() {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let args = [test_name, "--exact", "--nocapture", "--test-threads=1"];
    let mut cmd = if Command::new("prlimit").arg("--version").output().is_ok() {
        let mut c = Command::new("prlimit");
        c.arg(format!("--as={LIMIT_BYTES}")).arg("--").arg(&exe);
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "ulimit -v {} && exec \"$0\" \"$@\"",
                LIMIT_BYTES / 1024
            ))
            .arg(&exe);
        c
    };
    let out = cmd
        .args(args)
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the test binary under a memory limit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test_name} failed under the {LIMIT_BYTES}-byte limit ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// A fresh temporary folder for one test.
fn tmp_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-hostile-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create a temporary folder");
    d
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write a hostile file");
    p
}

/// Runs `f`, failing the test if it panics or succeeds; returns the error text.
fn error_of<T, E: std::fmt::Display>(case: &str, f: impl FnOnce() -> Result<T, E>) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Err(_) => panic!("{case}: panicked instead of returning an error"),
        Ok(Ok(_)) => panic!("{case}: was accepted"),
        Ok(Err(e)) => e.to_string(),
    }
}

/// Asserts the message contains every piece (the file, the field, ...).
fn expect(case: &str, msg: &str, pieces: &[&str]) {
    for p in pieces {
        assert!(
            msg.contains(p),
            "{case}: '{p}' missing from the error: {msg}"
        );
    }
    assert!(!msg.contains('\n'), "{case}: the error spans lines: {msg}");
}

/// Writes `bytes` as `name`, reads it with `read`, checks the error names
/// the file (or the layer, where `pieces` name one) and holds every piece.
fn hostile<T, E: std::fmt::Display>(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    read: impl FnOnce(&Path) -> Result<T, E>,
    pieces: &[&str],
) -> usize {
    let p = write(dir, name, bytes);
    let msg = error_of(name, || read(&p));
    // the error names the file, or (for a bad layer in a spec) the layer
    let mut all = Vec::new();
    if !pieces.iter().any(|x| x.starts_with("layer '")) {
        all.push(name);
    }
    all.extend_from_slice(pieces);
    expect(name, &msg, &all);
    1
}

#[test]
fn the_memory_limit_is_real() {
    bounded("the_memory_limit_is_real", || {
        // 3 GB cannot be reserved under the limit: the limit is in force
        let mut v: Vec<u8> = Vec::new();
        assert!(
            v.try_reserve_exact(3_000_000_000).is_err(),
            "3 GB was reserved: no memory limit in the child"
        );
    });
}

#[test]
fn idx_files() {
    bounded("idx_files", || {
        let d = tmp_dir("idx");
        let r = |p: &Path| read_idx(p, None);
        let mut n = 0;
        let three_dims = idx_bytes(&[2, 3, 4], &[]);
        n += hostile(
            &d,
            "trunc-header-idx3-ubyte",
            &three_dims[..9],
            r,
            &["invalid dimensions", "truncated header"],
        );
        n += hostile(
            &d,
            "trunc-header-idx3-ubyte.gz",
            &gzip(&three_dims[..9]),
            r,
            &["invalid dimensions", "truncated header"],
        );
        n += hostile(
            &d,
            "short-magic-idx1-ubyte",
            &[0, 0],
            r,
            &["invalid magic", "too short"],
        );
        let mut bad_magic = idx_bytes(&[2], &[1, 2]);
        bad_magic[0] = 0x42;
        n += hostile(
            &d,
            "bad-magic-idx1-ubyte",
            &bad_magic,
            r,
            &["invalid magic", "0x42"],
        );
        let mut bad_dtype = idx_bytes(&[2], &[0; 8]);
        bad_dtype[2] = 0x0D;
        n += hostile(
            &d,
            "float-idx1-ubyte",
            &bad_dtype,
            r,
            &["invalid data type", "float32"],
        );
        let mut unknown_dtype = idx_bytes(&[2], &[1, 2]);
        unknown_dtype[2] = 0x77;
        n += hostile(
            &d,
            "unknown-dtype-idx1-ubyte.gz",
            &gzip(&unknown_dtype),
            r,
            &["invalid data type", "0x77"],
        );
        let mut zero_dims = idx_bytes(&[], &[]);
        zero_dims[3] = 0;
        n += hostile(
            &d,
            "zero-dims-idx1-ubyte",
            &zero_dims,
            r,
            &["invalid dimensions", "zero dimensions"],
        );
        let short = idx_bytes(&[10, 10], &[7; 50]);
        n += hostile(
            &d,
            "short-payload-idx2-ubyte",
            &short,
            r,
            &["invalid payload", "need 100 bytes", "has 50"],
        );
        n += hostile(
            &d,
            "short-payload-idx2-ubyte.gz",
            &gzip(&short),
            r,
            &["invalid payload", "need 100 bytes", "has 50"],
        );
        let long = idx_bytes(&[3], &[1, 2, 3, 4]);
        n += hostile(
            &d,
            "long-payload-idx1-ubyte.gz",
            &gzip(&long),
            r,
            &["invalid payload", "stream has more"],
        );
        // 10^6 x 10^6 = 10^12 elements claimed by a 100-byte file
        let mut huge = idx_bytes(&[1_000_000, 1_000_000], &[]);
        huge.resize(100, 0);
        n += hostile(
            &d,
            "huge-idx2-ubyte",
            &huge,
            r,
            &[
                "invalid dimensions",
                "1000000000000 bytes",
                "over the limit",
            ],
        );
        n += hostile(
            &d,
            "huge-idx2-ubyte.gz",
            &gzip(&huge),
            r,
            &["invalid dimensions", "over the limit"],
        );
        let ovf = idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[1; 20]);
        n += hostile(
            &d,
            "overflow-idx3-ubyte",
            &ovf,
            r,
            &["invalid dimensions", "overflows"],
        );
        // a decompression bomb: the header claims 16 bytes, the stream holds 64 MB
        let mut bomb = idx_bytes(&[16], &[]);
        bomb.resize(64 << 20, 0);
        let bomb = gzip(&bomb);
        assert!(bomb.len() < 1 << 20, "the bomb compresses: {}", bomb.len());
        n += hostile(
            &d,
            "bomb-idx1-ubyte.gz",
            &bomb,
            r,
            &["invalid payload", "need 16 bytes", "stream has more"],
        );
        n += hostile(
            &d,
            "garbage-idx1-ubyte.gz",
            &[0x1f, 0x8b, 8, 0, 9, 9, 9, 9, 9, 9, 9, 9],
            r,
            &["invalid gzip stream"],
        );
        let cut = gzip(&idx_bytes(&[64], &[5; 64]));
        n += hostile(
            &d,
            "cut-idx1-ubyte.gz",
            &cut[..cut.len() / 2],
            r,
            &["invalid"],
        );
        n += hostile(
            &d,
            "empty-idx1-ubyte",
            &[],
            r,
            &["invalid magic", "0 bytes"],
        );
        // checksum mismatch: the SHA256SUMS entry is of other bytes
        let good = idx_bytes(&[3], &[9, 8, 7]);
        let sums = Sha256Sums::parse(
            "SHA256SUMS",
            &format!(
                "{}  sum-idx1-ubyte\n",
                strata_data::sha256_hex(&idx_bytes(&[3], &[9, 8, 6]))
            ),
        )
        .expect("a valid SHA256SUMS");
        n += hostile(
            &d,
            "sum-idx1-ubyte.gz",
            &gzip(&good),
            |p| read_idx(p, Some(&sums)),
            &["SHA-256 mismatch", "expected", "found"],
        );
        // a SHA256SUMS file that is not one
        n += hostile(
            &d,
            "SHA256SUMS",
            b"not-a-digest  file\n",
            |p: &Path| Sha256Sums::read(p),
            &["invalid line 1"],
        );
        assert!(n >= 19);
        std::fs::remove_dir_all(&d).ok();
    });
}

#[test]
fn npy_files() {
    bounded("npy_files", || {
        let d = tmp_dir("npy");
        let r = |p: &Path| read_npy(p);
        let dict = |descr: &str, fortran: &str, shape: &str| {
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}")
        };
        let good = npy_with_header(1, &dict("<f4", "False", "(2, 3)"), &f32_bytes(&[0.0; 6]));
        let mut n = 0;
        n += hostile(&d, "truncated.npy", &good[..7], r, &["invalid magic"]);
        n += hostile(
            &d,
            "truncated-header.npy",
            &good[..40],
            r,
            &["invalid header length", "declares"],
        );
        n += hostile(
            &d,
            "bad-magic.npy",
            b"\x93NUMPX\x01\x00\x10\x00{}",
            r,
            &["invalid magic", "\\x93NUMPY"],
        );
        let mut v9 = good.clone();
        v9[6] = 9;
        n += hostile(&d, "version.npy", &v9, r, &["invalid version", "9.0"]);
        let mut past = good.clone();
        past[8..10].copy_from_slice(&60000u16.to_le_bytes());
        n += hostile(
            &d,
            "header-len.npy",
            &past,
            r,
            &["invalid header length", "60000"],
        );
        let mut v2past = npy_with_header(2, &dict("<f4", "False", "(1,)"), &[0; 4]);
        v2past[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        n += hostile(
            &d,
            "header-len-v2.npy",
            &v2past,
            r,
            &["invalid header length", "4294967295"],
        );
        let mut latin = good.clone();
        latin[12] = 0xff;
        n += hostile(&d, "latin1.npy", &latin, r, &["invalid header", "UTF-8"]);
        n += hostile(
            &d,
            "dict.npy",
            &npy_with_header(
                1,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3",
                &[0; 24],
            ),
            r,
            &["invalid header"],
        );
        n += hostile(
            &d,
            "not-dict.npy",
            &npy_with_header(1, "[1, 2]", &[]),
            r,
            &["invalid header", "not a dict"],
        );
        n += hostile(
            &d,
            "missing-shape.npy",
            &npy_with_header(1, "{'descr': '<f4', 'fortran_order': False}", &[]),
            r,
            &["invalid header", "missing key 'shape'"],
        );
        n += hostile(
            &d,
            "fortran.npy",
            &npy_with_header(1, &dict("<f4", "True", "(2, 3)"), &[0; 24]),
            r,
            &["invalid header.fortran_order", "Fortran"],
        );
        n += hostile(
            &d,
            "big-endian.npy",
            &npy_with_header(1, &dict(">f4", "False", "(2, 3)"), &[0; 24]),
            r,
            &["invalid header.descr", "'>f4' is big-endian"],
        );
        n += hostile(
            &d,
            "object.npy",
            &npy_with_header(1, &dict("|O", "False", "(2,)"), &[0; 16]),
            r,
            &["invalid header.descr", "object"],
        );
        n += hostile(
            &d,
            "complex.npy",
            &npy_with_header(1, &dict("<c8", "False", "(1,)"), &[0; 8]),
            r,
            &["invalid header.descr", "'<c8' is not supported"],
        );
        n += hostile(
            &d,
            "huge.npy",
            &npy_with_header(1, &dict("<f4", "False", "(1000000, 1000000)"), &[0; 64]),
            r,
            &[
                "invalid shape",
                "(1000000, 1000000)",
                "4000000000000 data bytes",
                "file has 64",
            ],
        );
        n += hostile(
            &d,
            "overflow.npy",
            &npy_with_header(
                1,
                &dict("<f8", "False", "(4294967296, 4294967296)"),
                &[0; 8],
            ),
            r,
            &["invalid shape", "overflows"],
        );
        n += hostile(
            &d,
            "negative.npy",
            &npy_with_header(1, &dict("<f4", "False", "(-1, 3)"), &[0; 12]),
            r,
            &["invalid header.shape", "dimension -1"],
        );
        n += hostile(
            &d,
            "zero-dim.npy",
            &npy_with_header(1, &dict("<f4", "False", "(0, 3)"), &[0; 12]),
            r,
            &["invalid shape", "needs 0 data bytes", "file has 12"],
        );
        n += hostile(
            &d,
            "mismatch.npy",
            &npy_with_header(1, &dict("<f4", "False", "(2, 3)"), &[0; 20]),
            r,
            &["invalid shape", "needs 24 data bytes", "file has 20"],
        );
        n += hostile(
            &d,
            "bool.npy",
            &npy_with_header(1, &dict("|b1", "False", "(2,)"), &[1, 7]),
            r,
            &["invalid data", "not a boolean"],
        );
        // accepted file, then a hostile use: negative class ids
        let neg = npy_with_header(1, &dict("<i8", "False", "(2,)"), &[255; 16]);
        let p = write(&d, "labels.npy", &neg);
        let msg = error_of("labels.npy", || read_npy(&p)?.to_labels());
        expect(
            "labels.npy",
            &msg,
            &["labels.npy", "invalid data", "label -1"],
        );
        n += 1;
        assert!(n >= 21);
        std::fs::remove_dir_all(&d).ok();
    });
}

/// The model the hostile weights are loaded into: `dense` (3 -> 2).
fn dense_model() -> Model {
    let mut m = Model::sequential("m", &[3], 0);
    m.add(Dense::new(2)).expect("a 3 -> 2 Dense builds");
    m
}

fn load(p: &Path) -> strata_nn::Result<Vec<String>> {
    dense_model().load_weights(p)
}

#[test]
fn safetensors_files() {
    bounded("safetensors_files", || {
        let d = tmp_dir("st");
        let mut n = 0;
        let kernel = f32_bytes(&[1.0; 6]);
        n += hostile(
            &d,
            "garbage.safetensors",
            b"this is not safetensors",
            load,
            &["not a valid safetensors file"],
        );
        n += hostile(
            &d,
            "tiny.safetensors",
            &[1, 2, 3],
            load,
            &["not a valid safetensors file"],
        );
        let mut past = safetensors_f32(&[("dense.kernel", &[3, 2], &[1.0; 6])]);
        past[..8].copy_from_slice(&1_000_000_000u64.to_le_bytes());
        n += hostile(
            &d,
            "header-len.safetensors",
            &past,
            load,
            &["not a valid safetensors file"],
        );
        n += hostile(
            &d,
            "not-json.safetensors",
            &safetensors_raw("{not json at all}", &kernel),
            load,
            &["not a valid safetensors file"],
        );
        let h = |body: &str| format!("{{{body}}}");
        n += hostile(
            &d,
            "offsets.safetensors",
            &safetensors_raw(
                &h(r#""dense.kernel":{"dtype":"F32","shape":[3,2],"data_offsets":[0,2400]}"#),
                &kernel,
            ),
            load,
            &["not a valid safetensors file"],
        );
        n += hostile(
            &d,
            "overlap.safetensors",
            &safetensors_raw(
                &h(
                    r#""dense.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"dense.kernel":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]}"#,
                ),
                &kernel,
            ),
            load,
            &["not a valid safetensors file"],
        );
        n += hostile(
            &d,
            "dtype.safetensors",
            &safetensors_raw(
                &h(
                    r#""dense.bias":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"dense.kernel":{"dtype":"F32","shape":[3,2],"data_offsets":[8,32]}"#,
                ),
                &[0; 32],
            ),
            load,
            &["dense.bias", "dtype I32", "not a float type"],
        );
        n += hostile(
            &d,
            "length.safetensors",
            &safetensors_raw(
                &h(r#""dense.kernel":{"dtype":"F32","shape":[3,2],"data_offsets":[0,20]}"#),
                &kernel[..20],
            ),
            load,
            &["not a valid safetensors file"],
        );
        n += hostile(
            &d,
            "huge-shape.safetensors",
            &safetensors_raw(
                &h(
                    r#""dense.kernel":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,24]}"#,
                ),
                &kernel,
            ),
            load,
            &["not a valid safetensors file"],
        );
        n += hostile(
            &d,
            "overflow-shape.safetensors",
            &safetensors_raw(
                &h(
                    r#""dense.kernel":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,24]}"#,
                ),
                &kernel,
            ),
            load,
            &["not a valid safetensors file"],
        );
        // well-formed files that do not fit the model: every problem at once
        let wrong = safetensors_f32(&[
            ("dense.kernel", &[4, 2], &[0.0; 8]),
            ("other.bias", &[2], &[0.0; 2]),
        ]);
        n += hostile(
            &d,
            "wrong.safetensors",
            &wrong,
            load,
            &[
                "3 mismatch(es)",
                "dense.kernel: expected shape (3, 2), found (4, 2)",
                "missing dense.bias",
                "unexpected other.bias",
            ],
        );
        // NaN and Inf: loaded, with a warning naming the tensor
        let p = write(
            &d,
            "nan.safetensors",
            &safetensors_f32(&[
                ("dense.bias", &[2], &[f32::NAN, f32::INFINITY]),
                ("dense.kernel", &[3, 2], &[1.0; 6]),
            ]),
        );
        let warnings = catch_unwind(AssertUnwindSafe(|| load(&p)))
            .expect("nan.safetensors: panicked")
            .expect("nan.safetensors: NaN/Inf values load (with a warning)");
        assert_eq!(
            warnings,
            vec!["dense.bias: 2 non-finite value(s)".to_string()]
        );
        n += 1;
        // read_safetensors on its own names the file too
        let p = write(
            &d,
            "raw.safetensors",
            b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}",
        );
        let msg = error_of("raw.safetensors", || read_safetensors(&p));
        expect("raw.safetensors", &msg, &["weights", "raw.safetensors"]);
        n += 1;
        assert!(n >= 13);
        std::fs::remove_dir_all(&d).ok();
    });
}

#[test]
fn spec_files() {
    bounded("spec_files", || {
        let d = tmp_dir("spec");
        let r = |p: &Path| model_from_spec_file(p, 0);
        let seq = |layers: &str| format!(r#"{{"input_shape": [8, 8, 3], "layers": [{layers}]}}"#);
        let mut n = 0;
        n += hostile(
            &d,
            "latin1.json",
            b"{\"name\": \"caf\xe9\", \"input_shape\": [3], \"layers\": []}",
            r,
            &["not UTF-8"],
        );
        n += hostile(
            &d,
            "invalid.json",
            b"{\"input_shape\": [3], \"layers\": [",
            r,
            &["invalid JSON", "line 1"],
        );
        n += hostile(
            &d,
            "array.json",
            b"[1, 2, 3]",
            r,
            &["must be a JSON object"],
        );
        n += hostile(
            &d,
            "type.json",
            seq(r#"{"type": "Conv3D", "filters": 2}"#).as_bytes(),
            r,
            &[
                "layer '#0 (Conv3D)'",
                "invalid type",
                "unknown layer type 'Conv3D'",
            ],
        );
        n += hostile(&d, "argument.json", seq(r#"{"type": "Conv2D", "name": "c", "filters": 2, "kernel_size": 3, "colour": "red"}"#).as_bytes(), r, &["layer 'c'", "invalid colour", "unknown argument"]);
        n += hostile(
            &d,
            "negative.json",
            seq(r#"{"type": "Flatten"}, {"type": "Dense", "name": "head", "units": -4}"#)
                .as_bytes(),
            r,
            &["layer 'head'", "invalid units", "-4"],
        );
        n += hostile(
            &d,
            "zero.json",
            seq(r#"{"type": "Conv2D", "name": "c", "filters": 0, "kernel_size": 3}"#).as_bytes(),
            r,
            &["layer 'c'", "invalid filters"],
        );
        n += hostile(
            &d,
            "zero-kernel.json",
            seq(r#"{"type": "Conv2D", "name": "c", "filters": 2, "kernel_size": [0, 3]}"#)
                .as_bytes(),
            r,
            &["layer 'c'", "invalid kernel_size"],
        );
        n += hostile(
            &d,
            "zero-input.json",
            br#"{"input_shape": [8, 0, 3], "layers": []}"#,
            r,
            &["input_shape", "positive integers"],
        );
        n += hostile(
            &d,
            "kernel.json",
            seq(r#"{"type": "Conv2D", "name": "big", "filters": 2, "kernel_size": 11}"#).as_bytes(),
            r,
            &["layer 'big'", "(None, 8, 8, 3)"],
        );
        n += hostile(&d, "dilation.json", seq(r#"{"type": "Conv2D", "name": "c", "filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2}"#).as_bytes(), r, &["layer 'c'", "invalid dilation_rate", "strides > 1"]);
        n += hostile(
            &d,
            "groups.json",
            seq(r#"{"type": "Conv2D", "name": "g", "filters": 4, "kernel_size": 1, "groups": 2}"#)
                .as_bytes(),
            r,
            &["layer 'g'", "groups"],
        );
        n += hostile(&d, "duplicate.json", seq(r#"{"type": "Conv2D", "name": "c", "filters": 2, "kernel_size": 1}, {"type": "Conv2D", "name": "c", "filters": 2, "kernel_size": 1}"#).as_bytes(), r, &["layer 'c'", "invalid name", "duplicate layer name"]);
        let graph = |layers: &str, outputs: &str| {
            format!(r#"{{"inputs": {{"x": [4]}}, "layers": [{layers}], "outputs": [{outputs}]}}"#)
        };
        n += hostile(&d, "cycle.json", graph(r#"{"name": "a", "type": "Dense", "units": 4, "inputs": ["b"]}, {"name": "b", "type": "Dense", "units": 4, "inputs": ["a"]}"#, r#""b""#).as_bytes(), r, &["cycle", "a", "b"]);
        n += hostile(
            &d,
            "unknown-input.json",
            graph(
                r#"{"name": "a", "type": "Dense", "units": 4, "inputs": ["y"]}"#,
                r#""a""#,
            )
            .as_bytes(),
            r,
            &["layer 'a'", "invalid inputs", "unknown input 'y'"],
        );
        n += hostile(
            &d,
            "unknown-output.json",
            graph(
                r#"{"name": "a", "type": "Dense", "units": 4, "inputs": ["x"]}"#,
                r#""z""#,
            )
            .as_bytes(),
            r,
            &["outputs", "unknown layer", "z"],
        );
        n += hostile(&d, "merge.json", graph(r#"{"name": "a", "type": "Dense", "units": 3, "inputs": ["x"]}, {"name": "s", "type": "Add", "inputs": ["a", "x"]}"#, r#""s""#).as_bytes(), r, &["layer 's'"]);
        n += hostile(
            &d,
            "reshape.json",
            seq(r#"{"type": "Reshape", "name": "r", "target_shape": [5, -1]}"#).as_bytes(),
            r,
            &["layer 'r'"],
        );
        // requests that cannot be served: an error, not an allocation
        n += hostile(&d, "huge-dense.json", br#"{"input_shape": [1000000], "layers": [{"type": "Dense", "name": "wide", "units": 1000000}]}"#, r, &["layer 'wide'", "units"]);
        n += hostile(&d, "huge-input.json", br#"{"input_shape": [4294967296, 4294967296], "layers": [{"type": "Flatten", "name": "f"}]}"#, r, &["input_shape"]);
        assert!(n >= 20);
        std::fs::remove_dir_all(&d).ok();
    });
}

#[test]
fn fit_history_and_images() {
    bounded("fit_history_and_images", || {
        let d = tmp_dir("misc");
        let mut n = 0;
        // fit with batch_size 0
        let mut m = dense_model();
        m.compile(Loss::MeanSquaredError, Optimizer::sgd(0.1, 0.0, false), &[]);
        let x = Tensor::zeros(&[4, 3]);
        let y = Targets::Dense(Tensor::zeros(&[4, 2]));
        let cfg = FitConfig {
            batch_size: 0,
            verbose: Verbosity::Silent,
            ..FitConfig::default()
        };
        let msg = error_of("fit batch_size 0", || m.fit(&[x], &y, &cfg, &mut []));
        expect("fit batch_size 0", &msg, &["batch_size", "at least 1"]);
        n += 1;
        // history files
        n += hostile(
            &d,
            "history-shape.json",
            br#"{"epoch": [0, 1], "history": {"loss": [0.5]}}"#,
            |p: &Path| History::load(p),
            &["one value per epoch"],
        );
        n += hostile(
            &d,
            "history-type.json",
            br#"{"epoch": [0], "history": {"loss": "low"}}"#,
            |p: &Path| History::load(p),
            &["not a history file"],
        );
        n += hostile(
            &d,
            "history-bytes.json",
            b"\xff\xfe\x00",
            |p: &Path| History::load(p),
            &[],
        );
        // image folders
        let cfg = ImageFolderConfig {
            height: 4,
            width: 4,
            channels: 1,
            ..ImageFolderConfig::default()
        };
        let root = d.join("images");
        std::fs::create_dir_all(root.join("cats")).expect("create folders");
        write(
            &root.join("cats"),
            "fake.png",
            b"GIF89a this is not a png at all",
        );
        let msg = error_of("fake.png", || ImageFolder::load(&root, cfg.clone()));
        expect("fake.png", &msg, &["fake.png", "cannot decode image"]);
        n += 1;
        let empty = d.join("empty");
        std::fs::create_dir_all(&empty).expect("create a folder");
        let msg = error_of("empty folder", || ImageFolder::load(&empty, cfg.clone()));
        expect("empty folder", &msg, &["empty", "classes"]);
        n += 1;
        assert!(n >= 6);
        std::fs::remove_dir_all(&d).ok();
    });
}

#[test]
fn onnx_files() {
    bounded("onnx_files", || {
        use strata_onnx::build::GraphBuilder;
        use strata_onnx::proto::TensorProto;
        let d = tmp_dir("onnx");
        let r = |p: &Path| strata_onnx::import_file(p);
        let relu = || {
            let mut g = GraphBuilder::new("g");
            g.input("x", &[4]);
            g.node("Relu", &["x"], &["y"], vec![]).output("y");
            g
        };
        let good = relu().bytes(17);
        let mut n = 0;
        n += hostile(
            &d,
            "text.onnx",
            b"name,age\nada,36\n",
            r,
            &["not an ONNX model"],
        );
        n += hostile(&d, "empty.onnx", b"", r, &["empty"]);
        n += hostile(
            &d,
            "truncated.onnx",
            &good[..good.len() - 7],
            r,
            &["not an ONNX model"],
        );
        let mut huge = relu();
        huge.graph.initializer.push(TensorProto {
            name: "w".into(),
            dims: vec![1 << 40, 1 << 40],
            data_type: 1,
            ..Default::default()
        });
        n += hostile(
            &d,
            "huge.onnx",
            &huge.bytes(17),
            r,
            &["initializer 'w'", "elements"],
        );
        let mut lying = relu();
        lying.init("w", &[1 << 20, 1 << 10], &[0.0; 8]);
        n += hostile(
            &d,
            "lying.onnx",
            &lying.bytes(17),
            r,
            &["initializer 'w'", "holds 32 bytes"],
        );
        let mut cycle = GraphBuilder::new("cycle");
        cycle.input("x", &[4]);
        cycle
            .node("Add", &["x", "b"], &["a"], vec![])
            .node("Relu", &["a"], &["b"], vec![])
            .output("b");
        n += hostile(&d, "cycle.onnx", &cycle.bytes(17), r, &["cycle", "Add 'a'"]);
        let mut dangling = GraphBuilder::new("dangling");
        dangling.input("x", &[4]);
        dangling
            .node("Mul", &["x", "ghost"], &["y"], vec![])
            .output("y");
        n += hostile(
            &d,
            "dangling.onnx",
            &dangling.bytes(17),
            r,
            &["'ghost'", "Mul 'y'"],
        );
        let mut unsupported = relu();
        unsupported
            .node("Erf", &["y"], &["e"], vec![])
            .node("Shape", &["x"], &["s"], vec![]);
        n += hostile(
            &d,
            "ops.onnx",
            &unsupported.bytes(17),
            r,
            &["Erf 'e'", "Shape 's'"],
        );
        let msg = error_of("missing", || r(&d.join("nowhere.onnx")));
        expect("missing", &msg, &["nowhere.onnx", "No such file"]);
        assert_eq!(n, 8);
    });
}
