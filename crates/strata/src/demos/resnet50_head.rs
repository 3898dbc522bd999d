//! How a Dense layer after global average pooling turns ResNet50's (1, 2048)
//! into (1, 3) class scores: backbone -> GlobalAveragePooling2D -> Dense(3, softmax).

use std::io::Write;

use strata_core::{no_grad, Rng, Tensor};
use strata_nn::layers::Dense;
use strata_nn::{Activation, Model};
use strata_zoo::{resnet, Pooling, ResNetConfig};

use super::{max_abs_diff, DemoResult};

pub struct Facts {
    pub image_shape: Vec<usize>,
    pub pooled_shape: Vec<usize>,
    pub probs_shape: Vec<usize>,
    /// max |Dense output - softmax(x·W + b)|
    pub dense_vs_explicit: f32,
    pub prob_sum: f32,
    pub head_params: usize,
}

/// Runs one `size`x`size` image through the network (224 is ResNet's native size).
pub fn run(out: &mut dyn Write, size: usize) -> DemoResult<Facts> {
    let mut backbone = resnet(
        &ResNetConfig::new(50)
            .input_shape([size, size, 3])
            .without_top(Some(Pooling::Avg))
            .seed(1),
    )?;
    let mut head = Model::sequential("head", &[2048], 2);
    head.add(Dense::new(3).activation(Activation::Softmax).named("dense"))?;
    let image = Tensor::rand_uniform(&[1, size, size, 3], 0.0, 1.0, &mut Rng::new(3));
    let (pooled, probs) = no_grad(|| -> DemoResult<(Tensor, Tensor)> {
        let pooled = backbone
            .forward(std::slice::from_ref(&image), false)?
            .remove(0);
        let probs = head
            .forward(std::slice::from_ref(&pooled), false)?
            .remove(0);
        Ok((pooled, probs))
    })?;
    let dense = head.layer("dense").ok_or("no dense layer")?;
    let (w, b) = (&dense.weights()[0].value, &dense.weights()[1].value);
    let explicit = pooled.matmul(w)?.add(b)?.softmax(-1)?;
    let facts = Facts {
        image_shape: image.shape().to_vec(),
        pooled_shape: pooled.shape().to_vec(),
        probs_shape: probs.shape().to_vec(),
        dense_vs_explicit: max_abs_diff(&probs.to_vec(), &explicit.to_vec()),
        prob_sum: probs.to_vec().iter().sum(),
        head_params: dense.param_count(),
    };
    writeln!(out, "image:                 {:?}", facts.image_shape)?;
    writeln!(
        out,
        "backbone + GAP:        {:?}  (2048 channels, each averaged over the final 7x7 map)",
        facts.pooled_shape
    )?;
    writeln!(out, "Dense(3, softmax):     {:?}", facts.probs_shape)?;
    writeln!(
        out,
        "head params:           2048*3 + 3 = {}",
        facts.head_params
    )?;
    writeln!(out, "probabilities:         {:?}", probs.to_vec())?;
    writeln!(out, "sum of probabilities:  {:.7}", facts.prob_sum)?;
    writeln!(
        out,
        "max |Dense - softmax(x·W + b)|: {:e}",
        facts.dense_vs_explicit
    )?;
    Ok(facts)
}
