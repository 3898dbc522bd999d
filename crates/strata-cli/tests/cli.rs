//! The `strata` command end to end: summaries and explanations with the seed
//! numbers, the CONTRACT training command against Keras's weights, predict,
//! filters and plot files, and one-line errors.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::strata;

use serde_json::Value;

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The shared Keras fixtures (a missing folder fails the test).
fn fixtures() -> Option<PathBuf> {
    strata_core::fixtures::shared_fixtures(env!("CARGO_MANIFEST_DIR"))
}

const SEED_SPEC: &str = r#"{"name": "seed_conv", "input_shape": [101, 101, 1], "layers": [
  {"type": "Conv2D", "filters": 8, "kernel_size": [11, 11]},
  {"type": "Conv2D", "filters": 16, "kernel_size": [7, 7]}]}"#;

#[test]
fn summary_and_explain_of_the_seed_conv_model() {
    let d = tmp("seed");
    std::fs::write(d.join("seed.json"), SEED_SPEC).unwrap();
    let table = ok(&strata(&["summary", "seed.json"], &d));
    assert!(
        table.contains("conv2d (Conv2D)")
            && table.contains("(None, 91, 91, 8)")
            && table.contains("976"),
        "{table}"
    );
    assert!(
        table.contains("conv2d_1 (Conv2D)")
            && table.contains("(None, 85, 85, 16)")
            && table.contains("6,288"),
        "{table}"
    );
    assert!(table.contains("Total params: 7,264"), "{table}");
    let j: Value =
        serde_json::from_str(&ok(&strata(&["summary", "seed.json", "--json"], &d))).unwrap();
    assert_eq!(j["layers"][1]["weights"][0]["name"], "conv2d_1.kernel");
    assert_eq!(
        j["layers"][1]["weights"][0]["shape"],
        serde_json::json!([7, 7, 8, 16])
    );
    assert_eq!(j["total_params"], 7264);
    if let Some(f) = fixtures() {
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(f.join("seed_models/expected_summary.json")).unwrap(),
        )
        .unwrap();
        for k in ["total_params", "trainable_params", "non_trainable_params"] {
            assert_eq!(j[k], want[k]);
        }
        for (a, b) in j["layers"]
            .as_array()
            .unwrap()
            .iter()
            .zip(want["layers"].as_array().unwrap())
        {
            assert_eq!(a["output_shape"], b["output_shape"]);
            assert_eq!(a["params"], b["params"]);
        }
    }
    let e = ok(&strata(
        &["explain", "seed.json", "--layer", "conv2d_1"],
        &d,
    ));
    assert!(
        e.contains("16 kernels, each 7x7x8 (a kernel spans all 8 input channels)"),
        "{e}"
    );
    assert!(e.contains("stored as (7, 7, 8, 16)"), "{e}");
    assert!(
        e.contains("each output value sees 7*7*8 = 392 inputs"),
        "{e}"
    );
    assert!(e.contains("params: 7*7*8*16 + 16 = 6,288"), "{e}");
    let ej: Value =
        serde_json::from_str(&ok(&strata(&["explain", "seed.json", "--json"], &d))).unwrap();
    assert_eq!(ej[0]["params"], "11*11*1*8 + 8 = 976");
}

#[test]
fn explain_resnet50_with_a_three_class_head() {
    let d = tmp("r50");
    let e = ok(&strata(
        &["explain", "resnet50", "--classes", "3", "--layer", "fc"],
        &d,
    ));
    assert!(e.contains("y = softmax(x · W + b)"), "{e}");
    assert!(
        e.contains("x (None, 2048) · W (2048, 3) + b (3,) -> (None, 3)"),
        "{e}"
    );
    assert!(e.contains("2048*3 + 3 = 6,147"), "{e}");
    let gap = ok(&strata(
        &[
            "explain",
            "resnet50",
            "--classes",
            "3",
            "--layer",
            "avgpool",
        ],
        &d,
    ));
    assert!(
        gap.contains("mean over height and width per channel")
            && gap.contains("(None, 7, 7, 2048) -> (None, 2048)"),
        "{gap}"
    );
    let one = ok(&strata(
        &[
            "explain",
            "resnet50",
            "--classes",
            "3",
            "--layer",
            "layer1.0.conv1",
        ],
        &d,
    ));
    assert!(
        one.contains(
            "a 1x1 convolution is a Dense layer applied to the 64-channel vector of every pixel"
        ),
        "{one}"
    );
    let s: Value = serde_json::from_str(&ok(&strata(
        &["summary", "resnet50", "--classes", "3", "--json"],
        &d,
    )))
    .unwrap();
    assert_eq!(
        (
            s["total_params"].as_u64(),
            s["trainable_params"].as_u64(),
            s["non_trainable_params"].as_u64()
        ),
        (Some(23_567_299), Some(23_514_179), Some(53_120))
    );
}

