//! Valid seed inputs for each target, built in code (the committed corpus
//! adds more), and small encoders the hostile-file tests share.

use std::io::Write;

use flate2::write::GzEncoder;
use strata_core::Tensor;

use crate::targets::Target;

/// An IDX file of unsigned bytes: magic, big-endian dims, payload.
pub fn idx_bytes(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

/// Gzip-compresses `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("writing to a Vec cannot fail");
    e.finish().expect("writing to a Vec cannot fail")
}

/// A `.npy` file (version `major`.0) with a hand-written header dict.
pub fn npy_with_header(major: u8, dict: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.push(major);
    out.push(0);
    let prefix = if major == 1 { 10 } else { 12 };
    let unpadded = prefix + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + pad + 1;
    if major == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// Little-endian f32 bytes.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A safetensors file from a raw JSON header and data, as written (no checks).
pub fn safetensors_raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A valid safetensors file of F32 tensors (name, shape, values).
pub fn safetensors_f32(tensors: &[(&str, &[usize], &[f32])]) -> Vec<u8> {
    let mut header = String::from("{\"__metadata__\":{\"format\":\"strata\"}");
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend_from_slice(&f32_bytes(values));
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            ",\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{start},{}]}}",
            dims.join(","),
            data.len()
        ));
    }
    header.push('}');
    safetensors_raw(&header, &data)
}

/// The weights of the fuzz target's model: `dense` (3 -> 2).
pub fn dense_weights() -> Vec<u8> {
    safetensors_f32(&[
        ("dense.bias", &[2], &[0.5, -0.5]),
        ("dense.kernel", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
    ])
}

/// Spec files covering every layer type the spec reader knows.
pub const SPECS: &[&str] = &[
    r#"{"name": "seed_conv", "input_shape": [12, 12, 1], "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": [3, 3]},
        {"type": "Conv2D", "name": "second", "filters": 4, "kernel_size": 3,
         "strides": 1, "padding": "same", "activation": "relu", "groups": 2},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "BatchNormalization", "momentum": 0.9, "epsilon": 0.001},
        {"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2, "padding": "same"},
        {"type": "AveragePooling2D", "pool_size": [2, 2], "strides": 1, "padding": "valid"},
        {"type": "ZeroPadding2D", "padding": [[1, 0], [0, 1]]},
        {"type": "Flatten"},
        {"type": "Dropout", "rate": 0.25},
        {"type": "Dense", "units": 5, "activation": "softmax"}]}"#,
    r#"{"name": "blend_head", "inputs": {"tokens": [8, 6]}, "layers": [
        {"name": "start_a", "type": "Dense", "units": 1, "inputs": ["tokens"]},
        {"name": "start_b", "type": "Dense", "units": 1, "inputs": ["tokens"]},
        {"name": "mix", "type": "Blend", "inputs": ["start_a", "start_b"]},
        {"name": "flat", "type": "Reshape", "target_shape": [8], "inputs": ["mix"]},
        {"name": "probs", "type": "Softmax", "inputs": ["flat"]}],
      "outputs": ["probs"]}"#,
    r#"{"inputs": {"a": [6, 6, 2], "b": [6, 6, 3]}, "layers": [
        {"name": "cat", "type": "Concatenate", "axis": -1, "inputs": ["a", "b"]},
        {"name": "c1", "type": "Conv2D", "filters": 5, "kernel_size": 1, "inputs": ["cat"]},
        {"name": "c2", "type": "Conv2D", "filters": 5, "kernel_size": 3, "padding": "same",
         "dilation_rate": 2, "inputs": ["cat"]},
        {"name": "sum", "type": "Add", "inputs": ["c1", "c2"]},
        {"name": "prod", "type": "Multiply", "inputs": ["sum", "c1"]},
        {"name": "act", "type": "Activation", "activation": "sigmoid", "inputs": ["prod"]},
        {"name": "r", "type": "ReLU", "max_value": 6.0, "inputs": ["act"]},
        {"name": "gap", "type": "GlobalAveragePooling2D", "inputs": ["r"]},
        {"name": "gmp", "type": "GlobalMaxPooling2D", "keepdims": false, "inputs": ["r"]},
        {"name": "both", "type": "Concatenate", "inputs": ["gap", "gmp"]},
        {"name": "out", "type": "Dense", "units": 3, "use_bias": false,
         "kernel_initializer": "he_normal", "inputs": ["both"]}],
      "outputs": ["out", "gap"]}"#,
    r#"{"input_shape": [4, 6], "layers": [
        {"type": "Dense", "units": 3, "trainable": false},
        {"type": "Reshape", "target_shape": [-1, 2]},
        {"type": "Softmax", "axis": 1}]}"#,
];

