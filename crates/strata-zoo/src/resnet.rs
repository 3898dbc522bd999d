//! ResNet-18/34/50/101/152 exactly as torchvision builds them (ResNet v1.5),
//! channels-last, so torchvision weights give torchvision's outputs.
//!
//! - Stem: `conv1` 7x7/2 with explicit padding 3 -> `bn1` -> `relu` ->
//!   `maxpool` 3x3/2 with explicit padding 1.
//! - `layer1`..`layer4`: BasicBlocks (two 3x3 convolutions) for 18/34,
//!   Bottlenecks (1x1 -> 3x3 -> 1x1, expansion 4) for 50/101/152; the stride
//!   of a stage's first block sits on its 3x3 convolution (v1.5); every 3x3
//!   convolution has explicit padding 1. When the shape changes, the shortcut
//!   is `downsample.0` (1x1 conv, stride s) -> `downsample.1` (BN). The sum
//!   (`add`) is followed by a ReLU (`relu`).
//! - Convolutions have no bias; BatchNormalization uses epsilon 1e-5 and
//!   momentum 0.9 (PyTorch's `momentum=0.1`; strata updates the moving
//!   variance with the biased batch variance, PyTorch with the unbiased one).
//! - Head (`include_top`): `avgpool` (GlobalAveragePooling2D) -> `fc`
//!   (Dense(classes, softmax)). Without the top, `pooling` optionally adds
//!   `avgpool` or `maxpool_global`, otherwise the model ends on the last
//!   feature map.
//!
//! Layer names are torchvision's module paths (`conv1`, `bn1`,
//! `layer1.0.conv1`, `layer1.0.downsample.0`, `fc`), so a weight is
//! `<torchvision module>.<Keras weight name>`: torchvision's
//! `layer1.0.bn1.running_mean` is strata's `layer1.0.bn1.moving_mean`
//! (see `torchvision.rs`). Layers without weights that torchvision shares or
//! has no module for get their own names: `layerL.B.relu1`, `.relu2`,
//! `.add`, `.relu`.
//!
//! Counted the Keras way (moving statistics are non-trainable parameters),
//! ResNet-50 with 3 classes has 23,567,299 parameters (23,514,179 trainable)
//! and ResNet-18 with 1000 classes 11,699,112 (torchvision's 11,689,512 plus
//! 9,600 moving statistics).

use strata_core::ops::Padding;
use strata_nn::layers::{
    ActivationLayer, Add, BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D,
    GlobalMaxPooling2D, MaxPooling2D,
};
use strata_nn::{Activation, Initializer, Layer, Model, Source};

use crate::error::{Result, ZooError};

/// The depths torchvision defines.
pub const RESNET_DEPTHS: [usize; 5] = [18, 34, 50, 101, 152];

/// Global pooling at the end of a model built without its classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// GlobalAveragePooling2D (`avgpool`).
    Avg,
    /// GlobalMaxPooling2D (`maxpool_global`).
    Max,
}

/// Options of a zoo ResNet (Keras `applications` argument names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetConfig {
    /// 18, 34, 50, 101 or 152.
    pub depth: usize,
    /// Per-sample input (H, W, C); torchvision's default is (224, 224, 3).
    pub input_shape: [usize; 3],
    /// Ends in `avgpool` -> `fc` (Dense(classes, softmax)).
    pub include_top: bool,
    /// Global pooling when `include_top` is false (ignored with the top).
    pub pooling: Option<Pooling>,
    /// Outputs of `fc`.
    pub classes: usize,
    /// Seed of the weight initialisation (and dropout-free, so only that).
    pub seed: u64,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        ResNetConfig {
            depth: 50,
            input_shape: [224, 224, 3],
            include_top: true,
            pooling: None,
            classes: 1000,
            seed: 0,
        }
    }
}