#[test]
fn contract_training_command_gives_kerass_sgd_step_then_predict() {
    let Some(f) = fixtures() else { return };
    let t = f.join("models/mnist_tiny");
    let d = tmp("train");
    let p = |n: &str| t.join(n).display().to_string();
    let out = ok(&strata(
        &[
            "train",
            &p("spec.json"),
            "--weights",
            &p("init.safetensors"),
            "--data",
            &p("x.npy"),
            "--labels",
            &p("y.npy"),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--optimizer",
            "sgd",
            "--lr",
            "0.1",
            "--loss",
            "sparse_categorical_crossentropy",
            "--no-shuffle",
            "--save",
            "out.safetensors",
            "--quiet",
        ],
        &d,
    ));
    assert!(out.contains("saved out.safetensors"), "{out}");
    let (got, meta) = strata_nn_read(&d.join("out.safetensors"));
    assert!(meta.contains_key("spec"));
    let (want, _) = strata_nn_read(&t.join("after_sgd.safetensors"));
    for (name, shape, values) in want {
        let (_, s, v) = got.iter().find(|(n, _, _)| *n == name).unwrap();
        assert_eq!(*s, shape);
        for (a, b) in v.iter().zip(&values) {
            assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{name}: {a} vs {b}");
        }
    }
    for side in [
        "out.spec.json",
        "out.history.json",
        "out.curves.png",
        "out.filters.png",
    ] {
        assert!(d.join(side).is_file(), "{side} missing");
    }
    // the saved file is a model on its own: predict with it, no spec needed
    ok(&strata(
        &[
            "predict",
            "out.safetensors",
            "--input",
            &p("x.npy"),
            "--output",
            "y.npy",
        ],
        &d,
    ));
    let y = strata_data::read_npy(d.join("y.npy")).unwrap();
    assert_eq!(y.shape(), &[4, 3]);
    let sums: Vec<f32> = y.to_f32().chunks(3).map(|r| r.iter().sum()).collect();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
    // filters: 4 kernels 3x3x1 at 8 px -> 2x2 grid of 24x24 tiles with 1-px gaps
    ok(&strata(
        &["filters", "out.safetensors", "--output", "f.png"],
        &d,
    ));
    let img = image::open(d.join("f.png")).unwrap();
    assert_eq!((img.width(), img.height()), (2 * 25 + 1, 2 * 25 + 1));
    ok(&strata(
        &["plot", "out.history.json", "--output", "c.png"],
        &d,
    ));
    assert!(image::open(d.join("c.png")).unwrap().width() >= 360);
    let ev = ok(&strata(
        &[
            "evaluate",
            "out.safetensors",
            "--weights",
            "out.safetensors",
            "--data",
            &p("x.npy"),
            "--labels",
            &p("y.npy"),
        ],
        &d,
    ));
    assert!(ev.contains("4 samples - accuracy:"), "{ev}");
}

fn strata_nn_read(
    p: &Path,
) -> (
    Vec<strata_nn::model::NamedTensor>,
    std::collections::HashMap<String, String>,
) {
    strata_nn::model::read_safetensors(p).unwrap()
}

