//! Exported models run in tract (an independent ONNX runtime) and agree with
//! strata's own `predict`, on random inputs with a batch of 2 (the batch axis
//! is left symbolic, as exported).

use prost::Message;
use serde_json::json;
use strata_core::{Rng, Tensor};
use strata_nn::model::{model_from_spec, Model};
use strata_onnx::proto::ModelProto;
use strata_onnx::{export_bytes, ExportOptions, OnnxError};
use tract_onnx::prelude::{Framework, InferenceModelExt, TValue};

/// Moves every weight off its initial value (BatchNorm statistics included,
/// variances kept positive; kernels scaled by 1 + 0.2 N(0, 1) so that deep
/// models keep their scale) so that the comparison sees real numbers.
fn perturb(model: &mut Model, seed: u64) {
    let mut rng = Rng::new(seed);
    let names: Vec<String> = model
        .layers()
        .iter()
        .map(|l| l.name().to_string())
        .collect();
    for n in names {
        let layer = model.layer_mut(&n).expect("layer");
        for w in layer.weights_mut() {
            let mut d = w.value.data_mut();
            for v in d.iter_mut() {
                *v = match w.name {
                    "moving_variance" => rng.uniform(0.5, 1.5),
                    "gamma" => rng.uniform(0.5, 1.5),
                    "moving_mean" | "beta" | "bias" | "alpha" => rng.uniform(-0.3, 0.3),
                    _ => *v * (1.0 + 0.2 * rng.normal()),
                };
            }
        }
    }
}

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

    let runnable = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .expect("tract reads the model")
        .into_optimized()
        .expect("tract optimises the model")
        .into_runnable()
        .expect("tract plans the model");
    let inputs: tract_onnx::prelude::TVec<TValue> = xs
        .iter()
        .map(|x| {
            tract_onnx::prelude::Tensor::from_shape(x.shape(), &x.to_vec())
                .unwrap()
                .into()
        })
        .collect();
    let got = runnable.run(inputs).expect("tract runs the model");
    assert_eq!(got.len(), want.len());
    let mut worst = 0.0f32;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.shape(), w.shape(), "output shape");
        let g = g.as_slice::<f32>().unwrap();
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

/// A batch of 2 uniform(-1, 1) samples per model input.
fn random_inputs(model: &Model) -> Vec<Tensor> {
    let mut rng = Rng::new(7);
    model
        .inputs()
        .iter()
        .map(|(_, s)| {
            let mut shape = vec![2];
            shape.extend(s);
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
            Tensor::from_vec(data, &shape).unwrap()
        })
        .collect()
}

fn check(name: &str, model: &mut Model) {
    let rel = agreement(model, 13);
    println!("{name}: max |tract - strata| / max |strata| = {rel:.3e}");
    assert!(rel < 1e-4, "{name}: relative difference {rel}");
}

fn mnist_cnn_model() -> Model {
    let mut m = strata_zoo::mnist_cnn([28, 28, 1], 10, 1).unwrap();
    perturb(&mut m, 1);
    m
}

fn seed_conv_model() -> Model {
    let spec = json!({
      "name": "seed_conv",
      "input_shape": [101, 101, 1],
      "layers": [
        {"type": "Conv2D", "filters": 8, "kernel_size": [11, 11]},
        {"type": "Conv2D", "name": "second", "filters": 16, "kernel_size": 7,
         "strides": 1, "padding": "valid", "activation": "relu"}
      ]
    });
    let mut m = model_from_spec(&spec, 2).unwrap();
    perturb(&mut m, 2);
    m
}

fn blend_head_model() -> Model {
    let spec = json!({
      "name": "blend_head",
      "inputs": {"tokens": [512, 768]},
      "layers": [
        {"name": "start_a", "type": "Dense", "units": 1, "inputs": ["tokens"]},
        {"name": "start_b", "type": "Dense", "units": 1, "inputs": ["tokens"]},
        {"name": "mix", "type": "Blend", "inputs": ["start_a", "start_b"]},
        {"name": "flat", "type": "Reshape", "target_shape": [512], "inputs": ["mix"]},
        {"name": "probs", "type": "Softmax", "inputs": ["flat"]}
      ],
      "outputs": ["probs"]
    });
    let mut m = model_from_spec(&spec, 3).unwrap();
    perturb(&mut m, 3);
    m
}

fn resnet18_model() -> Model {
    let cfg = strata_zoo::ResNetConfig::new(18)
        .classes(10)
        .input_shape([64, 64, 3])
        .seed(4);
    let mut m = strata_zoo::resnet(&cfg).unwrap();
    perturb(&mut m, 4);
    tame_softmax_head(&mut m);
    m
}

