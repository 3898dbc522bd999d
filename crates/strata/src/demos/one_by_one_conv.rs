//! Why a 1x1 convolution is a fully connected layer applied to every pixel:
//! a Conv2D(filters, 1) and a Dense(filters) with the same weights agree on
//! every pixel.

use std::io::Write;

use strata_core::ops::Conv2dConfig;
use strata_core::{Rng, Tensor};

use super::{max_abs_diff, DemoResult};

pub struct Facts {
    pub pixels: usize,
    pub max_diff: f32,
}

pub fn run(out: &mut dyn Write) -> DemoResult<Facts> {
    let (n, h, w, cin, cout) = (2, 5, 6, 8, 4);
    let mut rng = Rng::new(11);
    let x = Tensor::rand_normal(&[n, h, w, cin], 0.0, 1.0, &mut rng);
    let kernel = Tensor::rand_normal(&[1, 1, cin, cout], 0.0, 0.5, &mut rng);
    let bias = Tensor::rand_normal(&[cout], 0.0, 0.5, &mut rng);
    let conv = x.conv2d(&kernel, Some(&bias), Conv2dConfig::default())?;
    // the same weights as a Dense kernel (cin, cout) on the channel vector of each pixel
    let dense = x
        .reshape(&[n * h * w, cin])?
        .matmul(&kernel.reshape(&[cin, cout])?)?
        .add(&bias)?;
    let facts = Facts {
        pixels: n * h * w,
        max_diff: max_abs_diff(&conv.to_vec(), &dense.to_vec()),
    };
    writeln!(
        out,
        "input {:?}, 1x1 kernel {:?} (a Dense kernel ({cin}, {cout}) in disguise)",
        x.shape(),
        kernel.shape()
    )?;
    writeln!(
        out,
        "Conv2D output {:?}; Dense on the {} pixel vectors {:?}",
        conv.shape(),
        facts.pixels,
        dense.shape()
    )?;
    writeln!(
        out,
        "max |conv - dense| over every pixel and channel: {:e}",
        facts.max_diff
    )?;
    Ok(facts)
}