#[test]
fn bad_input_is_one_error_line_and_a_non_zero_exit() {
    let d = tmp("errors");
    std::fs::write(
        d.join("bad.json"),
        r#"{"input_shape": [4], "layers": [{"type": "Dense", "units": 0}]}"#,
    )
    .unwrap();
    std::fs::write(d.join("garbage.safetensors"), b"not a weights file").unwrap();
    for args in [
        vec!["summary", "no-such-model"],
        vec!["summary", "bad.json"],
        vec!["summary", "resnet50", "--input-shape", "1,2"],
        vec!["train", "mnist-cnn", "--batch-size", "0"],
        vec!["train", "mnist-cnn", "--data", "nowhere.npy"],
        vec![
            "predict",
            "mnist-cnn",
            "--weights",
            "garbage.safetensors",
            "--input",
            "x.npy",
            "--output",
            "y.npy",
        ],
        vec!["explain", "mnist-cnn", "--layer", "nope"],
        vec!["plot", "missing.json", "--output", "x.png"],
        vec!["train", "mnist-cnn", "--optimizer", "lbfgs"],
    ] {
        let o = strata(&args, &d);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn plot_of_one_epoch_and_colour_filters_of_resnet18() {
    let d = tmp("pictures");
    std::fs::write(
        d.join("h.json"),
        r#"{"epoch": [0], "history": {"loss": [0.69], "val_loss": [0.45],
            "accuracy": [0.78], "val_accuracy": [0.87], "learning_rate": [0.001]}}"#,
    )
    .unwrap();
    ok(&strata(&["plot", "h.json", "--output", "c.png"], &d));
    let img = image::open(d.join("c.png")).unwrap().to_rgb8();
    // loss and accuracy panels (no learning_rate panel), a dot of each colour in
    // both, in the middle of the plot area (the legend is in a right-hand corner)
    assert_eq!(img.dimensions(), (960, 360));
    for half in [230..320, 710..800] {
        for c in [[31u8, 119, 180], [255, 127, 14]] {
            let n = img
                .enumerate_pixels()
                .filter(|(x, _, p)| {
                    half.contains(x) && p.0.iter().zip(c).all(|(&a, b)| a.abs_diff(b) <= 30)
                })
                .count();
            assert!(n >= 20, "{half:?}: {n} pixels of {c:?}");
        }
    }
    ok(&strata(
        &[
            "filters",
            "resnet18",
            "--random-weights",
            "--output",
            "f.png",
        ],
        &d,
    ));
    let img = image::open(d.join("f.png")).unwrap().to_rgb8();
    // 64 filters 7x7x3 at 8 px: 8x8 colour tiles of 56 px with 1-px separators
    assert_eq!(img.dimensions(), (8 * 57 + 1, 8 * 57 + 1));
    assert!(img.pixels().filter(|p| p[0] != p[1]).count() > 457 * 457 / 2);
}

#[test]
fn graph_draws_the_blend_head_and_resnet18_as_svg() {
    let d = tmp("graph");
    std::fs::write(
        d.join("blend.json"),
        r#"{"name": "blend_head", "inputs": {"tokens": [512, 768]}, "layers": [
  {"name": "start_a", "type": "Dense", "units": 1, "inputs": ["tokens"]},
  {"name": "start_b", "type": "Dense", "units": 1, "inputs": ["tokens"]},
  {"name": "mix", "type": "Blend", "inputs": ["start_a", "start_b"]},
  {"name": "flat", "type": "Reshape", "target_shape": [512], "inputs": ["mix"]},
  {"name": "probs", "type": "Softmax", "inputs": ["flat"]}],
  "outputs": ["probs"]}"#,
    )
    .unwrap();
    let o = strata(&["graph", "blend.json", "--output", "g.svg"], &d);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("wrote g.svg (5 layers)"), "{err}");
    let svg = std::fs::read_to_string(d.join("g.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    for name in ["tokens", "start_a", "start_b", "mix", "flat", "probs"] {
        assert!(svg.contains(&format!(">{name}</tspan>")), "{name}: {svg}");
    }
    assert_eq!(svg.matches("<rect").count(), 6);
    assert_eq!(svg.matches("<path").count(), 6);

    ok(&strata(&["graph", "resnet18", "--output", "r.svg"], &d));
    let svg = std::fs::read_to_string(d.join("r.svg")).unwrap();
    assert!(svg.contains(">layer4.1.conv2</tspan>"));
    // every residual Add joins two arrows: the block's path and its shortcut
    for b in ["layer1.0", "layer2.0", "layer4.1"] {
        let n = svg.matches(&format!("data-to=\"{b}.add\"")).count();
        assert_eq!(n, 2, "{b}.add");
    }

    let o = strata(&["graph", "blend.json", "--output", "g.png"], &d);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: graph: ") && err.contains(".svg"),
        "{err}"
    );
    assert!(!d.join("g.png").exists());
}

#[test]
fn export_writes_onnx_and_refuses_what_it_cannot() {
    let d = tmp("export");
    std::fs::write(d.join("seed.json"), SEED_SPEC).unwrap();
    ok(&strata(
        &[
            "export",
            "seed.json",
            "--random-weights",
            "--output",
            "seed.onnx",
        ],
        &d,
    ));
    let bytes = std::fs::read(d.join("seed.onnx")).unwrap();
    assert!(bytes.len() > 8 * 11 * 11 * 4, "the kernels are in the file");
    assert!(bytes.windows(4).any(|w| w == b"Conv"), "a Conv node");
    for (args, name) in [
        (
            vec!["export", "seed.json", "--output", "x.onnx"],
            "--weights",
        ),
        (
            vec![
                "export",
                "seed.json",
                "--random-weights",
                "--output",
                "x.pb",
            ],
            "x.pb",
        ),
        (
            vec![
                "export",
                "seed.json",
                "--random-weights",
                "--opset",
                "9",
                "--output",
                "x.onnx",
            ],
            "opset",
        ),
    ] {
        let o = strata(&args, &d);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(name), "{err}");
        assert!(!d.join("x.onnx").exists() && !d.join("x.pb").exists());
    }
}
