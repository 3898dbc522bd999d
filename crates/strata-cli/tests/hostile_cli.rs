//! Hostile files through the real `strata` binary: each run exits non-zero
//! with exactly one stderr line starting `error: ` that names the file, and
//! never panics. (The full hostile-file suite is crates/strata-hostile.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-hostile-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("create a temporary folder");
    d
}

/// Runs strata in `dir`; asserts the one-line error and returns it.
fn fails(dir: &Path, args: &[&str], mentions: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run strata");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} succeeded:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr}");
    for m in mentions {
        assert!(lines[0].contains(m), "{args:?}: '{m}' missing: {stderr}");
    }
    stderr
}

/// A `.npy` v1.0 file with a hand-written header dict.
fn npy(dict: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
    out.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

const SPEC: &str = r#"{"input_shape": [3], "layers": [{"type": "Dense", "units": 2}]}"#;

#[test]
fn hostile_spec_files() {
    let d = tmp("spec");
    std::fs::write(d.join("latin1.json"), b"{\"name\": \"caf\xe9\"}").expect("write");
    fails(&d, &["summary", "latin1.json"], &["latin1.json", "UTF-8"]);
    std::fs::write(d.join("cut.json"), b"{\"input_shape\": [3], \"layers\": [").expect("write");
    fails(&d, &["summary", "cut.json"], &["cut.json", "invalid JSON"]);
    std::fs::write(
        d.join("unknown.json"),
        r#"{"input_shape": [3], "layers": [{"type": "Dense", "name": "d", "units": 2, "colour": 1}]}"#,
    )
    .expect("write");
    fails(&d, &["summary", "unknown.json"], &["layer 'd'", "colour"]);
    std::fs::write(
        d.join("huge.json"),
        r#"{"input_shape": [1000000], "layers": [{"type": "Dense", "name": "wide", "units": 1000000}]}"#,
    )
    .expect("write");
    fails(&d, &["summary", "huge.json"], &["layer 'wide'", "units"]);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn hostile_weights_and_tensors() {
    let d = tmp("predict");
    std::fs::write(d.join("m.json"), SPEC).expect("write");
    let good_x = npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }",
        &[0; 12],
    );
    std::fs::write(d.join("x.npy"), &good_x).expect("write");
    std::fs::write(d.join("garbage.safetensors"), b"not safetensors at all").expect("write");
    let mut past = 1_000_000u64.to_le_bytes().to_vec();
    past.extend_from_slice(b"{}");
    std::fs::write(d.join("past.safetensors"), &past).expect("write");
    for w in ["garbage.safetensors", "past.safetensors"] {
        fails(
            &d,
            &[
                "predict",
                "m.json",
                "--weights",
                w,
                "--input",
                "x.npy",
                "--output",
                "y.npy",
            ],
            &[w],
        );
    }
    // hostile inputs, with valid weights
    let mut weights = Vec::new();
    let header = r#"{"dense.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"dense.kernel":{"dtype":"F32","shape":[3,2],"data_offsets":[8,32]}}"#;
    weights.extend_from_slice(&(header.len() as u64).to_le_bytes());
    weights.extend_from_slice(header.as_bytes());
    weights.extend_from_slice(&[0; 32]);
    std::fs::write(d.join("w.safetensors"), &weights).expect("write");
    let hostile_inputs: [(&str, Vec<u8>, &str); 4] = [
        ("magic.npy", b"PK\x03\x04 a zip file".to_vec(), "magic"),
        (
            "fortran.npy",
            npy(
                "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 3), }",
                &[0; 12],
            ),
            "fortran_order",
        ),
        (
            "big-endian.npy",
            npy(
                "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 3), }",
                &[0; 12],
            ),
            "descr",
        ),
        (
            "huge.npy",
            npy(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }",
                &[0; 12],
            ),
            "shape",
        ),
    ];
    for (name, bytes, field) in &hostile_inputs {
        std::fs::write(d.join(name), bytes).expect("write");
        fails(
            &d,
            &[
                "predict",
                "m.json",
                "--weights",
                "w.safetensors",
                "--input",
                name,
                "--output",
                "y.npy",
            ],
            &[name, field],
        );
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn hostile_training_data() {
    let d = tmp("train");
    std::fs::write(d.join("m.json"), SPEC).expect("write");
    let x = npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        &[0; 24],
    );
    std::fs::write(d.join("x.npy"), &x).expect("write");
    let y = npy(
        "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
        &[0xff; 16],
    );
    std::fs::write(d.join("neg.npy"), &y).expect("write");
    let base = [
        "train",
        "m.json",
        "--data",
        "x.npy",
        "--epochs",
        "1",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--loss",
        "sparse_categorical_crossentropy",
    ];
    let mut args = base.to_vec();
    args.extend_from_slice(&["--labels", "neg.npy", "--batch-size", "2"]);
    fails(&d, &args, &["neg.npy"]);
    let mut args = base.to_vec();
    args.extend_from_slice(&["--labels", "neg.npy", "--batch-size", "0"]);
    fails(&d, &args, &["batch"]);
    // an image folder whose "PNG"s are not PNGs: skipped, so nothing is
    // left to train on; --strict names the first
    for class in ["cats", "dogs"] {
        std::fs::create_dir_all(d.join("images").join(class)).expect("create folders");
        std::fs::write(
            d.join("images").join(class).join("fake.png"),
            b"GIF89a not a png",
        )
        .expect("write");
    }
    std::fs::write(
        d.join("img.json"),
        r#"{"input_shape": [4, 4, 3], "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 2}]}"#,
    )
    .expect("write");
    let args = [
        "train",
        "img.json",
        "--data",
        "images",
        "--epochs",
        "1",
        "--batch-size",
        "1",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--loss",
        "sparse_categorical_crossentropy",
    ];
    fails(&d, &args, &["could be read", "2 skipped"]);
    let mut strict = args.to_vec();
    strict.push("--strict");
    fails(&d, &strict, &["fake.png"]);
    std::fs::remove_dir_all(&d).ok();
}
