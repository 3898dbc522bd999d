//! The classic-question examples, run at CI sizes, asserting the facts they print.

use strata::demos;

fn out() -> Vec<u8> {
    Vec::new()
}

#[test]
fn resnet50_head_shapes_equalities_and_probabilities() {
    let mut o = out();
    let f = demos::resnet50_head::run(&mut o, 224).unwrap();
    assert_eq!(f.image_shape, vec![1, 224, 224, 3]);
    assert_eq!(f.pooled_shape, vec![1, 2048]);
    assert_eq!(f.probs_shape, vec![1, 3]);
    assert_eq!(f.head_params, 6147);
    assert!(f.dense_vs_explicit <= 1e-6, "{}", f.dense_vs_explicit);
    assert!((f.prob_sum - 1.0).abs() <= 1e-6);
    let text = String::from_utf8(o).unwrap();
    assert!(
        text.contains("backbone + GAP:        [1, 2048]") && text.contains("2048*3 + 3 = 6147"),
        "{text}"
    );
}

#[test]
fn one_by_one_conv_is_dense_on_every_pixel() {
    let f = demos::one_by_one_conv::run(&mut out()).unwrap();
    assert_eq!(f.pixels, 60);
    assert!(f.max_diff <= 1e-6, "{}", f.max_diff);
}

#[test]
fn learned_blend_moves_alpha_towards_the_informative_head() {
    let mut o = out();
    let f = demos::learned_blend::run(&mut o, 96, 512, 4).unwrap();
    assert_eq!(f.mix[0], 0.5);
    assert!(
        f.alpha_final.abs() > 0.05 && *f.mix.last().unwrap() > 0.5,
        "alpha {}",
        f.alpha_final
    );
    assert!(f.blend_loss.1 < f.blend_loss.0);
    assert!(f.concat_loss.1 < f.concat_loss.0);
    assert_eq!(f.concat_params, 1024 * 512 + 512);
    assert!(String::from_utf8(o)
        .unwrap()
        .contains("sigmoid(alpha) before training: 0.5000"));
}

#[test]
fn softmax_function_and_classifier() {
    let f = demos::softmax_layer::run(&mut out(), 20).unwrap();
    assert!((f.sum - 1.0).abs() <= 1e-6);
    let want = [0.090_030_57, 0.244_728_48, 0.665_240_94];
    assert!(f
        .softmax_of_123
        .iter()
        .zip(want)
        .all(|(a, b)| (a - b).abs() < 1e-6));
    assert!(f.shift_invariance <= 1e-6);
    assert!(f.accuracy > 0.9, "{}", f.accuracy);
    assert!(f.loss.1 < f.loss.0);
    assert!(f.row_sum_error <= 1e-6);
}

#[test]
fn learned_filters_writes_both_pngs_and_training_changes_them() {
    let dir = std::env::temp_dir().join(format!("strata-filters-{}", std::process::id()));
    let f = demos::learned_filters::run(&mut out(), &dir, 2048, 1).unwrap();
    assert_eq!(f.filters, 32);
    // 32 kernels of 3x3 at 8 px: a 6x6 grid of 24-px tiles with 1-px gaps
    for name in ["filters_before.png", "filters_after.png"] {
        let img = image::open(dir.join(name)).unwrap();
        assert_eq!((img.width(), img.height()), (6 * 25 + 1, 6 * 25 + 1));
    }
    assert!(f.change > 1e-3, "trained filters equal the initial ones");
    assert!(f.seeds_differ > 1e-3);
    assert!(f.edge_like_trained <= f.filters && f.edge_like_initial <= f.filters);
    // what the trained network does with the first test digit
    assert_eq!(f.digit_label, 7);
    assert!(
        f.saliency_digit_over_background > 1.0,
        "{}",
        f.saliency_digit_over_background
    );
    for name in [
        "digit_saliency.png",
        "digit_gradcam.png",
        "digit_activations.png",
    ] {
        let img = image::open(dir.join(name)).unwrap();
        assert!(img.width() > 100 && img.height() > 100, "{name}");
    }
}

#[test]
fn kernel_shapes_of_the_seed_question() {
    let f = demos::kernel_shapes::run(&mut out()).unwrap();
    let shapes: Vec<Vec<usize>> = f.weights.iter().map(|(_, s)| s.clone()).collect();
    assert_eq!(
        shapes,
        vec![vec![11, 11, 1, 8], vec![8], vec![7, 7, 8, 16], vec![16]]
    );
    assert_eq!(f.output_shapes, vec![vec![91, 91, 8], vec![85, 85, 16]]);
    assert_eq!(f.params, vec![976, 6288]);
    assert_eq!(f.depthwise_kernel, vec![7, 7, 8, 1]);
    assert_eq!(f.depthwise_params, 7 * 7 * 8 + 8);
}
