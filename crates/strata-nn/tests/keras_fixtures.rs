//! Every layer, loss and optimizer case of the shared Keras 3 fixtures, run
//! through strata's own layers (built from the fixture's Keras config), losses
//! and optimizers; plus the whole-model case and the seed model summaries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use strata_core::{Rng, Tensor};
use strata_nn::layers::Ctx;
use strata_nn::model::layer_from_keras_config as layer_from_fixture_config;
use strata_nn::model::read_safetensors;
use strata_nn::{Loss, Optimizer, Param, Targets};

/// The shared Keras fixtures (a missing folder fails the test).
fn fixtures() -> Option<PathBuf> {
    strata_core::fixtures::shared_fixtures(env!("CARGO_MANIFEST_DIR"))
}

struct Case {
    tensors: HashMap<String, Tensor>,
    config: Value,
}

fn load(dir: &Path, name: &str) -> Case {
    let (ts, meta) = read_safetensors(dir.join("ops").join(format!("{name}.safetensors"))).unwrap();
    let tensors = ts
        .into_iter()
        .map(|(n, s, v)| (n, Tensor::from_vec(v, &s).unwrap()))
        .collect();
    let config = serde_json::from_str(&meta["config"]).unwrap();
    Case { tensors, config }
}

fn close(case: &str, what: &str, got: &Tensor, want: &Tensor) {
    let (g, w) = (got.to_vec(), want.to_vec());
    assert_eq!(
        got.numel(),
        want.numel(),
        "{case} {what}: {:?} vs {:?}",
        got.shape(),
        want.shape()
    );
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
            "{case} {what}[{i}]: {a} vs {b}"
        );
    }
}

fn case_names(dir: &Path) -> Vec<String> {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    index.as_object().unwrap().keys().cloned().collect()
}

const LAYER_CLASSES: &[&str] = &[
    "Dense",
    "Conv2D",
    "DepthwiseConv2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "Flatten",
    "BatchNormalization",
    "Activation",
    "Softmax",
];

#[test]
fn every_layer_case_matches_keras() {
    let Some(dir) = fixtures() else { return };
    let mut ran = 0;
    for name in case_names(&dir) {
        let c = load(&dir, &name);
        let class = c.config["class_name"].as_str().unwrap().to_string();
        if !LAYER_CLASSES.contains(&class.as_str()) {
            continue;
        }
        let training = c.config["training"].as_bool().unwrap_or(false);
        let x = c.tensors["x"].clone().requires_grad_(true);
        let mut layer =
            layer_from_fixture_config(&c.config).unwrap_or_else(|e| panic!("{name}: {e}"));
        layer
            .build(&[x.shape()[1..].to_vec()], &mut Rng::new(0))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for w in layer.weights_mut() {
            let v = c
                .tensors
                .get(w.name)
                .unwrap_or_else(|| panic!("{name}: no fixture tensor {}", w.name));
            w.value.assign(&v.to_vec()).unwrap();
        }
        let mut rng = Rng::new(0);
        let mut ctx = Ctx {
            training,
            rng: &mut rng,
        };
        let y = layer.forward(std::slice::from_ref(&x), &mut ctx).unwrap();
        close(&name, "y", &y, &c.tensors["y"]);
        y.mul(&c.tensors["dy"])
            .unwrap()
            .sum_all()
            .backward()
            .unwrap();
        close(&name, "dx", &x.grad().unwrap(), &c.tensors["dx"]);
        for w in layer.weights() {
            if let Some(want) = c.tensors.get(&format!("d_{}", w.name)) {
                close(
                    &name,
                    &format!("d_{}", w.name),
                    &w.value.grad().unwrap(),
                    want,
                );
            }
            if let Some(want) = c.tensors.get(&format!("{}_after", w.name)) {
                close(&name, &format!("{}_after", w.name), &w.value, want);
            }
        }
        ran += 1;
    }
    assert_eq!(ran, 37, "layer cases run");
}

