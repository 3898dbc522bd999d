//! `fingerprint`: hashes of the exact bits of strata's results, to show that
//! a restructuring changed no result. Prints one line per result (a name and
//! the FNV-1a hash of its f32 bit patterns); two runs on the same CPU give the
//! same lines exactly when every result is bitwise the same.
//!
//! Covers each convolution that picks its own algorithm (1x1, 3x3 stride 1,
//! 3x3 stride 2, the 7x7 stride-2 stem, grouped, dilated, depthwise) at two
//! batch sizes, forward, dX, dW and db; plain and fused training BatchNorm,
//! forward and backward; a ResNet-50 inference forward and training step at
//! batch 2; and MNIST-CNN training steps. Each at 2 threads and at 1.

use strata_core::ops::batch_norm::update_moving;
use strata_core::{no_grad, set_num_threads, Conv2dConfig, Padding, Rng, Tensor};
use strata_nn::{Loss, Model, Optimizer, Targets};
use strata_zoo::{build, ZooOptions};

type BoxError = Box<dyn std::error::Error>;

/// FNV-1a over the bit patterns of `v`.
fn hash(v: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in v {
        for b in x.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn line(name: &str, v: &[f32]) {
    println!("{name:<48} {:016x} ({} values)", hash(v), v.len());
}

fn grad_line(name: &str, t: &Tensor) {
    match t.grad() {
        Some(g) => line(name, &g.to_vec()),
        None => println!("{name:<48} no gradient"),
    }
}

fn leaf(shape: &[usize], rng: &mut Rng) -> Tensor {
    Tensor::rand_normal(shape, 0.0, 1.0, rng).requires_grad_(true)
}

/// `sum(y * r)` for a random `r`, so the upstream gradient is not all ones.
fn weighted_sum(y: &Tensor, rng: &mut Rng) -> Result<Tensor, BoxError> {
    let r = Tensor::rand_normal(y.shape(), 0.0, 1.0, rng);
    Ok(y.mul(&r)?.sum_all())
}

/// Convolutions that reach each algorithm: `(name, input NHWC, kernel HWIO, config)`.
fn conv_cases() -> Vec<(&'static str, [usize; 3], [usize; 4], Conv2dConfig)> {
    let d = Conv2dConfig::default();
    vec![
        ("1x1", [14, 14, 64], [1, 1, 64, 96], d),
        ("1x1-thin", [9, 9, 8], [1, 1, 8, 12], d),
        (
            "1x1-s2",
            [14, 14, 64],
            [1, 1, 64, 128],
            d.with_strides(2, 2),
        ),
        (
            "3x3-s1-same",
            [14, 14, 64],
            [3, 3, 64, 64],
            d.with_padding(Padding::Same),
        ),
        (
            "3x3-s1-wide",
            [7, 7, 256],
            [3, 3, 256, 256],
            d.with_padding(Padding::Same),
        ),
        ("3x3-s1-valid", [12, 12, 16], [3, 3, 16, 24], d),
        (
            "3x3-s2",
            [14, 14, 64],
            [3, 3, 64, 128],
            d.with_strides(2, 2).with_padding(Padding::Same),
        ),
        (
            "7x7-s2-stem",
            [56, 56, 3],
            [7, 7, 3, 64],
            d.with_strides(2, 2).with_padding(Padding::Same),
        ),
        (
            "grouped",
            [10, 10, 12],
            [3, 3, 4, 18],
            d.with_groups(3).with_padding(Padding::Same),
        ),
        (
            "dilated",
            [13, 13, 8],
            [3, 3, 8, 16],
            d.with_dilation(2, 2).with_padding(Padding::Same),
        ),
        (
            "5x5-s1",
            [11, 11, 8],
            [5, 5, 8, 16],
            d.with_padding(Padding::Same),
        ),
        ("mnist-3x3", [26, 26, 32], [3, 3, 32, 64], d),
        ("1x1-256-64", [14, 14, 256], [1, 1, 256, 64], d),
        ("1x1-512-128", [14, 14, 512], [1, 1, 512, 128], d),
        ("1x1-7x7-512-128", [7, 7, 512], [1, 1, 512, 128], d),
        (
            "3x3-14x14-256",
            [14, 14, 256],
            [3, 3, 256, 256],
            d.with_padding(Padding::Same),
        ),
        (
            "3x3-7x7-512",
            [7, 7, 512],
            [3, 3, 512, 512],
            d.with_padding(Padding::Same),
        ),
    ]
}

fn convolutions(rng: &mut Rng) -> Result<(), BoxError> {
    for (name, [h, w, c], k, cfg) in conv_cases() {
        let batches: &[usize] = if c >= 256 { &[1, 8] } else { &[1, 4] };
        for &n in batches {
            let x = leaf(&[n, h, w, c], rng);
            let kt = leaf(&k, rng);
            let b = leaf(&[k[3]], rng);
            for relu in [false, true] {
                let tag = format!("conv {name} n{n}{}", if relu { " relu" } else { "" });
                for t in [&x, &kt, &b] {
                    t.zero_grad();
                }
                let y = match relu {
                    false => x.conv2d(&kt, Some(&b), cfg)?,
                    true => x.conv2d_relu(&kt, Some(&b), cfg)?,
                };
                line(&format!("{tag} y"), &y.to_vec());
                weighted_sum(&y, rng)?.backward()?;
                grad_line(&format!("{tag} dx"), &x);
                grad_line(&format!("{tag} dw"), &kt);
                grad_line(&format!("{tag} db"), &b);
            }
            // dW alone (the input takes no gradient) and the inference paths
            let xf = x.detach();
            kt.zero_grad();
            let y = xf.conv2d(&kt, None, cfg)?;
            weighted_sum(&y, rng)?.backward()?;
            grad_line(&format!("conv {name} n{n} dw-only"), &kt);
            let kf = kt.detach();
            let y = no_grad(|| xf.conv2d(&kf, Some(&b.detach()), cfg))?;
            line(&format!("conv {name} n{n} infer"), &y.to_vec());
            let y2 = no_grad(|| xf.conv2d(&kf, Some(&b.detach()), cfg))?;
            line(&format!("conv {name} n{n} infer-cached"), &y2.to_vec());
            let (ym, m) = xf.conv2d_moments(&kf, None, cfg)?;
            line(&format!("conv {name} n{n} moments y"), &ym.to_vec());
            let mean: Vec<f32> = m.mean.iter().map(|&v| v as f32).collect();
            let m2: Vec<f32> = m.m2.iter().map(|&v| v as f32).collect();
            line(&format!("conv {name} n{n} moments mean"), &mean);
            line(&format!("conv {name} n{n} moments m2"), &m2);
        }
    }
    // depthwise
    for n in [1, 4] {
        let x = leaf(&[n, 14, 14, 32], rng);
        let k = leaf(&[3, 3, 32, 1], rng);
        let y = x.depthwise_conv2d(&k, None, (1, 1), Padding::Same, (1, 1))?;
        line(&format!("depthwise n{n} y"), &y.to_vec());
        weighted_sum(&y, rng)?.backward()?;
        grad_line(&format!("depthwise n{n} dx"), &x);
        grad_line(&format!("depthwise n{n} dw"), &k);
    }
    Ok(())
}

fn batch_norms(rng: &mut Rng) -> Result<(), BoxError> {
    for (n, h, c) in [(2, 14, 64), (4, 7, 96)] {
        let shape = [n, h, h, c];
        let x = leaf(&shape, rng);
        let res = leaf(&shape, rng);
        let gamma = leaf(&[c], rng);
        let beta = leaf(&[c], rng);
        for variant in [
            "plain",
            "relu",
            "add_relu",
            "with",
            "with_relu",
            "with_add_relu",
        ] {
            let tag = format!("bn {variant} n{n} {h}x{h}x{c}");
            for t in [&x, &res, &gamma, &beta] {
                t.zero_grad();
            }
            // the statistics a convolution would hand over: those of x
            let (xm, moments) = if variant.starts_with("with") {
                let k = Tensor::rand_normal(&[1, 1, c, c], 0.0, 0.2, rng);
                let (y, m) = x.conv2d_moments(&k, None, Conv2dConfig::default())?;
                (y, Some(m))
            } else {
                (x.clone(), None)
            };
            let (g, b) = (Some(&gamma), Some(&beta));
            let (y, mean, var) = match variant {
                "plain" => x.batch_norm_train(g, b, 1e-3)?,
                "relu" => x.batch_norm_train_relu(g, b, 1e-3)?,
                "add_relu" => x.batch_norm_train_add_relu(&res, None, g, b, 1e-3)?,
                "with" => xm.batch_norm_train_with(moments.as_ref().unwrap(), g, b, 1e-3, false)?,
                "with_relu" => {
                    xm.batch_norm_train_with(moments.as_ref().unwrap(), g, b, 1e-3, true)?
                }
                _ => xm.batch_norm_train_add_relu(&res, moments.as_ref(), g, b, 1e-3)?,
            };
            line(&format!("{tag} y"), &y.to_vec());
            line(&format!("{tag} mean"), &mean);
            line(&format!("{tag} var"), &var);
            weighted_sum(&y, rng)?.backward()?;
            grad_line(&format!("{tag} dx"), &x);
            grad_line(&format!("{tag} dres"), &res);
            grad_line(&format!("{tag} dgamma"), &gamma);
            grad_line(&format!("{tag} dbeta"), &beta);
            let mut moving = vec![0.5f32; c];
            update_moving(&mut moving, &mean, 0.99);
            line(&format!("{tag} moving"), &moving);
        }
        let (mm, mv) = (vec![0.1f32; c], vec![0.9f32; c]);
        let yi = no_grad(|| {
            x.detach()
                .batch_norm_infer(&mm, &mv, Some(&gamma.detach()), Some(&beta.detach()), 1e-3)
        })?;
        line(&format!("bn infer n{n}"), &yi.to_vec());
    }
    Ok(())
}

fn weights_lines(prefix: &str, model: &Model) {
    let mut all = Vec::new();
    for (name, w) in model.named_weights() {
        let v = w.value.to_vec();
        if name.contains("conv1") || name.contains("dense") || name.contains("fc") {
            line(&format!("{prefix} {name}"), &v);
        }
        all.extend(v);
    }
    line(&format!("{prefix} all weights"), &all);
}

fn resnet50(rng: &mut Rng) -> Result<(), BoxError> {
    let opts = ZooOptions {
        classes: Some(10),
        input_shape: Some([224, 224, 3]),
        seed: 0,
    };
    let mut model = build("resnet50", &opts)?;
    let x = Tensor::rand_normal(&[2, 224, 224, 3], 0.0, 1.0, rng);
    let y = no_grad(|| model.forward(std::slice::from_ref(&x), false))?;
    line("resnet50 b2 infer", &y[0].to_vec());
    let sparse = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(sparse, Optimizer::sgd(0.01, 0.9, false), &[]);
    let targets = Targets::Classes(vec![3, 7]);
    for step in 0..2 {
        let (loss, out) = model.train_step(std::slice::from_ref(&x), &targets, None)?;
        line(&format!("resnet50 b2 step{step} loss"), &[loss]);
        line(&format!("resnet50 b2 step{step} out"), &out.to_vec());
    }
    weights_lines("resnet50 b2 after", &model);
    let y = no_grad(|| model.forward(std::slice::from_ref(&x), false))?;
    line("resnet50 b2 infer after", &y[0].to_vec());
    Ok(())
}

fn mnist(rng: &mut Rng) -> Result<(), BoxError> {
    let mut model = build("mnist-cnn", &ZooOptions::default())?;
    model.compile(
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        Optimizer::adam(1e-3),
        &[],
    );
    for step in 0..4 {
        let x = Tensor::rand_uniform(&[32, 28, 28, 1], 0.0, 1.0, rng);
        let y = Targets::Classes((0..32).map(|_| rng.below(10)).collect());
        let (loss, _) = model.train_step(std::slice::from_ref(&x), &y, None)?;
        line(&format!("mnist-cnn step{step} loss"), &[loss]);
    }
    weights_lines("mnist-cnn after", &model);
    Ok(())
}

/// Runs every part at each thread count in `threads`; `skip_models` leaves
/// out ResNet-50 and the MNIST CNN (the slow parts).
pub fn run(threads: &[usize], skip_models: bool) -> Result<(), BoxError> {
    for &t in threads {
        set_num_threads(t);
        println!("# threads {t}");
        let mut rng = Rng::new(20_240_531);
        convolutions(&mut rng)?;
        batch_norms(&mut rng)?;
        if !skip_models {
            mnist(&mut rng)?;
            resnet50(&mut rng)?;
        }
    }
    Ok(())
}
