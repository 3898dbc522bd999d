//! Whole models against Keras: the seed question's conv model, the blend head,
//! and one SGD / one Adam training step of a tiny MNIST convnet through `fit`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use strata_core::{Rng, Tensor};
use strata_data::read_npy;
use strata_nn::layers::{Blend, Dense, Reshape, Softmax};
use strata_nn::model::{model_from_spec, model_from_spec_file, read_safetensors};
use strata_nn::{FitConfig, Loss, Metric, Model, Optimizer, Targets, Verbosity};

/// The shared Keras fixtures (a missing folder fails the test).
fn fixtures() -> Option<PathBuf> {
    strata_core::fixtures::shared_fixtures(env!("CARGO_MANIFEST_DIR"))
}

fn npy(p: &Path) -> Tensor {
    read_npy(p).unwrap().to_tensor().unwrap()
}

/// Our summary JSON agrees with Keras's on every field Keras reports.
fn assert_summary_matches(model: &Model, expected: &Value) {
    let got = model.summary_json();
    for key in ["total_params", "trainable_params", "non_trainable_params"] {
        assert_eq!(got[key], expected[key], "{key}");
    }
    let (g, e) = (
        got["layers"].as_array().unwrap(),
        expected["layers"].as_array().unwrap(),
    );
    assert_eq!(g.len(), e.len());
    for (gl, el) in g.iter().zip(e) {
        for key in ["name", "type", "output_shape", "params", "trainable"] {
            assert_eq!(gl[key], el[key], "{} {key}", el["name"]);
        }
        let gw: Vec<(Value, Value)> = gl["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["keras_name"].clone(), w["shape"].clone()))
            .collect();
        let ew: Vec<(Value, Value)> = el["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["name"].clone(), w["shape"].clone()))
            .collect();
        assert_eq!(gw, ew, "{} weights", el["name"]);
        for w in gl["weights"].as_array().unwrap() {
            assert!(w["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}.", gl["name"].as_str().unwrap())));
        }
    }
}

#[test]
fn seed_question_conv_model() {
    let spec = json!({"name": "seed_conv", "input_shape": [101, 101, 1], "layers": [
        {"type": "Conv2D", "filters": 8, "kernel_size": [11, 11]},
        {"type": "Conv2D", "filters": 16, "kernel_size": [7, 7]}]});
    let m = model_from_spec(&spec, 0).unwrap();
    let w: Vec<(String, Vec<usize>)> = m
        .named_weights()
        .into_iter()
        .map(|(n, w)| (n, w.shape().to_vec()))
        .collect();
    assert_eq!(
        w,
        vec![
            ("conv2d.kernel".to_string(), vec![11, 11, 1, 8]),
            ("conv2d.bias".to_string(), vec![8]),
            ("conv2d_1.kernel".to_string(), vec![7, 7, 8, 16]),
            ("conv2d_1.bias".to_string(), vec![16]),
        ]
    );
    let s = m.summary();
    assert_eq!(s.layers[0].output_shape, json!([null, 91, 91, 8]));
    assert_eq!(s.layers[1].output_shape, json!([null, 85, 85, 16]));
    assert_eq!(
        (s.layers[0].params, s.layers[1].params, s.total_params),
        (976, 6288, 7264)
    );
    assert!(m.summary_table().contains("Total params: 7,264"));
    if let Some(dir) = fixtures() {
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("seed_models/expected_summary.json")).unwrap(),
        )
        .unwrap();
        assert_summary_matches(&m, &expected);
    }
}

#[test]
fn blend_head_small_matches_keras() {
    let Some(dir) = fixtures() else { return };
    let d = dir.join("seed_models");
    let mut m = model_from_spec_file(d.join("blend_head_small.json"), 0).unwrap();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("blend_head_small/expected_summary.json")).unwrap(),
    )
    .unwrap();
    assert_summary_matches(&m, &expected);
    m.load_weights(d.join("blend_head_small/weights.safetensors"))
        .unwrap();
    let y = m
        .predict(&[npy(&d.join("blend_head_small/input.npy"))], 32)
        .unwrap()
        .remove(0);
    let want = npy(&d.join("blend_head_small/expected.npy"));
    assert!(y.allclose(&want, 1e-4, 1e-5), "{y} vs {want}");
}

fn mnist_tiny(dir: &Path) -> (Model, Tensor, Targets) {
    let d = dir.join("models/mnist_tiny");
    let mut m = model_from_spec_file(d.join("spec.json"), 0).unwrap();
    m.load_weights(d.join("init.safetensors")).unwrap();
    let x = npy(&d.join("x.npy"));
    let y = read_npy(d.join("y.npy")).unwrap();
    let labels = y.to_f32().iter().map(|&v| v as usize).collect();
    (m, x, Targets::Classes(labels))
}

fn assert_weights(m: &Model, file: &Path) {
    let (want, _) = read_safetensors(file).unwrap();
    let got = m.weight_tensors();
    for (name, shape, values) in want {
        let (_, s, v) = got
            .iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("no weight {name}"));
        assert_eq!(*s, shape);
        for (a, b) in v.iter().zip(&values) {
            assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{name}: {a} vs {b}");
        }
    }
}