#[test]
fn blend_matches_keras() {
    let Some(dir) = fixtures() else { return };
    let c = load(&dir, "blend");
    let a = c.tensors["a"].clone().requires_grad_(true);
    let b = c.tensors["b"].clone().requires_grad_(true);
    let mut layer = layer_from_fixture_config(&c.config).unwrap();
    let s = a.shape()[1..].to_vec();
    layer.build(&[s.clone(), s], &mut Rng::new(0)).unwrap();
    layer.weights_mut()[0]
        .value
        .assign(&c.tensors["alpha"].to_vec())
        .unwrap();
    let mut rng = Rng::new(0);
    let y = layer
        .forward(
            &[a.clone(), b.clone()],
            &mut Ctx {
                training: true,
                rng: &mut rng,
            },
        )
        .unwrap();
    close("blend", "y", &y, &c.tensors["y"]);
    y.mul(&c.tensors["dy"])
        .unwrap()
        .sum_all()
        .backward()
        .unwrap();
    close("blend", "da", &a.grad().unwrap(), &c.tensors["da"]);
    close("blend", "db", &b.grad().unwrap(), &c.tensors["db"]);
    close(
        "blend",
        "d_alpha",
        &layer.weights()[0].value.grad().unwrap(),
        &c.tensors["d_alpha"],
    );
}

#[test]
fn every_loss_case_matches_keras() {
    let Some(dir) = fixtures() else { return };
    let mut ran = 0;
    for name in case_names(&dir)
        .into_iter()
        .filter(|n| n.starts_with("loss_"))
    {
        let c = load(&dir, &name);
        let loss = Loss::from_name(c.config["function"].as_str().unwrap()).unwrap();
        let from_logits = c.config["args"]["from_logits"].as_bool().unwrap_or(false);
        let loss = match loss {
            Loss::SparseCategoricalCrossentropy { .. } => {
                Loss::SparseCategoricalCrossentropy { from_logits }
            }
            Loss::CategoricalCrossentropy { .. } => Loss::CategoricalCrossentropy { from_logits },
            l => l,
        };
        let y_true = &c.tensors["y_true"];
        let targets = if matches!(loss, Loss::SparseCategoricalCrossentropy { .. }) {
            Targets::Classes(y_true.to_vec().iter().map(|&v| v as usize).collect())
        } else {
            Targets::Dense(y_true.clone())
        };
        let p = c.tensors["y_pred"].clone().requires_grad_(true);
        let l = loss.compute(&p, &targets, None).unwrap();
        close(&name, "loss", &l, &c.tensors["loss"]);
        l.backward().unwrap();
        close(
            &name,
            "d_y_pred",
            &p.grad().unwrap(),
            &c.tensors["d_y_pred"],
        );
        ran += 1;
    }
    assert_eq!(ran, 6);
}

#[test]
fn every_optimizer_case_matches_keras() {
    let Some(dir) = fixtures() else { return };
    let mut ran = 0;
    for name in case_names(&dir)
        .into_iter()
        .filter(|n| n.starts_with("opt_"))
    {
        let c = load(&dir, &name);
        let args = &c.config["args"];
        let lr = args["learning_rate"].as_f64().unwrap() as f32;
        let mut opt = match c.config["class_name"].as_str().unwrap() {
            "SGD" => Optimizer::sgd(
                lr,
                args["momentum"].as_f64().unwrap() as f32,
                args["nesterov"].as_bool().unwrap(),
            ),
            "Adam" => Optimizer::adam(lr),
            "AdamW" => Optimizer::adamw(lr, args["weight_decay"].as_f64().unwrap() as f32),
            "RMSprop" => Optimizer::rmsprop(lr),
            other => panic!("unexpected optimizer {other}"),
        };
        let w = c.tensors["w0"].detach().requires_grad_(true);
        let params = vec![Param {
            name: "w".into(),
            value: w.clone(),
        }];
        for step in 1..=3 {
            w.set_grad(Some(c.tensors[&format!("g{step}")].to_vec()));
            opt.step(&params).unwrap();
            close(
                &name,
                &format!("w{step}"),
                &w,
                &c.tensors[&format!("w{step}")],
            );
        }
        ran += 1;
    }
    assert_eq!(ran, 6);
}
