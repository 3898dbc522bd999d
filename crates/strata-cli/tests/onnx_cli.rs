//! `strata import` end to end: an NCHW ONNX file as PyTorch writes one
//! becomes a strata model file that summary, explain, predict, gradcam,
//! train and export all take; bad files give one error line.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_core::{Rng, Tensor};
use strata_onnx::build::{attr_int, attr_ints, GraphBuilder};

/// Runs `strata args` in `dir`: (success, stdout, stderr).
fn run(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running strata");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (o.status.success(), text(&o.stdout), text(&o.stderr))
}

fn succeeds(dir: &Path, args: &[&str]) -> (String, String) {
    let (good, out, err) = run(dir, args);
    assert!(good, "strata {args:?} failed:\n{out}\n{err}");
    (out, err)
}

/// The one `error:` line of a failing command.
fn error_line(dir: &Path, args: &[&str]) -> String {
    let (good, _, err) = run(dir, args);
    assert!(!good, "strata {args:?} succeeded");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

fn folder(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-onnx-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Conv(3 -> 6, 3x3, pad 1) + ReLU, MaxPool 2x2, Conv(6 -> 8) + ReLU,
/// GlobalAveragePool, Flatten, Gemm to 3 classes, Softmax; NCHW (3, 8, 8).
fn small_cnn() -> Vec<u8> {
    let mut r = Rng::new(9);
    let mut vals = |n: usize, s: f32| -> Vec<f32> { (0..n).map(|_| r.uniform(-s, s)).collect() };
    let mut g = GraphBuilder::new("small_cnn");
    g.input("pixels", &[3, 8, 8]);
    g.init("features.0.weight", &[6, 3, 3, 3], &vals(162, 0.5))
        .init("features.0.bias", &[6], &vals(6, 0.1))
        .init("features.3.weight", &[8, 6, 3, 3], &vals(432, 0.3))
        .init("features.3.bias", &[8], &vals(8, 0.1))
        .init("classifier.weight", &[3, 8], &vals(24, 0.8))
        .init("classifier.bias", &[3], &vals(3, 0.1));
    let pad = || vec![attr_ints("pads", vec![1, 1, 1, 1])];
    g.node(
        "Conv",
        &["pixels", "features.0.weight", "features.0.bias"],
        &["c1"],
        pad(),
    )
    .node("Relu", &["c1"], &["r1"], vec![])
    .node(
        "MaxPool",
        &["r1"],
        &["p1"],
        vec![
            attr_ints("kernel_shape", vec![2, 2]),
            attr_ints("strides", vec![2, 2]),
        ],
    )
    .node(
        "Conv",
        &["p1", "features.3.weight", "features.3.bias"],
        &["c2"],
        pad(),
    )
    .node("Relu", &["c2"], &["r2"], vec![])
    .node("GlobalAveragePool", &["r2"], &["gap"], vec![])
    .node("Flatten", &["gap"], &["flat"], vec![attr_int("axis", 1)])
    .node(
        "Gemm",
        &["flat", "classifier.weight", "classifier.bias"],
        &["logits"],
        vec![attr_int("transB", 1)],
    )
    .node(
        "Softmax",
        &["logits"],
        &["probs"],
        vec![attr_int("axis", 1)],
    )
    .output("probs");
    g.bytes(17)
}

#[test]
fn an_imported_onnx_model_works_with_every_command() {
    let d = folder("every_command");
    std::fs::write(d.join("small.onnx"), small_cnn()).unwrap();
    let (_, err) = succeeds(
        &d,
        &["import", "small.onnx", "--output", "small.safetensors"],
    );
    assert!(
        err.contains("note: input 'pixels' is NHWC in strata: (8, 8, 3)"),
        "{err}"
    );
    assert!(err.contains("wrote small.safetensors"), "{err}");

    let (summary, _) = succeeds(&d, &["summary", "small.safetensors"]);
    for name in [
        "features_0 (Conv2D)",
        "features_3 (Conv2D)",
        "classifier (Dense)",
    ] {
        assert!(summary.contains(name), "{name} not in\n{summary}");
    }
    // 3*3*3*6 + 6 + 3*3*6*8 + 8 + 8*3 + 3
    assert!(summary.contains("Total params: 635"), "{summary}");
    succeeds(
        &d,
        &["explain", "small.safetensors", "--layer", "classifier"],
    );

    let mut rng = Rng::new(4);
    let x: Vec<f32> = (0..4 * 8 * 8 * 3).map(|_| rng.uniform(0.0, 1.0)).collect();
    let x = Tensor::from_vec(x, &[4, 8, 8, 3]).unwrap();
    std::fs::write(d.join("x.npy"), strata_data::npy::npy_bytes_f32(&x)).unwrap();
    std::fs::write(
        d.join("y.npy"),
        strata_data::npy::npy_bytes_i64(&[0, 1, 2, 1], &[4]).unwrap(),
    )
    .unwrap();
    succeeds(
        &d,
        &[
            "predict",
            "small.safetensors",
            "--input",
            "x.npy",
            "--output",
            "p.npy",
        ],
    );
    let p = strata_data::read_npy(d.join("p.npy"))
        .unwrap()
        .to_tensor()
        .unwrap();
    assert_eq!(p.shape(), &[4, 3]);
    for row in p.to_vec().chunks(3) {
        assert!(
            (row.iter().sum::<f32>() - 1.0).abs() < 1e-5,
            "softmax rows: {row:?}"
        );
    }

    let x1 = Tensor::from_vec(x.to_vec()[..192].to_vec(), &[1, 8, 8, 3]).unwrap();
    std::fs::write(d.join("one.npy"), strata_data::npy::npy_bytes_f32(&x1)).unwrap();
    succeeds(
        &d,
        &[
            "gradcam",
            "small.safetensors",
            "--input",
            "one.npy",
            "--output",
            "cam.png",
        ],
    );
    assert!(d.join("cam.png").is_file());

    succeeds(
        &d,
        &[
            "train",
            "small.safetensors",
            "--data",
            "x.npy",
            "--labels",
            "y.npy",
            "--epochs",
            "2",
            "--batch-size",
            "2",
            "--optimizer",
            "sgd",
            "--lr",
            "0.1",
            "--loss",
            "sparse_categorical_crossentropy",
            "--save",
            "tuned.safetensors",
        ],
    );
    assert!(d.join("tuned.safetensors").is_file());
    succeeds(
        &d,
        &["export", "tuned.safetensors", "--output", "tuned.onnx"],
    );
    let (_, err) = succeeds(
        &d,
        &["import", "tuned.onnx", "--output", "again.safetensors"],
    );
    assert!(
        !err.contains("NCHW"),
        "strata's own export keeps NHWC: {err}"
    );
    succeeds(
        &d,
        &[
            "predict",
            "again.safetensors",
            "--input",
            "x.npy",
            "--output",
            "q.npy",
        ],
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_onnx_files_give_one_error_line() {
    let d = folder("bad_files");
    std::fs::write(d.join("notes.onnx"), "just some text").unwrap();
    let e = error_line(&d, &["import", "notes.onnx", "--output", "m.safetensors"]);
    assert!(
        e.contains("import") && e.contains("notes.onnx") && e.contains("not an ONNX model"),
        "{e}"
    );

    let mut g = GraphBuilder::new("odd");
    g.input("x", &[4]);
    g.node("Erf", &["x"], &["e"], vec![])
        .node("Relu", &["e"], &["y"], vec![])
        .output("y");
    std::fs::write(d.join("odd.onnx"), g.bytes(17)).unwrap();
    let e = error_line(&d, &["import", "odd.onnx", "--output", "m.safetensors"]);
    assert!(e.contains("1 unsupported ONNX node(s): Erf 'e'"), "{e}");

    let e = error_line(&d, &["import", "missing.onnx", "--output", "m.safetensors"]);
    assert!(e.contains("missing.onnx"), "{e}");
    let e = error_line(&d, &["import", "odd.onnx", "--output", "m.txt"]);
    assert!(e.contains("--output"), "{e}");
    assert!(!d.join("m.safetensors").exists() && !d.join("m.txt").exists());
}