#[test]
fn mnist_tiny_forward_loss_gradients_and_one_step_through_fit() {
    let Some(dir) = fixtures() else { return };
    let d = dir.join("models/mnist_tiny");
    let case: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("case.json")).unwrap()).unwrap();
    let (mut m, x, y) = mnist_tiny(&dir);
    let pred = m.predict(std::slice::from_ref(&x), 4).unwrap().remove(0);
    assert!(pred.allclose(&npy(&d.join("y_pred.npy")), 1e-4, 1e-5));

    m.compile(
        Loss::from_name("sparse_categorical_crossentropy").unwrap(),
        Optimizer::sgd(0.0, 0.0, false),
        &[],
    );
    let (loss, _) = m.train_step(std::slice::from_ref(&x), &y, None).unwrap();
    assert!((loss - case["loss_at_init"].as_f64().unwrap() as f32).abs() < 1e-5);
    let (grads, _) = read_safetensors(d.join("grads_init.safetensors")).unwrap();
    for p in m.trainable_params() {
        let (_, _, want) = grads.iter().find(|(n, _, _)| *n == p.name).unwrap();
        let got = p.value.grad().unwrap().to_vec();
        for (a, b) in got.iter().zip(want) {
            assert!(
                (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
                "{}: {a} vs {b}",
                p.name
            );
        }
    }

    for (opt, file) in [
        (Optimizer::sgd(0.1, 0.0, false), "after_sgd.safetensors"),
        (Optimizer::adam(0.01), "after_adam.safetensors"),
    ] {
        let (mut m, x, y) = mnist_tiny(&dir);
        m.compile(
            Loss::from_name("sparse_categorical_crossentropy").unwrap(),
            opt,
            &[Metric::Accuracy],
        );
        let cfg = FitConfig {
            epochs: 1,
            batch_size: 4,
            shuffle: false,
            verbose: Verbosity::Silent,
            ..FitConfig::default()
        };
        let h = m.fit(&[x], &y, &cfg, &mut []).unwrap();
        assert!(
            (h.get("loss").unwrap()[0] - case["loss_at_init"].as_f64().unwrap() as f32).abs()
                < 1e-5
        );
        assert_weights(&m, &d.join(file));
    }
}

/// Two Dense(1) heads over (batch, 512, 768) token encodings mixed by a Blend,
/// reshaped to (batch, 512) and a softmax over positions, trained against
/// start positions: the loss falls, alpha gets a gradient and moves.
#[test]
fn blend_head_over_token_encodings_learns() {
    let (b, t, f) = (8, 512, 768);
    let mut m = Model::functional("blend_head", 7);
    let tokens = m.input("tokens", &[t, f]).unwrap();
    let a = m.apply(Dense::new(1).named("start_a"), &[tokens]).unwrap();
    let c = m.apply(Dense::new(1).named("start_b"), &[tokens]).unwrap();
    let mix = m.apply(Blend::new().named("mix"), &[a, c]).unwrap();
    let flat = m
        .apply(Reshape::new(&[t as isize]).named("flat"), &[mix])
        .unwrap();
    let probs = m.apply(Softmax::new(-1).named("probs"), &[flat]).unwrap();
    m.set_outputs(&[probs]).unwrap();
    assert_eq!(m.output_shapes(), vec![vec![512]]);
    assert_eq!(m.count_params(), 2 * (768 + 1) + 1);

    // the start position is where feature 0 is largest
    let x = Tensor::rand_normal(&[b, t, f], 0.0, 1.0, &mut Rng::new(1));
    let labels: Vec<usize> = {
        let d = x.data();
        (0..b)
            .map(|i| {
                (0..t)
                    .max_by(|&p, &q| d[(i * t + p) * f].total_cmp(&d[(i * t + q) * f]))
                    .unwrap()
            })
            .collect()
    };
    let y = Targets::Classes(labels);
    m.compile(
        Loss::from_name("sparse_categorical_crossentropy").unwrap(),
        Optimizer::adam(0.05),
        &[Metric::Accuracy],
    );
    let (first, _) = m.train_step(std::slice::from_ref(&x), &y, None).unwrap();
    let alpha = m.layer("mix").unwrap().weights()[0].value.clone();
    let g = alpha.grad().unwrap().item().unwrap();
    assert!(g != 0.0, "alpha received no gradient");
    let cfg = FitConfig {
        epochs: 15,
        batch_size: b,
        shuffle: false,
        verbose: Verbosity::Silent,
        ..FitConfig::default()
    };
    let h = m.fit(&[x], &y, &cfg, &mut []).unwrap();
    let last = *h.get("loss").unwrap().last().unwrap();
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    assert!(
        alpha.item().unwrap().abs() > 1e-3,
        "alpha stayed at {}",
        alpha.item().unwrap()
    );
}
