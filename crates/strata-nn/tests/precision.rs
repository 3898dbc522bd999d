//! The precision policy (Keras's `mixed_bfloat16`): the model-wide setting
//! reaches every Conv2D and Dense, fused Conv2D -> BatchNorm -> ReLU chains
//! included (inference and training), a layer's own `dtype` wins, and the
//! spec carries only the layers' own `dtype`.

use serde_json::json;
use strata_core::{no_grad, Precision, Rng, Tensor};
use strata_nn::layers::{
    ActivationLayer, BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D,
};
use strata_nn::model::model_from_spec;
use strata_nn::{Activation, Model};

/// Conv2D -> BatchNorm -> ReLU (one fusable chain) -> pooling -> Dense.
fn conv_bn_relu(seed: u64) -> Model {
    let mut m = Model::sequential("cbr", &[9, 9, 3], seed);
    m.add(Conv2D::new(8, (3, 3)).use_bias(false)).unwrap();
    m.add(BatchNormalization::new()).unwrap();
    m.add(ActivationLayer::new(Activation::Relu)).unwrap();
    m.add(GlobalAveragePooling2D::new(false)).unwrap();
    m.add(Dense::new(4)).unwrap();
    m
}

fn input() -> Tensor {
    Tensor::rand_normal(&[2, 9, 9, 3], 0.0, 1.0, &mut Rng::new(3))
}

/// Largest |a - b| over largest |b|.
fn rel(a: &[f32], b: &[f32]) -> f32 {
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    d / b.iter().map(|v| v.abs()).fold(0.0, f32::max)
}

#[test]
fn the_model_policy_reaches_fused_inference_chains() {
    let mut m = conv_bn_relu(1);
    let chains = no_grad(|| m.fused_chains(false));
    assert_eq!(chains, ["conv2d + batch_normalization + activation"]);
    let x = input();
    let f32_out = no_grad(|| m.forward(std::slice::from_ref(&x), false)).unwrap()[0].to_vec();
    m.set_precision(Precision::MixedBfloat16);
    assert_eq!(m.precision(), Precision::MixedBfloat16);
    for l in m.layers() {
        let want = ["Conv2D", "Dense"]
            .contains(&l.class_name())
            .then_some(Precision::MixedBfloat16);
        assert_eq!(l.precision(), want, "{}", l.name());
    }
    let fused = no_grad(|| m.forward(std::slice::from_ref(&x), false)).unwrap()[0].to_vec();
    m.set_fusion(false);
    let plain = no_grad(|| m.forward(std::slice::from_ref(&x), false)).unwrap()[0].to_vec();
    // the fused chain rounds the same operands as the plain layers
    assert_eq!(fused, plain);
    let r = rel(&fused, &f32_out);
    assert!(r > 1e-5 && r < 2e-2, "bfloat16 against float32: {r}");
}

#[test]
fn training_follows_the_policy_fused_or_not() {
    let x = input();
    let run = |precision: Precision, fusion: bool| {
        let mut m = conv_bn_relu(2);
        m.set_precision(precision);
        m.set_fusion(fusion);
        let y = m.forward(std::slice::from_ref(&x), true).unwrap();
        y[0].sum_all().backward().unwrap();
        let k = m.layer("conv2d").unwrap().weights()[0]
            .value
            .grad()
            .unwrap();
        let d = m.layer("dense").unwrap().weights()[0].value.grad().unwrap();
        (y[0].to_vec(), k.to_vec(), d.to_vec())
    };
    let (y32, k32, d32) = run(Precision::Float32, true);
    let (yb, kb, db) = run(Precision::MixedBfloat16, true);
    let (yp, kp, dp) = run(Precision::MixedBfloat16, false);
    // fused (the convolution hands BatchNorm its moments) or not: the same to rounding
    assert!(rel(&yb, &yp) < 1e-5, "{}", rel(&yb, &yp));
    assert!(rel(&kb, &kp) < 1e-4, "{}", rel(&kb, &kp));
    assert!(rel(&db, &dp) < 1e-5, "{}", rel(&db, &dp));
    // and bfloat16's own distance from float32, forward and both gradients
    for (what, b, f) in [
        ("y", &yb, &y32),
        ("conv kernel", &kb, &k32),
        ("dense kernel", &db, &d32),
    ] {
        let r = rel(b, f);
        assert!(r > 1e-5 && r < 5e-2, "{what}: {r}");
    }
}

#[test]
fn a_layer_dtype_wins_over_the_model_policy() {
    let mut m = Model::sequential("mixed", &[6], 0);
    m.add(Dense::new(5).activation(Activation::Relu)).unwrap();
    m.add(Dense::new(3).named("head").dtype(Precision::Float32))
        .unwrap();
    m.set_precision(Precision::MixedBfloat16);
    assert_eq!(m.layers()[0].precision(), Some(Precision::MixedBfloat16));
    assert_eq!(m.layers()[1].precision(), Some(Precision::Float32));
    // a layer added later takes the model's policy; a nested model follows it
    let mut inner = Model::sequential("inner", &[3], 1);
    inner.add(Dense::new(2)).unwrap();
    m.add(inner).unwrap();
    let nested = m.layer("inner").unwrap().as_any().downcast_ref::<Model>();
    assert_eq!(nested.unwrap().precision(), Precision::MixedBfloat16);
    m.add(Dense::new(2).named("late")).unwrap();
    assert_eq!(
        m.layer("late").unwrap().precision(),
        Some(Precision::MixedBfloat16)
    );
    m.set_precision(Precision::Float32);
    assert_eq!(m.layers()[0].precision(), Some(Precision::Float32));
}

#[test]
fn spec_dtype_is_optional_and_round_trips() {
    let spec = json!({
        "name": "p",
        "input_shape": [8, 8, 1],
        "layers": [
            {"type": "Conv2D", "filters": 2, "kernel_size": 3, "dtype": "mixed_bfloat16"},
            {"type": "Conv2D", "filters": 2, "kernel_size": 3},
            {"type": "Flatten"},
            {"type": "Dense", "units": 2, "dtype": "float32"}
        ]
    });
    let mut m = model_from_spec(&spec, 0).unwrap();
    let own: Vec<Option<Precision>> = m.layers().iter().map(|l| l.precision()).collect();
    use Precision::{Float32 as F, MixedBfloat16 as B};
    assert_eq!(own, [Some(B), Some(F), None, Some(F)]);
    m.set_precision(B);
    let own: Vec<Option<Precision>> = m.layers().iter().map(|l| l.precision()).collect();
    assert_eq!(own, [Some(B), Some(B), None, Some(F)]);
    // written back: only the layers' own dtype, never the runtime policy
    let out = m.to_spec();
    let layers = out["layers"].as_array().unwrap();
    assert_eq!(layers[0]["dtype"], "mixed_bfloat16");
    assert!(layers[1].get("dtype").is_none());
    assert_eq!(layers[3]["dtype"], "float32");
    let back = model_from_spec(&out, 0).unwrap();
    assert_eq!(back.layers()[0].precision(), Some(B));
    let bad = json!({
        "name": "p",
        "input_shape": [4],
        "layers": [{"type": "Dense", "units": 2, "name": "d", "dtype": "bfloat16"}]
    });
    let e = model_from_spec(&bad, 0).unwrap_err().to_string();
    assert!(
        e.contains("'d'") && e.contains("dtype") && e.contains("mixed_bfloat16"),
        "{e}"
    );
}