impl ResNetConfig {
    /// The ImageNet classifier of the given depth (1000 classes, 224x224x3).
    pub fn new(depth: usize) -> Self {
        ResNetConfig {
            depth,
            ..ResNetConfig::default()
        }
    }
    pub fn classes(mut self, classes: usize) -> Self {
        self.classes = classes;
        self.include_top = true;
        self
    }
    pub fn input_shape(mut self, shape: [usize; 3]) -> Self {
        self.input_shape = shape;
        self
    }
    /// No classifier; optional global pooling instead.
    pub fn without_top(mut self, pooling: Option<Pooling>) -> Self {
        self.include_top = false;
        self.pooling = pooling;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Basic,
    Bottleneck,
}

impl Block {
    fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

/// torchvision's block type and blocks per stage for a depth.
fn architecture(depth: usize) -> Option<(Block, [usize; 4])> {
    Some(match depth {
        18 => (Block::Basic, [2, 2, 2, 2]),
        34 => (Block::Basic, [3, 4, 6, 3]),
        50 => (Block::Bottleneck, [3, 4, 6, 3]),
        101 => (Block::Bottleneck, [3, 4, 23, 3]),
        152 => (Block::Bottleneck, [3, 8, 36, 3]),
        _ => return None,
    })
}

/// A bias-free convolution with explicit symmetric padding, He-initialised
/// (torchvision initialises its convolutions with Kaiming normal too).
fn conv(name: &str, filters: usize, k: usize, stride: usize, pad: usize) -> Conv2D {
    Conv2D::new(filters, (k, k))
        .strides(stride)
        .padding(if pad == 0 {
            Padding::Valid
        } else {
            Padding::symmetric(pad)
        })
        .use_bias(false)
        .kernel_initializer(Initializer::HeNormal)
        .named(name)
}

fn bn(name: &str) -> BatchNormalization {
    BatchNormalization::new()
        .epsilon(1e-5)
        .momentum(0.9)
        .named(name)
}

fn named<L: Layer>(mut layer: L, name: &str) -> L {
    layer.set_name(name);
    layer
}

fn relu(name: &str) -> ActivationLayer {
    named(ActivationLayer::new(Activation::Relu), name)
}

/// Appends one residual block `prefix` (e.g. `layer2.0`) and returns its output.
fn block(
    m: &mut Model,
    kind: Block,
    prefix: &str,
    x: Source,
    planes: usize,
    stride: usize,
) -> Result<Source> {
    let in_channels = m.shape_of(x)?.last().copied().unwrap_or(0);
    let out_channels = planes * kind.expansion();
    let p = |s: &str| format!("{prefix}.{s}");
    let mut y = x;
    match kind {
        Block::Basic => {
            y = m.apply(conv(&p("conv1"), planes, 3, stride, 1), &[y])?;
            y = m.apply(bn(&p("bn1")), &[y])?;
            y = m.apply(relu(&p("relu1")), &[y])?;
            y = m.apply(conv(&p("conv2"), planes, 3, 1, 1), &[y])?;
            y = m.apply(bn(&p("bn2")), &[y])?;
        }
        Block::Bottleneck => {
            y = m.apply(conv(&p("conv1"), planes, 1, 1, 0), &[y])?;
            y = m.apply(bn(&p("bn1")), &[y])?;
            y = m.apply(relu(&p("relu1")), &[y])?;
            y = m.apply(conv(&p("conv2"), planes, 3, stride, 1), &[y])?;
            y = m.apply(bn(&p("bn2")), &[y])?;
            y = m.apply(relu(&p("relu2")), &[y])?;
            y = m.apply(conv(&p("conv3"), out_channels, 1, 1, 0), &[y])?;
            y = m.apply(bn(&p("bn3")), &[y])?;
        }
    }
    let shortcut = if stride != 1 || in_channels != out_channels {
        let s = m.apply(conv(&p("downsample.0"), out_channels, 1, stride, 0), &[x])?;
        m.apply(bn(&p("downsample.1")), &[s])?
    } else {
        x
    };
    let sum = m.apply(named(Add::new(), &p("add")), &[y, shortcut])?;
    Ok(m.apply(relu(&p("relu")), &[sum])?)
}

/// Builds a torchvision ResNet; weights come from the model's seeded generator.
pub fn resnet(cfg: &ResNetConfig) -> Result<Model> {
    let name = format!("resnet{}", cfg.depth);
    let Some((kind, stages)) = architecture(cfg.depth) else {
        return Err(ZooError::config(
            &name,
            "depth",
            format!("{} is not one of {:?}", cfg.depth, RESNET_DEPTHS),
        ));
    };
    if cfg.include_top && cfg.classes == 0 {
        return Err(ZooError::config(&name, "classes", "must be at least 1"));
    }
    let mut m = Model::functional(&name, cfg.seed);
    let input = m.input("input_layer", &cfg.input_shape)?;
    let mut x = m.apply(conv("conv1", 64, 7, 2, 3), &[input])?;
    x = m.apply(bn("bn1"), &[x])?;
    x = m.apply(relu("relu"), &[x])?;
    x = m.apply(
        MaxPooling2D::new((3, 3), Some((2, 2)), "valid")
            .with_padding(Padding::symmetric(1))
            .named("maxpool"),
        &[x],
    )?;
    for (stage, &blocks) in stages.iter().enumerate() {
        let planes = 64 << stage;
        for b in 0..blocks {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            x = block(
                &mut m,
                kind,
                &format!("layer{}.{b}", stage + 1),
                x,
                planes,
                stride,
            )?;
        }
    }
    if cfg.include_top {
        x = m.apply(GlobalAveragePooling2D::new(false).named("avgpool"), &[x])?;
        x = m.apply(
            Dense::new(cfg.classes)
                .activation(Activation::Softmax)
                .named("fc"),
            &[x],
        )?;
    } else {
        match cfg.pooling {
            Some(Pooling::Avg) => {
                x = m.apply(GlobalAveragePooling2D::new(false).named("avgpool"), &[x])?
            }
            Some(Pooling::Max) => {
                x = m.apply(
                    named(GlobalMaxPooling2D::new(false), "maxpool_global"),
                    &[x],
                )?
            }
            None => {}
        }
    }
    m.set_outputs(&[x])?;
    Ok(m)
}

/// Freezes every layer but a final Dense classifier (the ResNets' `fc`), for
/// fine-tuning a pretrained backbone; frozen BatchNormalization layers run in
/// inference mode. Returns the names of the layers left trainable.
pub fn freeze_backbone(model: &mut Model) -> Result<Vec<String>> {
    let head = model
        .nodes()
        .last()
        .map(|n| n.layer)
        .filter(|&i| model.layers()[i].as_any().is::<Dense>());
    let names: Vec<(usize, String)> = model
        .layers()
        .iter()
        .enumerate()
        .map(|(i, l)| (i, l.name().to_string()))
        .collect();
    let mut kept = Vec::new();
    for (i, name) in names {
        let keep = Some(i) == head;
        model.set_layer_trainable(&name, keep)?;
        if keep {
            kept.push(name);
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::Tensor;

    fn non_trainable(m: &Model) -> usize {
        m.count_params() - m.count_trainable_params()
    }

    #[test]
    fn resnet50_three_classes_counts_like_keras() {
        let m = resnet(&ResNetConfig::new(50).classes(3)).unwrap();
        assert_eq!(m.count_params(), 23_567_299);
        assert_eq!(m.count_trainable_params(), 23_514_179);
        assert_eq!(non_trainable(&m), 53_120);
        let fc = m.layer("fc").unwrap();
        assert_eq!(fc.param_count(), 2048 * 3 + 3);
        let gap = m.layer_index("avgpool").unwrap();
        let node = m.nodes().iter().find(|n| n.layer == gap).unwrap();
        assert_eq!(node.output_shape, vec![2048]);
        assert_eq!(m.output_shapes(), vec![vec![3]]);
        // torchvision's module paths
        for n in [
            "conv1",
            "bn1",
            "maxpool",
            "layer1.0.downsample.0",
            "layer4.2.conv3",
            "layer3.5.bn3",
        ] {
            assert!(m.layer(n).is_some(), "{n}");
        }
        assert!(m.layer("layer3.6.conv1").is_none());
    }

    #[test]
    fn resnet18_imagenet_counts() {
        let m = resnet(&ResNetConfig::new(18)).unwrap();
        // torchvision: sum(p.numel() for p in parameters()) = 11,689,512;
        // its 4,800 BN channels add 9,600 moving statistics.
        assert_eq!(m.count_trainable_params(), 11_689_512);
        assert_eq!(non_trainable(&m), 9_600);
        assert_eq!(m.count_params(), 11_699_112);
        assert!(m.layer("layer1.0.downsample.0").is_none());
        assert!(m.layer("layer2.0.downsample.0").is_some());
    }

    #[test]
    fn every_depth_matches_torchvision_trainable_counts() {
        // torchvision parameter counts with the 1000-class fc
        for (depth, params) in [
            (34, 21_797_672),
            (50, 25_557_032),
            (101, 44_549_160),
            (152, 60_192_808),
        ] {
            let m = resnet(&ResNetConfig::new(depth).input_shape([32, 32, 3])).unwrap();
            assert_eq!(m.count_trainable_params(), params, "resnet{depth}");
        }
    }

    #[test]
    fn without_top_and_pooling() {
        let m = resnet(
            &ResNetConfig::new(18)
                .input_shape([64, 64, 3])
                .without_top(None),
        )
        .unwrap();
        assert_eq!(m.output_shapes(), vec![vec![2, 2, 512]]);
        assert!(m.layer("fc").is_none());
        let m = resnet(
            &ResNetConfig::new(50)
                .input_shape([64, 64, 3])
                .without_top(Some(Pooling::Avg)),
        )
        .unwrap();
        assert_eq!(m.output_shapes(), vec![vec![2048]]);
        assert_eq!(m.count_trainable_params(), 25_557_032 - 2_049_000);
        let m = resnet(
            &ResNetConfig::new(18)
                .input_shape([64, 64, 3])
                .without_top(Some(Pooling::Max)),
        )
        .unwrap();
        assert_eq!(m.output_shapes(), vec![vec![512]]);
    }

    #[test]
    fn bad_configs_are_errors_not_panics() {
        let e = resnet(&ResNetConfig::new(20)).unwrap_err().to_string();
        assert!(
            e.contains("depth") && e.contains("[18, 34, 50, 101, 152]"),
            "{e}"
        );
        assert!(resnet(&ResNetConfig::new(18).classes(0)).is_err());
        // like torchvision, the padded stem and stages accept any size >= 1
        let tiny = resnet(&ResNetConfig::new(18).classes(2).input_shape([1, 1, 3])).unwrap();
        assert_eq!(tiny.output_shapes(), vec![vec![2]]);
        assert!(resnet(&ResNetConfig::new(18).input_shape([0, 64, 3])).is_err());
    }

    #[test]
    fn resnet18_forward_and_frozen_backbone() {
        let cfg = ResNetConfig::new(18)
            .classes(10)
            .input_shape([64, 64, 3])
            .seed(7);
        let mut m = resnet(&cfg).unwrap();
        let mut rng = strata_core::Rng::new(1);
        let x: Vec<f32> = (0..64 * 64 * 3).map(|_| rng.normal()).collect();
        let y = m
            .forward(&[Tensor::from_vec(x, &[1, 64, 64, 3]).unwrap()], false)
            .unwrap();
        assert_eq!(y[0].shape(), &[1, 10]);
        let p = y[0].to_vec();
        assert!(p.iter().all(|v| v.is_finite() && *v >= 0.0));
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{p:?}");

        let kept = freeze_backbone(&mut m).unwrap();
        assert_eq!(kept, vec!["fc".to_string()]);
        assert_eq!(m.count_trainable_params(), 512 * 10 + 10);
        let names: Vec<String> = m.trainable_params().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["fc.kernel", "fc.bias"]);
    }
}
