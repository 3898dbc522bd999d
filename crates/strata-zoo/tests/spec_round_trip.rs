//! Every zoo model, and a model using every layer with non-default options,
//! goes spec -> model -> spec unchanged, and a saved model file builds back
//! from its own metadata with the same weights.

use serde_json::{json, Value};
use strata_nn::model::{model_from_spec, read_safetensors};
use strata_nn::Model;
use strata_zoo::ZooOptions;

fn tmp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("strata-rt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(format!("{tag}.safetensors"))
}

/// spec -> model -> spec is the identity, and a saved file loads back bitwise.
fn assert_round_trip(model: &Model, tag: &str) {
    let spec = model.to_spec();
    let rebuilt = model_from_spec(&spec, 7).unwrap_or_else(|e| panic!("{tag}: {e}\n{spec}"));
    assert_eq!(
        rebuilt.to_spec(),
        spec,
        "{tag}: the spec changed on the way"
    );

    let path = tmp(tag);
    model.save_weights(&path).unwrap();
    let (_, meta) = read_safetensors(&path).unwrap();
    let saved: Value = serde_json::from_str(&meta["spec"]).unwrap();
    let mut loaded = model_from_spec(&saved, 99).unwrap_or_else(|e| panic!("{tag}: {e}"));
    loaded.load_weights(&path).unwrap();
    let a = model.weight_tensors();
    let b = loaded.weight_tensors();
    assert_eq!(a.len(), b.len(), "{tag}");
    for ((na, sa, va), (nb, sb, vb)) in a.iter().zip(&b) {
        assert_eq!((na, sa), (nb, sb), "{tag}");
        assert!(
            va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{tag}: {na} differs after loading"
        );
    }
    std::fs::remove_file(&path).ok();
}

#[test]
fn every_zoo_model_round_trips() {
    for name in strata_zoo::names() {
        let opts = if name.starts_with("resnet") {
            ZooOptions {
                classes: Some(3),
                input_shape: Some([32, 32, 3]),
                seed: 1,
            }
        } else {
            ZooOptions {
                seed: 1,
                ..Default::default()
            }
        };
        let m = strata_zoo::build(name, &opts).unwrap();
        assert_round_trip(&m, name);
    }
}

#[test]
fn a_frozen_backbone_round_trips() {
    let opts = ZooOptions {
        classes: Some(2),
        input_shape: Some([32, 32, 3]),
        seed: 3,
    };
    let mut m = strata_zoo::build("resnet18", &opts).unwrap();
    strata_zoo::freeze_backbone(&mut m).unwrap();
    assert_round_trip(&m, "resnet18-frozen");
}

#[test]
fn every_layer_option_round_trips() {
    let seq = json!({
        "name": "every_option",
        "input_shape": [20, 20, 3],
        "layers": [
            {"type": "ZeroPadding2D", "padding": [[1, 2], [0, 3]]},
            {"type": "Conv2D", "name": "c_explicit", "filters": 4, "kernel_size": [3, 2],
             "strides": [2, 1], "padding": [[1, 0], [2, 1]], "activation": "relu",
             "use_bias": false, "kernel_initializer": "he_normal", "trainable": false},
            {"type": "Conv2D", "filters": 6, "kernel_size": 3, "padding": "same",
             "dilation_rate": 2, "groups": 2, "bias_initializer": "ones"},
            {"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2,
             "padding": [1, 1], "activation": "tanh", "use_bias": false},
            {"type": "BatchNormalization", "momentum": 0.9, "epsilon": 0.0001,
             "center": false, "scale": false},
            {"type": "ReLU", "max_value": 6.0, "negative_slope": 0.1, "threshold": 0.5},
            {"type": "MaxPooling2D", "pool_size": 3, "strides": 2, "padding": [[1, 1], [1, 1]]},
            {"type": "AveragePooling2D", "pool_size": [2, 1], "padding": "same"},
            {"type": "Activation", "activation": "sigmoid"},
            {"type": "Dropout", "rate": 0.25},
            {"type": "Flatten"},
            {"type": "Dense", "units": 12, "activation": "relu", "use_bias": false,
             "kernel_initializer": "glorot_normal"},
            {"type": "Reshape", "target_shape": [3, -1]},
            {"type": "Softmax", "axis": 1}
        ]
    });
    let m = model_from_spec(&seq, 1).unwrap();
    assert_round_trip(&m, "sequential");

    let graph = json!({
        "name": "graph_options",
        "inputs": {"a": [8, 8, 2], "b": [8, 8, 2]},
        "layers": [
            {"name": "sum", "type": "Add", "inputs": ["a", "b"]},
            {"name": "prod", "type": "Multiply", "inputs": ["a", "b"]},
            {"name": "mix", "type": "Blend", "inputs": ["sum", "prod"]},
            {"name": "cat", "type": "Concatenate", "axis": -1, "inputs": ["mix", "a"]},
            {"name": "gap", "type": "GlobalAveragePooling2D", "keepdims": true, "inputs": ["cat"]},
            {"name": "gmp", "type": "GlobalMaxPooling2D", "inputs": ["cat"]},
            {"name": "head", "type": "Dense", "units": 3, "inputs": ["gmp"]}
        ],
        "outputs": ["head", "gap"]
    });
    let m = model_from_spec(&graph, 1).unwrap();
    assert_round_trip(&m, "graph");
}
