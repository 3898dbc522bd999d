//! Exported models run in tract (an independent ONNX runtime) and agree with
//! strata's own `predict`, on random inputs with a batch of 2 (the batch axis
//! is left symbolic, as exported).

mod common;

use common::{
    blend_head_model, depthwise_model, mnist_cnn_model, pools_model, random_inputs, resnet18_model,
    seed_conv_model, write_npy, Builder,
};
use prost::Message;
use serde_json::json;
use strata_nn::model::{model_from_spec, Model};
use strata_onnx::proto::ModelProto;
use strata_onnx::{export_bytes, ExportOptions, OnnxError};

/// Exports `model`, checks the bytes decode with the same node count, runs
/// both and returns the largest difference relative to the largest output.
fn agreement(model: &mut Model, opset: i64) -> f32 {
    let bytes = export_bytes(model, &ExportOptions { opset }).expect("export");
    let decoded = ModelProto::decode(&bytes[..]).expect("decode");
    let again = strata_onnx::export_model(model, &ExportOptions { opset }).unwrap();
    assert_eq!(
        decoded.graph.as_ref().unwrap().node.len(),
        again.graph.as_ref().unwrap().node.len()
    );
    assert_eq!(decoded, again);

    let xs = random_inputs(model);
    let want = model.predict(&xs, 2).expect("strata predict");

    let got = common::tract_run(&bytes, &xs);
    assert_eq!(got.len(), want.len());
    let mut worst = 0.0f32;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.shape(), "output shape");
        let g = &g.1;
        let w = w.to_vec();
        let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
        let diff = g
            .iter()
            .zip(&w)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        worst = worst.max(diff / scale);
        // A saturated softmax (one-hot) would agree trivially: refuse it.
        let spread = w.iter().fold(0.0f32, |m, v| m.max(v.abs()))
            - w.iter().fold(f32::MAX, |m, v| m.min(v.abs()));
        assert!(spread > 0.0, "constant output");
        if w.iter().all(|v| *v == 0.0 || *v == 1.0) {
            panic!("saturated output: the comparison would be trivial");
        }
    }
    worst
}

fn check(name: &str, model: &mut Model) {
    let rel = agreement(model, 13);
    println!("{name}: max |tract - strata| / max |strata| = {rel:.3e}");
    assert!(rel < 1e-4, "{name}: relative difference {rel}");
}

#[test]
fn mnist_cnn_agrees() {
    check("mnist-cnn", &mut mnist_cnn_model());
}

#[test]
fn seed_conv_spec_agrees() {
    check("seed_conv", &mut seed_conv_model());
}

#[test]
fn blend_head_agrees() {
    let mut m = blend_head_model();
    let p = export_bytes(&m, &ExportOptions::default()).unwrap();
    let graph = ModelProto::decode(&p[..]).unwrap().graph.unwrap();
    assert_eq!(graph.input[0].name, "tokens");
    assert_eq!(graph.output[0].name, "probs");
    check("blend_head", &mut m);
}

#[test]
fn resnet18_agrees() {
    check("resnet18", &mut resnet18_model());
}

#[test]
fn depthwise_model_agrees() {
    check("depthwise", &mut depthwise_model());
}

#[test]
fn pools_padding_concat_reshape_agree() {
    check("pools", &mut pools_model());
}

/// With `STRATA_ONNX_DUMP=DIR`: writes each test model as DIR/NAME.onnx with
/// a random input batch (NAME.in.npy) and strata's outputs (NAME.out.npy,
/// NAME.out.OUTPUT.npy) for scripts/check_onnxruntime.py.
#[test]
#[ignore = "writes files for scripts/check_onnxruntime.py: STRATA_ONNX_DUMP=DIR cargo test -- --ignored dump"]
fn dump_for_onnxruntime() {
    let dir = std::env::var_os("STRATA_ONNX_DUMP")
        .expect("set STRATA_ONNX_DUMP to the folder to write the models into");
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let models: [(&str, Builder); 6] = [
        ("mnist_cnn", mnist_cnn_model),
        ("seed_conv", seed_conv_model),
        ("blend_head", blend_head_model),
        ("resnet18", resnet18_model),
        ("depthwise", depthwise_model),
        ("pools", pools_model),
    ];
    for (name, build) in models {
        let mut m = build();
        let proto = strata_onnx::export_model(&m, &ExportOptions::default()).unwrap();
        std::fs::write(
            dir.join(format!("{name}.onnx")),
            strata_onnx::encode(&proto),
        )
        .unwrap();
        let xs = random_inputs(&m);
        let single = xs.len() == 1;
        for ((input, _), x) in m.inputs().iter().zip(&xs) {
            let file = if single {
                format!("{name}.in.npy")
            } else {
                format!("{name}.in.{input}.npy")
            };
            write_npy(&dir.join(file), x);
        }
        let ys = m.predict(&xs, 2).unwrap();
        let graph = proto.graph.unwrap();
        for (i, (y, out)) in ys.iter().zip(&graph.output).enumerate() {
            let file = if i == 0 {
                format!("{name}.out.npy")
            } else {
                format!("{name}.out.{}.npy", out.name)
            };
            write_npy(&dir.join(file), y);
        }
        println!("wrote {name}");
    }
}

#[test]
fn every_supported_opset_is_accepted_and_runs() {
    let mut m = strata_zoo::mnist_cnn([28, 28, 1], 10, 8).unwrap();
    for opset in [13, 17, 21] {
        let rel = agreement(&mut m, opset);
        assert!(rel < 1e-4, "opset {opset}: {rel}");
    }
    for bad in [12, 22] {
        let e = export_bytes(&m, &ExportOptions { opset: bad }).unwrap_err();
        assert!(matches!(e, OnnxError::Opset(_)), "{e}");
    }
}

#[test]
fn an_unsupported_layer_is_named() {
    let spec = json!({
      "name": "thresholded",
      "input_shape": [4],
      "layers": [
        {"type": "Dense", "units": 3},
        {"name": "odd_relu", "type": "ReLU", "threshold": 0.5}
      ]
    });
    let m = model_from_spec(&spec, 9).unwrap();
    let e = export_bytes(&m, &ExportOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, OnnxError::Unsupported { .. }), "{msg}");
    assert!(msg.contains("odd_relu") && msg.contains("ReLU"), "{msg}");
}

#[test]
fn metadata_carries_version_and_class_names() {
    let mut m = strata_zoo::mnist_cnn([28, 28, 1], 3, 10).unwrap();
    let mut info = m.info().clone();
    info.class_names = vec!["cat".into(), "dog".into(), "bird".into()];
    m.set_info(info);
    let p = strata_onnx::export_model(&m, &ExportOptions::default()).unwrap();
    let get = |k: &str| {
        p.metadata_props
            .iter()
            .find(|e| e.key == k)
            .map(|e| e.value.clone())
    };
    assert_eq!(
        get("strata_version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        get("class_names").as_deref(),
        Some(r#"["cat","dog","bird"]"#)
    );
    assert_eq!(p.opset_import[0].version, 13);
    assert_eq!(p.ir_version, 7);
}