/// Scales a deep model's Dense head down until its softmax is far from
/// one-hot (random BatchNorm statistics let the logits grow large), so the
/// comparison sees probabilities that are not all 0 or 1.
fn tame_softmax_head(model: &mut Model) {
    let head = model
        .layers()
        .iter()
        .rev()
        .find(|l| l.class_name() == "Dense")
        .map(|l| l.name().to_string())
        .expect("a Dense head");
    let xs = random_inputs(model);
    for _ in 0..12 {
        let y = model.predict(&xs, 2).unwrap()[0].to_vec();
        if y.iter().all(|p| *p < 0.9) {
            return;
        }
        for w in model.layer_mut(&head).unwrap().weights_mut() {
            for v in w.value.data_mut().iter_mut() {
                *v *= 0.1;
            }
        }
    }
    panic!("could not bring the head's softmax away from one-hot");
}

fn depthwise_model() -> Model {
    let spec = json!({
      "name": "depthwise",
      "input_shape": [15, 13, 3],
      "layers": [
        {"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2,
         "strides": 2, "padding": "same"},
        {"type": "BatchNormalization"},
        {"type": "ReLU", "max_value": 6.0},
        {"type": "GlobalAveragePooling2D"},
        {"type": "Dense", "units": 5, "activation": "softmax"}
      ]
    });
    let mut m = model_from_spec(&spec, 5).unwrap();
    perturb(&mut m, 5);
    m
}

fn pools_model() -> Model {
    let spec = json!({
      "name": "pools",
      "inputs": {"image": [17, 19, 3]},
      "layers": [
        {"name": "pad", "type": "ZeroPadding2D", "padding": [[1, 2], [0, 1]], "inputs": ["image"]},
        {"name": "conv", "type": "Conv2D", "filters": 6, "kernel_size": 3, "strides": 2,
         "padding": "same", "activation": "relu", "inputs": ["pad"]},
        {"name": "max_same", "type": "MaxPooling2D", "pool_size": 3, "strides": 2,
         "padding": "same", "inputs": ["conv"]},
        {"name": "avg_same", "type": "AveragePooling2D", "pool_size": 3, "strides": 2,
         "padding": "same", "inputs": ["conv"]},
        {"name": "max_explicit", "type": "MaxPooling2D", "pool_size": 3, "strides": 2,
         "padding": 1, "inputs": ["conv"]},
        {"name": "avg_explicit", "type": "AveragePooling2D", "pool_size": 3, "strides": 2,
         "padding": [[1, 0], [1, 1]], "inputs": ["conv"]},
        {"name": "sum", "type": "Add", "inputs": ["max_same", "avg_explicit"]},
        {"name": "prod", "type": "Multiply", "inputs": ["max_explicit", "avg_same"]},
        {"name": "wide", "type": "Concatenate", "axis": 2, "inputs": ["sum", "prod"]},
        {"name": "cat", "type": "Concatenate",
         "inputs": ["max_same", "avg_same", "max_explicit", "avg_explicit"]},
        {"name": "gmp", "type": "GlobalMaxPooling2D", "keepdims": true, "inputs": ["cat"]},
        {"name": "gmp_dense", "type": "Dense", "units": 3, "inputs": ["gmp"]},
        {"name": "rows", "type": "Reshape", "target_shape": [-1, 24], "inputs": ["cat"]},
        {"name": "rows_bn", "type": "BatchNormalization", "inputs": ["rows"]},
        {"name": "dense", "type": "Dense", "units": 4, "activation": "tanh", "inputs": ["rows_bn"]},
        {"name": "flat", "type": "Flatten", "inputs": ["dense"]},
        {"name": "drop", "type": "Dropout", "rate": 0.5, "inputs": ["flat"]},
        {"name": "probs", "type": "Softmax", "inputs": ["drop"]}
      ],
      "outputs": ["probs", "wide", "gmp_dense"]
    });
    let mut m = model_from_spec(&spec, 6).unwrap();
    perturb(&mut m, 6);
    m
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
/// NAME.out.OUTPUT.npy) for scripts/check_onnxruntime.py. Without it, nothing.
#[test]
fn dump_for_onnxruntime() {
    let Some(dir) = std::env::var_os("STRATA_ONNX_DUMP") else {
        return;
    };
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

/// Makes one of the test models.
type Builder = fn() -> Model;

/// A float32 little-endian .npy (format 1.0).
fn write_npy(path: &std::path::Path, t: &Tensor) {
    let shape: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    let shape = if shape.len() == 1 {
        format!("({},)", shape[0])
    } else {
        format!("({})", shape.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(t.to_vec().iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
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