/// The built-in seeds of `target`.
pub fn builtin(target: Target) -> Vec<Vec<u8>> {
    match target {
        Target::Idx => {
            let images = idx_bytes(&[2, 3, 3], &(0..18).collect::<Vec<u8>>());
            let labels = idx_bytes(&[4], &[5, 0, 4, 1]);
            vec![gzip(&images), images, gzip(&labels), labels]
        }
        Target::Npy => {
            let t = Tensor::from_vec((0..6).map(|x| x as f32).collect(), &[2, 3])
                .expect("6 values for (2, 3)");
            vec![
                strata_data::npy::npy_bytes_f32(&t),
                strata_data::npy::npy_bytes_i64(&[3, 1, 2], &[3]).expect("3 values for (3,)"),
                npy_with_header(
                    2,
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                    &[0u8; 16],
                ),
                npy_with_header(
                    1,
                    "{'descr': '|b1', 'fortran_order': False, 'shape': (), }",
                    &[1],
                ),
                npy_with_header(
                    1,
                    "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 0, 1), }",
                    &[],
                ),
            ]
        }
        Target::Safetensors => vec![
            dense_weights(),
            safetensors_f32(&[("dense.kernel", &[3, 2], &[0.0; 6])]),
            safetensors_raw(
                "{\"dense.bias\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},\
                 \"dense.kernel\":{\"dtype\":\"BF16\",\"shape\":[3,2],\"data_offsets\":[4,16]}}",
                &[0u8; 16],
            ),
        ],
        Target::Spec => SPECS.iter().map(|s| s.as_bytes().to_vec()).collect(),
        Target::Onnx => onnx_seeds(),
    }
}

/// Small ONNX models: a strata export (NHWC input, Transposes) and an NCHW
/// graph as PyTorch writes one (Conv, BatchNorm, Clip, MaxPool, Flatten,
/// Gemm).
fn onnx_seeds() -> Vec<Vec<u8>> {
    use strata_onnx::build::{attr_int, attr_ints, GraphBuilder};
    let spec = serde_json::json!({
      "input_shape": [6, 5, 2],
      "layers": [
        {"type": "Conv2D", "filters": 3, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "MaxPooling2D"},
        {"type": "Flatten"},
        {"type": "Dense", "units": 2, "activation": "softmax"}]
    });
    let model = strata_nn::model::model_from_spec(&spec, 0).expect("the seed spec builds");
    let exported = strata_onnx::export_bytes(&model, &strata_onnx::ExportOptions::default())
        .expect("the seed model exports");
    let mut g = GraphBuilder::new("nchw");
    g.input("x", &[2, 6, 5]);
    g.init("w", &[4, 2, 3, 3], &[0.1; 72])
        .init("b", &[4], &[0.0; 4])
        .init("gamma", &[4], &[1.0; 4])
        .init("beta", &[4], &[0.0; 4])
        .init("mean", &[4], &[0.0; 4])
        .init("var", &[4], &[1.0; 4])
        .init("lo", &[], &[0.0])
        .init("hi", &[], &[6.0])
        .init("fc", &[3, 24], &[0.05; 72])
        .init("fb", &[3], &[0.0; 3]);
    g.node(
        "Conv",
        &["x", "w", "b"],
        &["c"],
        vec![attr_ints("pads", vec![1, 1, 1, 1])],
    )
    .node(
        "BatchNormalization",
        &["c", "gamma", "beta", "mean", "var"],
        &["n"],
        vec![],
    )
    .node("Clip", &["n", "lo", "hi"], &["r"], vec![])
    .node(
        "MaxPool",
        &["r"],
        &["p"],
        vec![
            attr_ints("kernel_shape", vec![2, 2]),
            attr_ints("strides", vec![2, 2]),
        ],
    )
    .node("Flatten", &["p"], &["f"], vec![attr_int("axis", 1)])
    .node(
        "Gemm",
        &["f", "fc", "fb"],
        &["y"],
        vec![attr_int("transB", 1)],
    )
    .output("y");
    vec![exported, g.bytes(17)]
}
