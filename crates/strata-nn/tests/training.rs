//! Training mechanics: bitwise reproducibility, exact resume from a
//! mid-epoch checkpoint, callbacks, validation split, class weights, and a
//! clear stop when the loss blows up.

use std::collections::HashMap;

use serde_json::json;
use strata_core::{Rng, Tensor};
use strata_nn::model::{
    model_from_spec, Callback, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau,
};
use strata_nn::{FitConfig, Loss, Metric, Model, Optimizer, Targets, Verbosity};

fn small_model(seed: u64) -> Model {
    let spec = json!({"input_shape": [8, 8, 1], "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dropout", "rate": 0.3},
        {"type": "Dense", "units": 3, "activation": "softmax"}]});
    let mut m = model_from_spec(&spec, seed).unwrap();
    m.compile(
        Loss::from_name("sparse_categorical_crossentropy").unwrap(),
        Optimizer::adam(0.01),
        &[Metric::Accuracy],
    );
    m
}

fn data(n: usize) -> (Tensor, Targets) {
    let x = Tensor::rand_normal(&[n, 8, 8, 1], 0.0, 1.0, &mut Rng::new(3));
    let labels = {
        let d = x.data();
        (0..n)
            .map(|i| {
                if d[i * 64] > 0.5 {
                    0
                } else if d[i * 64] < -0.5 {
                    1
                } else {
                    2
                }
            })
            .collect()
    };
    (x, Targets::Classes(labels))
}

fn cfg(epochs: usize) -> FitConfig {
    FitConfig {
        epochs,
        batch_size: 16,
        seed: 7,
        verbose: Verbosity::Silent,
        ..FitConfig::default()
    }
}

#[test]
fn same_seed_same_data_gives_bitwise_identical_weights() {
    let (x, y) = data(100);
    let mut a = small_model(1);
    let mut b = small_model(1);
    a.fit(std::slice::from_ref(&x), &y, &cfg(3), &mut [])
        .unwrap();
    b.fit(std::slice::from_ref(&x), &y, &cfg(3), &mut [])
        .unwrap();
    assert_eq!(a.weight_tensors(), b.weight_tensors());
    let mut c = small_model(1);
    c.fit(
        std::slice::from_ref(&x),
        &y,
        &FitConfig { seed: 8, ..cfg(3) },
        &mut [],
    )
    .unwrap();
    assert_ne!(a.weight_tensors(), c.weight_tensors());
}

#[test]
fn resuming_a_mid_epoch_checkpoint_is_exact() {
    let (x, y) = data(100);
    let mut full = small_model(2);
    full.fit(std::slice::from_ref(&x), &y, &cfg(3), &mut [])
        .unwrap();

    let dir = std::env::temp_dir().join(format!("strata-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("ckpt.safetensors");
    // stop after 10 optimizer steps: epoch 2 (7 batches per epoch), step 3
    let mut first = small_model(2);
    first
        .fit(
            std::slice::from_ref(&x),
            &y,
            &FitConfig {
                max_steps: Some(10),
                ..cfg(3)
            },
            &mut [],
        )
        .unwrap();
    first.save_checkpoint(&ckpt, 1, 3).unwrap();

    let mut resumed = small_model(99);
    let (epoch, step) = resumed.load_checkpoint(&ckpt).unwrap();
    assert_eq!((epoch, step), (1, 3));
    resumed
        .fit(
            std::slice::from_ref(&x),
            &y,
            &FitConfig {
                initial_epoch: epoch,
                initial_step: step,
                ..cfg(3)
            },
            &mut [],
        )
        .unwrap();
    assert_eq!(full.weight_tensors(), resumed.weight_tensors());
}

#[test]
fn callbacks_stop_reduce_and_save() {
    let (x, y) = data(64);
    let dir = std::env::temp_dir().join(format!("strata-cb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let best = dir.join("best.safetensors");
    let mut m = small_model(3);
    m.compile(
        Loss::from_name("sparse_categorical_crossentropy").unwrap(),
        Optimizer::sgd(0.0, 0.0, false),
        &[Metric::Accuracy],
    );
    // lr 0: the loss never improves, so early stopping fires after `patience` epochs
    let mut cbs: Vec<Box<dyn Callback>> = vec![
        Box::new(ReduceLROnPlateau::new("loss", 0.5, 1)),
        Box::new(ModelCheckpoint::new(&best, "loss", true)),
        Box::new(EarlyStopping::new("loss", 2, true)),
    ];
    let h = m
        .fit(
            std::slice::from_ref(&x),
            &y,
            &FitConfig {
                shuffle: false,
                ..cfg(20)
            },
            &mut cbs,
        )
        .unwrap();
    assert!(h.epoch.len() < 20, "ran {} epochs", h.epoch.len());
    assert!(best.is_file());
    let e = m
        .fit(
            std::slice::from_ref(&x),
            &y,
            &cfg(1),
            &mut [Box::new(EarlyStopping::new("val_loss", 1, false)) as Box<dyn Callback>],
        )
        .unwrap_err();
    assert!(e.to_string().contains("monitors 'val_loss'"), "{e}");
}

#[test]
fn validation_split_class_weights_and_logs() {
    let (x, y) = data(100);
    let mut m = small_model(4);
    let mut weights = HashMap::new();
    weights.insert(0, 5.0);
    let h = m
        .fit(
            std::slice::from_ref(&x),
            &y,
            &FitConfig {
                validation_split: 0.2,
                class_weight: Some(weights),
                ..cfg(2)
            },
            &mut [],
        )
        .unwrap();
    for k in [
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "learning_rate",
    ] {
        assert_eq!(h.get(k).map(|v| v.len()), Some(2), "{k}");
    }
    assert!(m
        .fit(
            std::slice::from_ref(&x),
            &y,
            &FitConfig {
                batch_size: 0,
                ..cfg(1)
            },
            &mut []
        )
        .is_err());
}

#[test]
fn an_exploding_learning_rate_stops_with_a_message_naming_the_step() {
    let (x, y) = data(64);
    let mut m = small_model(5);
    m.compile(
        Loss::from_name("sparse_categorical_crossentropy").unwrap(),
        Optimizer::sgd(1e30, 0.0, false),
        &[],
    );
    let e = m
        .fit(std::slice::from_ref(&x), &y, &cfg(5), &mut [])
        .unwrap_err()
        .to_string();
    assert!(e.contains("non-finite") || e.contains("became"), "{e}");
    assert!(e.contains("at step "), "{e}");
}
