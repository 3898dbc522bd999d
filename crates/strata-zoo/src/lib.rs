//! strata-zoo: ready-made models by name: the Keras MNIST CNN, LeNet-5 and
//! torchvision's ResNet-18/34/50/101/152 (which also load torchvision-named
//! weights files, see [`load_weights_auto`]).

pub mod error;
pub mod lenet;
pub mod mnist_cnn;
pub mod resnet;
pub mod torchvision;

pub use error::{Result, ZooError};
pub use lenet::lenet5;
pub use mnist_cnn::mnist_cnn;
pub use resnet::{freeze_backbone, resnet, Pooling, ResNetConfig, RESNET_DEPTHS};
pub use torchvision::{
    load_matching_weights, load_weights_auto, strata_to_torchvision, torchvision_to_strata,
};

use strata_nn::Model;

/// Options common to every zoo model. `None` picks the model's default:
/// 10 classes and (28, 28, 1) for the MNIST models, 1000 classes and
/// (224, 224, 3) for the ResNets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZooOptions {
    pub classes: Option<usize>,
    pub input_shape: Option<[usize; 3]>,
    pub seed: u64,
}

const NAMES: &[&str] = &[
    "mnist-cnn",
    "lenet5",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
];

/// The model names [`build`] knows (`lenet` is also accepted for `lenet5`).
pub fn names() -> &'static [&'static str] {
    NAMES
}

/// Builds a zoo model by name, with its classifier head.
pub fn build(name: &str, opts: &ZooOptions) -> Result<Model> {
    let key = name.trim().to_ascii_lowercase();
    match key.as_str() {
        "mnist-cnn" | "mnist_cnn" => mnist_cnn(
            opts.input_shape.unwrap_or(mnist_cnn::MNIST_INPUT_SHAPE),
            opts.classes.unwrap_or(10),
            opts.seed,
        ),
        "lenet5" | "lenet" | "lenet-5" => lenet5(
            opts.input_shape.unwrap_or(mnist_cnn::MNIST_INPUT_SHAPE),
            opts.classes.unwrap_or(10),
            opts.seed,
        ),
        _ => {
            let depth = key
                .strip_prefix("resnet")
                .and_then(|d| d.parse::<usize>().ok())
                .filter(|d| RESNET_DEPTHS.contains(d));
            let Some(depth) = depth else {
                return Err(ZooError::UnknownModel {
                    name: name.to_string(),
                    known: NAMES.iter().map(|s| s.to_string()).collect(),
                });
            };
            let mut cfg = ResNetConfig::new(depth).seed(opts.seed);
            if let Some(c) = opts.classes {
                cfg = cfg.classes(c);
            }
            if let Some(s) = opts.input_shape {
                cfg = cfg.input_shape(s);
            }
            resnet(&cfg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_by_name_with_options() {
        let m = build("mnist-cnn", &ZooOptions::default()).unwrap();
        assert_eq!(m.count_params(), 34_826);
        let m = build("lenet", &ZooOptions::default()).unwrap();
        assert_eq!(m.name(), "lenet5");
        let opts = ZooOptions {
            classes: Some(4),
            input_shape: Some([32, 32, 3]),
            seed: 3,
        };
        let m = build("ResNet18", &opts).unwrap();
        assert_eq!(m.output_shapes(), vec![vec![4]]);
        assert_eq!(m.inputs()[0].1, vec![32, 32, 3]);
        // every listed name is recognised (the deep ResNets are built in resnet.rs's tests)
        for n in names() {
            assert!(
                n.starts_with("resnet") || build(n, &ZooOptions::default()).is_ok(),
                "{n}"
            );
            if let Some(d) = n.strip_prefix("resnet") {
                assert!(RESNET_DEPTHS.contains(&d.parse().unwrap()), "{n}");
            }
        }
        let m = build(
            "resnet34",
            &ZooOptions {
                classes: Some(2),
                input_shape: Some([32, 32, 3]),
                seed: 0,
            },
        )
        .unwrap();
        assert_eq!(m.name(), "resnet34");
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        for bad in ["vgg16", "resnet", "resnet20", ""] {
            let e = build(bad, &ZooOptions::default()).unwrap_err().to_string();
            assert!(e.contains(&format!("unknown model '{bad}'")), "{e}");
            assert!(
                e.contains("mnist-cnn, lenet5, resnet18, resnet34, resnet50, resnet101, resnet152"),
                "{e}"
            );
        }
        let e = build(
            "mnist-cnn",
            &ZooOptions {
                classes: Some(0),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, ZooError::Config { .. }), "{e}");
    }
}
