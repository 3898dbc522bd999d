//! The network and the input of the captum parity check: torchvision's
//! ResNet-18 (10 classes, 96x96 RGB) with seeded random weights, its
//! BatchNormalization statistics and affine weights randomised too, so that
//! every layer matters. `examples/captum_inputs.rs` writes them for
//! `tests/captum/make_reference.py`, which computes captum's attributions;
//! `tests/captum_parity.rs` rebuilds them here and compares.

use strata_core::{Rng, Tensor};
use strata_nn::Model;
use strata_zoo::ZooOptions;

/// Side of the square input.
pub const SIDE: usize = 96;
/// Classes of the head.
pub const CLASSES: usize = 10;

/// The parity ResNet-18, the same for the same build of strata.
pub fn model() -> strata_zoo::Result<Model> {
    let m = strata_zoo::build(
        "resnet18",
        &ZooOptions {
            classes: Some(CLASSES),
            input_shape: Some([SIDE, SIDE, 3]),
            seed: 2024,
        },
    )?;
    let mut rng = Rng::new(77);
    for layer in m.layers() {
        for w in layer.weights() {
            let mut v = w.value.data_mut();
            match w.name {
                "gamma" => v.iter_mut().for_each(|x| *x = rng.uniform(0.5, 1.5)),
                "beta" | "moving_mean" => v.iter_mut().for_each(|x| *x = rng.normal_with(0.0, 0.1)),
                "moving_variance" => v.iter_mut().for_each(|x| *x = rng.uniform(0.5, 1.5)),
                _ => {}
            }
        }
    }
    Ok(m)
}

/// The input, (1, SIDE, SIDE, 3), standard normal values.
pub fn input() -> Tensor {
    Tensor::rand_normal(&[1, SIDE, SIDE, 3], 0.0, 1.0, &mut Rng::new(5))
}
