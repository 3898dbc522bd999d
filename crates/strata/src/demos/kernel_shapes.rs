//! Why a Keras Conv2D kernel is (7, 7, 8, 16) and not (7, 7, 16): each of the
//! 16 kernels spans all 8 input channels. DepthwiseConv2D is the "one 2-d
//! kernel per channel" convolution the question had in mind.

use std::io::Write;

use strata_nn::layers::{Conv2D, DepthwiseConv2D};
use strata_nn::Model;

use super::DemoResult;

pub struct Facts {
    /// (name, shape) of every weight of the seed model.
    pub weights: Vec<(String, Vec<usize>)>,
    pub output_shapes: Vec<Vec<usize>>,
    pub params: Vec<usize>,
    pub depthwise_kernel: Vec<usize>,
    pub depthwise_params: usize,
}

pub fn run(out: &mut dyn Write) -> DemoResult<Facts> {
    let mut m = Model::sequential("seed_conv", &[101, 101, 1], 0);
    let a = m.add(Conv2D::new(8, (11, 11)))?;
    let b = m.add(Conv2D::new(16, (7, 7)))?;
    let weights: Vec<(String, Vec<usize>)> = m
        .named_weights()
        .into_iter()
        .map(|(n, w)| (n, w.shape().to_vec()))
        .collect();
    let facts_out = vec![m.shape_of(a)?, m.shape_of(b)?];
    let params: Vec<usize> = m.layers().iter().map(|l| l.param_count()).collect();
    let mut dw = Model::sequential("per_channel", &[91, 91, 8], 0);
    dw.add(DepthwiseConv2D::new((7, 7)))?;
    let dk = dw.layers()[0].weights()[0].shape().to_vec();
    let facts = Facts {
        weights,
        output_shapes: facts_out,
        params,
        depthwise_kernel: dk,
        depthwise_params: dw.count_params(),
    };
    write!(out, "{}", m.summary_table())?;
    for (n, s) in &facts.weights {
        writeln!(out, "{n}: {s:?}")?;
    }
    writeln!(
        out,
        "conv2d_1 has 16 kernels of 7x7x8 = 392 weights each: 16*392 + 16 = {}",
        facts.params[1]
    )?;
    writeln!(out, "DepthwiseConv2D((7,7)) on 8 channels: kernel {:?}, {} params (one 7x7 kernel per channel, no mixing)", facts.depthwise_kernel, facts.depthwise_params)?;
    Ok(facts)
}
