//! How random conv filters become edge detectors through backpropagation:
//! train mnist-cnn from seeded random filters, save the first layer's 32
//! kernels before and after, compare two seeds, and count how many trained
//! kernels look most like an oriented edge detector (Sobel-like templates).
//! Then look at what the trained network does with a test digit: the
//! saliency of its class, Grad-CAM at the last spatial layer, and the first
//! layer's feature maps.

use std::io::Write;
use std::path::Path;

use strata_core::Tensor;
use strata_data::{attribution_pictures, pictures, Mnist};
use strata_nn::attribution::{self, SaliencyMethod};
use strata_nn::{FitConfig, Loss, Metric, Model, Optimizer, Targets, Verbosity};

use super::{max_abs_diff, DemoResult};

pub struct Facts {
    pub before_png: (u32, u32),
    pub after_png: (u32, u32),
    /// max |trained - initial| over the first layer's kernels.
    pub change: f32,
    /// max |seed A - seed B| of the trained kernels.
    pub seeds_differ: f32,
    pub edge_like_initial: usize,
    pub edge_like_trained: usize,
    pub filters: usize,
    pub test_accuracy: f32,
    /// The class the trained model gives the first test digit, and its label.
    pub digit_class: usize,
    pub digit_label: usize,
    /// Mean |saliency| on the digit's pixels over its mean on the background.
    pub saliency_digit_over_background: f32,
}

