//! Fusion on a real ResNet: which chains fuse, that inference outputs and a
//! frozen-backbone training step are bitwise those of the unfused layers, and
//! that full training steps (where a BatchNorm's batch statistics come from
//! the convolution before it, summed in other pieces) match them to rounding.

use strata_core::{no_grad, Rng, Tensor};
use strata_nn::{Loss, Optimizer, Targets};
use strata_zoo::{build, freeze_backbone, ZooOptions};

fn resnet18(seed: u64) -> strata_nn::Model {
    let opts = ZooOptions {
        classes: Some(3),
        input_shape: Some([32, 32, 3]),
        seed,
    };
    let mut m = build("resnet18", &opts).unwrap();
    // non-trivial moving statistics: a few training-mode passes
    let mut rng = Rng::new(seed + 100);
    for _ in 0..3 {
        let x = Tensor::rand_normal(&[4, 32, 32, 3], 0.3, 1.5, &mut rng);
        no_grad(|| m.forward(&[x], true)).unwrap();
    }
    m
}

#[test]
fn every_resnet_block_fuses_and_inference_is_bitwise_unchanged() {
    let mut m = resnet18(7);
    let chains = no_grad(|| m.fused_chains(false));
    // stem (conv1+bn1+relu), per basic block conv1+bn1+relu1 and
    // conv2+bn2+add+relu, and 3 downsample conv+bn: 1 + 8*2 + 3 = 20
    assert_eq!(chains.len(), 20, "{chains:#?}");
    assert!(
        chains.contains(&"conv1 + bn1 + relu".to_string()),
        "{chains:#?}"
    );
    assert!(
        chains
            .contains(&"layer1.0.conv2 + layer1.0.bn2 + layer1.0.add + layer1.0.relu".to_string()),
        "{chains:#?}"
    );
    // while training, each convolution takes its BatchNorm's batch statistics
    // (with the ReLU after, where there is one): the same 1 + 8 + 8 + 3
    // Conv2D -> BatchNorm pairs, 8 of them (one per block) with the block's
    // Add and ReLU in the same op
    let training = m.fused_chains(true);
    assert_eq!(training.len(), 20, "{training:#?}");
    for chain in [
        "conv1 + bn1 + relu",
        "layer2.1.conv1 + layer2.1.bn1 + layer2.1.relu1",
        "layer2.1.conv2 + layer2.1.bn2 + layer2.1.add + layer2.1.relu",
    ] {
        assert!(
            training.contains(&chain.to_string()),
            "{chain}: {training:#?}"
        );
    }
    // a downsampling block's Add takes two BatchNorms: one of them ends there
    let block = |b: &str| training.iter().filter(|c| c.contains(b)).count();
    assert_eq!(block("layer2.0."), 3, "{training:#?}");
    assert_eq!(
        training.iter().filter(|c| c.ends_with(".relu")).count(),
        8,
        "{training:#?}"
    );

    let x = Tensor::rand_normal(&[3, 32, 32, 3], 0.0, 1.0, &mut Rng::new(9));
    let fused = no_grad(|| m.forward(std::slice::from_ref(&x), false)).unwrap();
    m.set_fusion(false);
    assert!(no_grad(|| m.fused_chains(false)).is_empty());
    let plain = no_grad(|| m.forward(std::slice::from_ref(&x), false)).unwrap();
    assert_eq!(fused[0].to_vec(), plain[0].to_vec());
    let p = plain[0].to_vec();
    assert!(p.iter().all(|v| v.is_finite()) && p.iter().any(|&v| v != p[0]));
}

/// Two SGD steps on one batch; every weight afterwards.
fn two_steps(m: &mut strata_nn::Model, seed: u64, lr: f32) -> Vec<Vec<f32>> {
    m.compile(
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        Optimizer::sgd(lr, 0.9, false),
        &[],
    );
    let x = Tensor::rand_normal(&[8, 32, 32, 3], 0.0, 1.0, &mut Rng::new(seed));
    let y = Targets::Classes(vec![0, 2, 1, 2, 1, 0, 2, 1]);
    for _ in 0..2 {
        m.train_step(std::slice::from_ref(&x), &y, None).unwrap();
    }
    m.weight_tensors().into_iter().map(|t| t.2).collect()
}

#[test]
fn frozen_backbone_training_step_is_bitwise_unchanged() {
    let run = |fusion: bool| {
        let mut m = resnet18(11);
        freeze_backbone(&mut m).unwrap();
        m.set_fusion(fusion);
        // frozen BatchNorm uses its moving statistics even while training
        assert_eq!(m.fused_chains(true).len(), if fusion { 20 } else { 0 });
        two_steps(&mut m, 12, 0.1)
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn a_trainable_backbone_fuses_no_convolution_with_its_affine_map() {
    let mut m = resnet18(13);
    // while training, a convolution only hands its BatchNorm the batch
    // statistics: the BatchNorm normalises (with the Add and ReLU after it,
    // at a block's end) in an op that records its gradient
    let training = m.fused_chains(true);
    let with_conv = training
        .iter()
        .filter(|c| c.contains("conv") || c.contains("downsample"));
    assert_eq!(with_conv.clone().count(), 20, "{training:#?}");
    assert_eq!(
        with_conv.clone().filter(|c| c.contains(".add")).count(),
        8,
        "{training:#?}"
    );
    // inference in grad mode with trainable weights: the weights require grad,
    // so no convolution fuses unless no_grad is on (each block's Add -> ReLU
    // does: it records its gradient)
    let chains = m.fused_chains(false);
    assert_eq!(chains.len(), 8, "{chains:#?}");
    assert!(chains
        .iter()
        .all(|c| c.ends_with(".relu") && c.contains(".add")));
    assert_eq!(no_grad(|| m.fused_chains(false)).len(), 20);
    let x = Tensor::rand_normal(&[2, 32, 32, 3], 0.0, 1.0, &mut Rng::new(14));
    let y = m.forward(std::slice::from_ref(&x), false).unwrap();
    assert!(y[0].requires_grad(), "the graph must still be recorded");
}

#[test]
fn full_training_steps_match_the_unfused_layers() {
    // Conv2D -> BatchNorm [-> ReLU] with the statistics from the convolution's
    // epilogue, BatchNorm -> ReLU and Add -> ReLU as one op while the whole
    // network trains: the same steps up to the rounding of the batch
    // statistics, and bitwise the same from run to run
    let run = |fusion: bool| {
        let mut m = resnet18(15);
        m.set_fusion(fusion);
        two_steps(&mut m, 16, 0.05)
    };
    let (fused, plain) = (run(true), run(false));
    assert_eq!(fused, run(true));
    let mut worst = 0f32;
    for (f, p) in fused.iter().zip(&plain) {
        for (&a, &b) in f.iter().zip(p) {
            worst = worst.max((a - b).abs() / (1.0 + b.abs()));
        }
    }
    // layer4's BatchNorms normalise 8 rows here (batch 8 at 1x1), where
    // rounding-level differences in the statistics grow the most through
    // two momentum steps; batch 8, not 4, because a channel of near-zero
    // variance over 4 rows multiplies whatever differs.
    assert!(worst <= 5e-3, "fused and unfused steps differ by {worst}");
}
