//! The fuzz targets: bytes in, one in-memory parser (and what strata does
//! right after parsing) run, accepted or rejected out. A panic is the bug.

use std::path::Path;

use serde_json::Value;
use strata_core::Tensor;
use strata_nn::layers::Dense;
use strata_nn::model::{model_from_spec, parse_safetensors};
use strata_nn::Model;

/// Which parser a fuzz input goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// IDX files, raw or gzipped (`strata_data::idx::decode_idx`), and
    /// SHA256SUMS text.
    Idx,
    /// `.npy` files (`strata_data::read_npy_bytes`).
    Npy,
    /// safetensors weights (`parse_safetensors`), then loaded into a model.
    Safetensors,
    /// Model spec JSON (`model_from_spec`), then summarised, round-tripped
    /// and, when small, run on one sample.
    Spec,
    /// ONNX models (`strata_onnx::import_bytes`), then, when small, run on
    /// one sample, exported and imported again.
    Onnx,
}

impl Target {
    pub const ALL: [Target; 5] = [
        Target::Idx,
        Target::Npy,
        Target::Safetensors,
        Target::Spec,
        Target::Onnx,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Idx => "idx",
            Target::Npy => "npy",
            Target::Safetensors => "safetensors",
            Target::Spec => "spec",
            Target::Onnx => "onnx",
        }
    }

    pub fn from_name(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// Runs `bytes` through `target`: true when accepted, false when rejected
/// with an error. Panics (the bugs) propagate to the caller.
pub fn run_target(target: Target, bytes: &[u8]) -> bool {
    match target {
        Target::Idx => run_idx(bytes),
        Target::Npy => run_npy(bytes),
        Target::Safetensors => run_safetensors(bytes),
        Target::Spec => run_spec(bytes),
        Target::Onnx => run_onnx(bytes),
    }
}

/// Every error message must name what it is about: the checks below insist
/// that it is non-empty and mentions the input's name where one is given.
fn check_message(msg: &str, name: &str) {
    assert!(
        !msg.is_empty() && msg.contains(name),
        "error message does not name '{name}': {msg}"
    );
}

fn run_idx(bytes: &[u8]) -> bool {
    let name = "fuzz.idx";
    let text = String::from_utf8_lossy(bytes);
    if let Err(e) = strata_data::Sha256Sums::parse("SUMS", &text) {
        check_message(&e.to_string(), "SUMS");
    }
    let sums = strata_data::Sha256Sums::parse(
        "SUMS",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  fuzz-idx1-ubyte\n",
    )
    .expect("valid SHA256SUMS line");
    let _ = strata_data::idx::decode_idx(name, bytes.to_vec(), Some((&sums, "fuzz-idx1-ubyte")));
    match strata_data::idx::decode_idx(name, bytes.to_vec(), None) {
        Ok(a) => {
            let n: usize = a.dims().iter().product();
            assert_eq!(n, a.data().len(), "dims and payload disagree");
            true
        }
        Err(e) => {
            check_message(&e.to_string(), name);
            false
        }
    }
}

fn run_npy(bytes: &[u8]) -> bool {
    let name = "fuzz.npy";
    match strata_data::read_npy_bytes(name, bytes) {
        Ok(a) => {
            let n: usize = a.shape().iter().product();
            assert_eq!(n, a.len(), "shape and values disagree");
            let t = a
                .to_tensor()
                .expect("an accepted array converts to a tensor");
            assert_eq!(t.shape(), a.shape());
            let _ = a.to_labels();
            true
        }
        Err(e) => {
            check_message(&e.to_string(), name);
            false
        }
    }
}

/// The model the fuzzed weights are loaded into: `dense` (3 -> 2), the
/// names and shapes of the seed files.
fn weights_model() -> Model {
    let mut m = Model::sequential("fuzz", &[3], 0);
    m.add(Dense::new(2)).expect("a 3 -> 2 Dense builds");
    m
}

fn run_safetensors(bytes: &[u8]) -> bool {
    let path = Path::new("fuzz.safetensors");
    match parse_safetensors(path, bytes) {
        Ok((tensors, _meta)) => {
            for (name, shape, values) in &tensors {
                let n = shape
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .expect("accepted shape overflows");
                assert_eq!(n, values.len(), "{name}: shape and values disagree");
            }
            let mut m = weights_model();
            match m.set_weight_tensors(path, tensors) {
                Ok(_warnings) => true,
                Err(e) => {
                    check_message(&e.to_string(), "fuzz.safetensors");
                    false
                }
            }
        }
        Err(e) => {
            check_message(&e.to_string(), "fuzz.safetensors");
            false
        }
    }
}

/// A rough bound on the work and memory of one forward pass on one sample
/// (output elements times the layer's weights and window), saturating.
fn forward_cost(m: &Model) -> u128 {
    let mut cost: u128 = 0;
    for (_, s) in m.inputs() {
        cost = cost.saturating_add(s.iter().fold(1u128, |a, &d| a.saturating_mul(d as u128)));
    }
    for node in m.nodes() {
        let out = node
            .output_shape
            .iter()
            .fold(1u128, |a, &d| a.saturating_mul(d as u128));
        let layer = &m.layers()[node.layer];
        let config = layer.config();
        let window = ["pool_size", "kernel_size"]
            .iter()
            .filter_map(|k| config.get(*k))
            .filter_map(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64())
                    .fold(1u128, |p, x| p.saturating_mul(x as u128))
            })
            .max()
            .unwrap_or(1);
        let per = (layer.param_count() as u128)
            .saturating_add(1)
            .saturating_add(window);
        cost = cost.saturating_add(out.saturating_mul(per));
    }
    cost
}

