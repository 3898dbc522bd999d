//! What the ONNX tests share: the test models (weights moved off their
//! initial values), random inputs, tract as an independent runtime, and a
//! .npy writer.

#![allow(dead_code)]

use serde_json::json;
use strata_core::{Rng, Tensor};
use strata_nn::model::{model_from_spec, Model};
use tract_onnx::prelude::{Framework, InferenceModelExt, TValue};

/// Moves every weight off its initial value (BatchNorm statistics included,
/// variances kept positive; kernels scaled by 1 + 0.2 N(0, 1) so that deep
/// models keep their scale) so that the comparison sees real numbers.
pub fn perturb(model: &mut Model, seed: u64) {
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

/// A batch of 2 uniform(-1, 1) samples per model input.
pub fn random_inputs(model: &Model) -> Vec<Tensor> {
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

/// Runs ONNX `bytes` in tract on `xs`; each output's shape and values.
pub fn tract_run(bytes: &[u8], xs: &[Tensor]) -> Vec<(Vec<usize>, Vec<f32>)> {
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
    runnable
        .run(inputs)
        .expect("tract runs the model")
        .iter()
        .map(|t| (t.shape().to_vec(), t.as_slice::<f32>().unwrap().to_vec()))
        .collect()
}

/// The largest |a - b| over the largest |b|.
pub fn relative(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

pub fn mnist_cnn_model() -> Model {
    let mut m = strata_zoo::mnist_cnn([28, 28, 1], 10, 1).unwrap();
    perturb(&mut m, 1);
    m
}

pub fn seed_conv_model() -> Model {
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

pub fn blend_head_model() -> Model {
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

pub fn resnet18_model() -> Model {
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
pub fn tame_softmax_head(model: &mut Model) {
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

pub fn depthwise_model() -> Model {
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

pub fn pools_model() -> Model {
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

/// Makes one of the test models.
pub type Builder = fn() -> Model;

/// A float32 little-endian .npy (format 1.0).
pub fn write_npy(path: &std::path::Path, t: &Tensor) {
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
