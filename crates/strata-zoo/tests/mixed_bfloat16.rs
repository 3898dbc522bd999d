//! ResNet-50 under Keras's `mixed_bfloat16` policy: the logits agree with
//! float32's within 2e-2 of the largest logit (bench/check_bf16_torch.py
//! compares the same against torch.autocast bfloat16).

use std::path::Path;

use strata_core::{no_grad, Precision, Rng, Tensor};
use strata_nn::layers::Dense;
use strata_nn::Source;
use strata_zoo::{resnet, Pooling, ResNetConfig};

/// torchvision's ResNet-50 (He-initialised convolutions) with a linear
/// 1000-class head (logits: the zoo's ends in a softmax), and random
/// BatchNorm statistics and affine parameters, so that no BatchNorm is the
/// identity.
fn resnet50_random_bn(seed: u64) -> strata_nn::Model {
    let cfg = ResNetConfig::new(50)
        .without_top(Some(Pooling::Avg))
        .seed(seed);
    let mut m = resnet(&cfg).unwrap();
    let features = Source::Node(m.nodes().len() - 1);
    let fc = m.apply(Dense::new(1000).named("fc"), &[features]).unwrap();
    m.set_outputs(&[fc]).unwrap();
    let mut rng = Rng::new(seed + 1);
    let tensors: Vec<_> = m
        .named_weights()
        .into_iter()
        .map(|(name, w)| {
            let range = match w.name {
                "moving_mean" | "beta" => Some((-0.2, 0.2)),
                "moving_variance" | "gamma" => Some((0.5, 1.5)),
                _ => None,
            };
            let values = match range {
                Some((lo, hi)) => (0..w.numel()).map(|_| rng.uniform(lo, hi)).collect(),
                None => w.value.to_vec(),
            };
            (name, w.shape().to_vec(), values)
        })
        .collect();
    m.set_weight_tensors(Path::new("random"), tensors).unwrap();
    m
}

#[test]
fn resnet50_mixed_bfloat16_logits_agree_with_float32() {
    let mut m = resnet50_random_bn(0);
    let x = Tensor::rand_normal(&[2, 224, 224, 3], 0.0, 1.0, &mut Rng::new(5));
    let logits = |m: &mut strata_nn::Model| {
        no_grad(|| m.forward(std::slice::from_ref(&x), false)).unwrap()[0].to_vec()
    };
    let f32_logits = logits(&mut m);
    m.set_precision(Precision::MixedBfloat16);
    let bf16_logits = logits(&mut m);
    let largest = f32_logits.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    let diff = f32_logits
        .iter()
        .zip(&bf16_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let rel = diff / largest;
    eprintln!("resnet50 mixed_bfloat16 vs float32: largest |diff| {diff:.3e} / largest |logit| {largest:.3e} = {rel:.3e}");
    assert!(largest > 0.0 && bf16_logits.iter().all(|v| v.is_finite()));
    // bfloat16 did run (rounded operands move the logits) and stays close
    assert!(rel > 1e-5, "{rel}: no different from float32");
    assert!(rel < 2e-2, "{rel}");
}