/// True when the document holds a number in (256, 2^24]: sizes strata
/// accepts but that make models of up to a GiB, slow to fill with random
/// weights. The fuzzer skips them to keep its speed; numbers above 2^24
/// (refused by the spec reader) still go through.
fn has_slow_size(v: &Value) -> bool {
    match v {
        Value::Number(n) => n
            .as_f64()
            .map(|f| f.abs() > 256.0 && f.abs() <= (1u64 << 24) as f64)
            .unwrap_or(false),
        Value::Array(a) => a.iter().any(has_slow_size),
        Value::Object(o) => o.values().any(has_slow_size),
        _ => false,
    }
}

fn run_spec(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    if text.len() > 16 * 1024 || has_slow_size(&v) {
        return false;
    }
    let mut m = match model_from_spec(&v, 0) {
        Ok(m) => m,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return false;
        }
    };
    let _ = m.summary();
    // what strata writes, strata reads back, to the same model
    let spec = m.to_spec();
    let again = model_from_spec(&spec, 0)
        .unwrap_or_else(|e| panic!("to_spec gave a spec model_from_spec refuses: {e}\n{spec}"));
    assert_eq!(
        again.count_params(),
        m.count_params(),
        "round trip changed the params"
    );
    assert_eq!(
        again.output_shapes(),
        m.output_shapes(),
        "round trip changed the shapes"
    );
    // small models run on one sample: build's shapes must be forward's shapes
    if forward_cost(&m) <= 1 << 26 {
        let xs: Vec<Tensor> = m
            .inputs()
            .iter()
            .map(|(_, s)| {
                let mut shape = vec![1];
                shape.extend_from_slice(s);
                Tensor::full(&shape, 0.5)
            })
            .collect();
        let expected = m.output_shapes();
        match m.forward(&xs, false) {
            Ok(ys) => {
                for (y, s) in ys.iter().zip(&expected) {
                    assert_eq!(
                        &y.shape()[1..],
                        &s[..],
                        "forward shape differs from build's"
                    );
                }
            }
            Err(e) => panic!("build accepted the model but forward failed: {e}\n{spec}"),
        }
    }
    true
}

fn run_onnx(bytes: &[u8]) -> bool {
    match strata_onnx::import_bytes(bytes) {
        Ok(imported) => {
            let mut m = imported.model;
            if forward_cost(&m) < 1 << 22 {
                let xs: Vec<Tensor> = m
                    .inputs()
                    .iter()
                    .map(|(_, s)| {
                        let mut shape = vec![1];
                        shape.extend(s);
                        Tensor::zeros(&shape)
                    })
                    .collect();
                let _ = m.predict(&xs, 1);
            }
            let again = strata_onnx::export_bytes(&m, &strata_onnx::ExportOptions::default());
            if let Ok(b) = again {
                strata_onnx::import_bytes(&b).expect("an exported import imports again");
            }
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty error message");
            false
        }
    }
}