/// Oriented first-derivative templates (Sobel) and non-edge templates.
fn templates() -> Vec<(&'static str, [f32; 9], bool)> {
    vec![
        (
            "vertical edge",
            [-1., 0., 1., -2., 0., 2., -1., 0., 1.],
            true,
        ),
        (
            "horizontal edge",
            [-1., -2., -1., 0., 0., 0., 1., 2., 1.],
            true,
        ),
        (
            "diagonal edge",
            [0., 1., 2., -1., 0., 1., -2., -1., 0.],
            true,
        ),
        (
            "anti-diagonal edge",
            [-2., -1., 0., -1., 0., 1., 0., 1., 2.],
            true,
        ),
        (
            "spot (centre-surround)",
            [-1., -1., -1., -1., 8., -1., -1., -1., -1.],
            false,
        ),
        ("flat (blur)", [1., 1., 1., 1., 1., 1., 1., 1., 1.], false),
    ]
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Kernels (3, 3, 1, F) whose best-matching template (|cosine|, sign-free) is
/// an oriented edge with |cosine| >= 0.6.
pub fn count_edge_like(kernel: &[f32], filters: usize) -> usize {
    let t = templates();
    (0..filters)
        .filter(|&f| {
            let k: Vec<f32> = (0..9).map(|i| kernel[i * filters + f]).collect();
            let best = t
                .iter()
                .map(|(_, w, edge)| (cosine(&k, w).abs(), *edge))
                .fold((0.0, false), |a, b| if b.0 > a.0 { b } else { a });
            best.1 && best.0 >= 0.6
        })
        .count()
}

fn first_kernel(m: &Model) -> Vec<f32> {
    m.layers()[0].weights()[0].value.to_vec()
}

fn train(
    seed: u64,
    train_images: usize,
    epochs: usize,
    mnist: &Mnist,
) -> DemoResult<(Model, Vec<f32>, f32)> {
    let mut m = strata_zoo::mnist_cnn([28, 28, 1], 10, seed)?;
    let initial = first_kernel(&m);
    let idx: Vec<usize> = (0..train_images.min(60_000)).collect();
    let x = strata_nn::model::gather_rows(&mnist.train_images, &idx)?;
    let y = Targets::Classes(mnist.train_labels[..idx.len()].to_vec());
    m.compile(
        Loss::from_name("sparse_categorical_crossentropy")?,
        Optimizer::adam(2e-3),
        &[Metric::Accuracy],
    );
    m.fit(
        &[x],
        &y,
        &FitConfig {
            epochs,
            batch_size: 128,
            seed,
            verbose: Verbosity::Silent,
            ..FitConfig::default()
        },
        &mut [],
    )?;
    let test_idx: Vec<usize> = (0..2000).collect();
    let tx = strata_nn::model::gather_rows(&mnist.test_images, &test_idx)?;
    let ty = Targets::Classes(mnist.test_labels[..2000].to_vec());
    let acc = m
        .evaluate(&[tx], &ty, 500)?
        .get("accuracy")
        .copied()
        .unwrap_or(0.0);
    Ok((m, initial, acc))
}

pub fn run(
    out: &mut dyn Write,
    dir: &Path,
    train_images: usize,
    epochs: usize,
) -> DemoResult<Facts> {
    let mnist = Mnist::load_bundled()?;
    let (a, initial, acc) = train(1, train_images, epochs, &mnist)?;
    let (b, _, _) = train(2, train_images, epochs, &mnist)?;
    let trained = first_kernel(&a);
    let shape = a.layers()[0].weights()[0].shape().to_vec();
    let filters = shape[3];
    let before = dir.join("filters_before.png");
    let after = dir.join("filters_after.png");
    let before_png = pictures::filter_grid(&before, &initial, &shape, 8)?;
    let after_png = pictures::filter_grid(&after, &trained, &shape, 8)?;
    // the first test digit through the trained network
    let digit = Tensor::from_vec(
        mnist.test_images.to_vec()[..28 * 28].to_vec(),
        &[1, 28, 28, 1],
    )?;
    let picture = digit.to_vec();
    let mut a = a;
    let sal = attribution::saliency(&mut a, &digit, None, SaliencyMethod::Gradient)?;
    let g = sal.values.to_vec();
    let mean_where = |on: bool| {
        let v: Vec<f32> = g
            .iter()
            .zip(&picture)
            .filter(|(_, p)| (**p > 0.1) == on)
            .map(|(g, _)| g.abs())
            .collect();
        v.iter().sum::<f32>() / v.len().max(1) as f32
    };
    let ratio = mean_where(true) / mean_where(false).max(f32::MIN_POSITIVE);
    attribution_pictures::saliency_png(
        &dir.join("digit_saliency.png"),
        &picture,
        (28, 28, 1),
        &g,
        "gradient of the class score",
    )?;
    let last = attribution::last_spatial_layer(&a)?;
    let cam = attribution::grad_cam(&mut a, &digit, &last, Some(sal.class), false)?;
    let (ch, cw) = (cam.map.shape()[0], cam.map.shape()[1]);
    attribution_pictures::cam_overlay_png(
        &dir.join("digit_gradcam.png"),
        &picture,
        (28, 28, 1),
        &cam.map.to_vec(),
        (ch, cw),
        &format!("Grad-CAM at {last}"),
    )?;
    let first = a.layers()[0].name().to_string();
    let maps = attribution::layer_output(&mut a, &digit, &first)?;
    let s = maps.shape().to_vec();
    attribution_pictures::feature_maps_png(
        &dir.join("digit_activations.png"),
        &maps.to_vec(),
        (s[0], s[1], s[2]),
        &format!("{first}'s feature maps"),
    )?;
    let facts = Facts {
        before_png,
        after_png,
        change: max_abs_diff(&initial, &trained),
        seeds_differ: max_abs_diff(&trained, &first_kernel(&b)),
        edge_like_initial: count_edge_like(&initial, filters),
        edge_like_trained: count_edge_like(&trained, filters),
        filters,
        test_accuracy: acc,
        digit_class: sal.class,
        digit_label: mnist.test_labels[0],
        saliency_digit_over_background: ratio,
    };
    writeln!(out, "trained mnist-cnn on {train_images} images for {epochs} epoch(s): test accuracy {:.3} (first 2000 test images)", acc)?;
    writeln!(
        out,
        "wrote {} and {} ({}x{} px)",
        before.display(),
        after.display(),
        after_png.0,
        after_png.1
    )?;
    writeln!(
        out,
        "largest change of a first-layer weight: {:.4}",
        facts.change
    )?;
    writeln!(out, "seed 1 vs seed 2, trained kernels differ by up to {:.4}: no two runs learn the same filters", facts.seeds_differ)?;
    writeln!(
        out,
        "kernels closest to an oriented edge template (|cos| >= 0.6): {} of {} before training, {} of {} after",
        facts.edge_like_initial, filters, facts.edge_like_trained, filters
    )?;
    writeln!(out, "so an edge filter is likely but not guaranteed: it is whatever lowers the loss from where the seed started")?;
    writeln!(
        out,
        "the first test digit (a {}) is read as {}; the gradient of that class's score is {:.1}x larger on the digit's pixels than on the background",
        facts.digit_label, facts.digit_class, facts.saliency_digit_over_background
    )?;
    writeln!(
        out,
        "wrote digit_saliency.png, digit_gradcam.png (Grad-CAM at {last}) and digit_activations.png ({first}) in {}",
        dir.display()
    )?;
    Ok(facts)
}
