//! Whole-model rows built from strata-zoo: ResNet-50 inference, training
//! step, frozen-backbone fine-tuning step, and one MNIST-CNN epoch.

use crate::record::{model_record, print_row, time_runs, Record};
use crate::Opts;
use strata_core::{no_grad, set_num_threads, Rng, Tensor};
use strata_nn::{FitConfig, Loss, Model, Optimizer, Targets, Verbosity};
use strata_zoo::{build, freeze_backbone, ZooOptions};

type BoxError = Box<dyn std::error::Error>;

/// ResNet-50 at 224x224 under the `--precision` policy.
fn resnet50(classes: usize, opts: &Opts) -> Result<Model, BoxError> {
    let mut m = build(
        "resnet50",
        &ZooOptions {
            classes: Some(classes),
            input_shape: Some([224, 224, 3]),
            seed: 0,
        },
    )?;
    m.set_precision(opts.precision.unwrap_or_default());
    Ok(m)
}

/// A ResNet-50 row's key: `resnet50-infer b8`, or under bfloat16
/// `resnet50-infer b8 mixed_bfloat16` (torch_bench.py's autocast rows match it).
fn resnet50_key(opts: &Opts, key: String) -> String {
    if let Some(p) = opts.precision.filter(|p| p.is_bf16()) {
        format!("{key} {p}")
    } else {
        key
    }
}

fn images(batch: usize, rng: &mut Rng) -> Tensor {
    Tensor::rand_normal(&[batch, 224, 224, 3], 0.0, 1.0, rng)
}

fn labels(batch: usize, classes: usize, rng: &mut Rng) -> Targets {
    Targets::Classes((0..batch).map(|_| rng.below(classes)).collect())
}

fn sparse_ce() -> Loss {
    Loss::SparseCategoricalCrossentropy { from_logits: false }
}

fn push(out: &mut Vec<Record>, r: Record) {
    print_row(&r);
    out.push(r);
}

/// `resnet50-infer`: forward pass without a graph, batch 1 and 8.
pub fn resnet50_infer(opts: &Opts, t: usize, out: &mut Vec<Record>) -> Result<(), BoxError> {
    set_num_threads(t);
    let mut model = resnet50(1000, opts)?;
    let mut rng = Rng::new(3);
    for batch in [1, 8] {
        let x = images(batch, &mut rng);
        let mut err = None;
        let times = time_runs(
            opts.warmup,
            opts.runs,
            || {},
            || {
                if let Err(e) = no_grad(|| model.forward(std::slice::from_ref(&x), false)) {
                    err = Some(e);
                }
            },
        );
        if let Some(e) = err {
            return Err(e.into());
        }
        push(
            out,
            model_record(
                "model",
                resnet50_key(opts, format!("resnet50-infer b{batch}")),
                t,
                opts.runs,
                times,
                batch,
            ),
        );
    }
    Ok(())
}

fn train_steps(
    model: &mut Model,
    x: &Tensor,
    y: &Targets,
    opts: &Opts,
) -> Result<(f64, f64), BoxError> {
    let mut err = None;
    let times = time_runs(
        opts.train_warmup,
        opts.runs,
        || {},
        || {
            if let Err(e) = model.train_step(std::slice::from_ref(x), y, None) {
                err = Some(e);
            }
        },
    );
    match err {
        Some(e) => Err(e.into()),
        None => Ok(times),
    }
}

/// `resnet50-train`: forward + backward + SGD(momentum 0.9) step, batch 8.
pub fn resnet50_train(opts: &Opts, t: usize, out: &mut Vec<Record>) -> Result<(), BoxError> {
    set_num_threads(t);
    let mut model = resnet50(1000, opts)?;
    model.compile(sparse_ce(), Optimizer::sgd(0.01, 0.9, false), &[]);
    let mut rng = Rng::new(4);
    let (x, y) = (images(8, &mut rng), labels(8, 1000, &mut rng));
    let times = train_steps(&mut model, &x, &y, opts)?;
    push(
        out,
        model_record(
            "model",
            resnet50_key(opts, "resnet50-train b8".into()),
            t,
            opts.runs,
            times,
            8,
        ),
    );
    Ok(())
}

/// `resnet50-frozen`: backbone frozen (BatchNorm in inference mode), only the
/// 3-class `fc` head trains with SGD(momentum 0.9), batch 16.
pub fn resnet50_frozen(opts: &Opts, t: usize, out: &mut Vec<Record>) -> Result<(), BoxError> {
    set_num_threads(t);
    let mut model = resnet50(3, opts)?;
    freeze_backbone(&mut model)?;
    model.compile(sparse_ce(), Optimizer::sgd(0.01, 0.9, false), &[]);
    let mut rng = Rng::new(5);
    let (x, y) = (images(16, &mut rng), labels(16, 3, &mut rng));
    let times = train_steps(&mut model, &x, &y, opts)?;
    push(
        out,
        model_record(
            "model",
            resnet50_key(opts, "resnet50-frozen b16".into()),
            t,
            opts.runs,
            times,
            16,
        ),
    );
    Ok(())
}

/// `mnist-epoch`: the Keras MNIST CNN, one shuffled epoch over the 60,000
/// bundled training images, batch 128, Adam(1e-3).
pub fn mnist_epoch(opts: &Opts, t: usize, out: &mut Vec<Record>) -> Result<(), BoxError> {
    set_num_threads(t);
    let data = strata_data::Mnist::load_bundled()?;
    let n = data.train_labels.len();
    let x = [data.train_images.clone()];
    let y = Targets::Classes(data.train_labels.clone());
    let mut model = build("mnist-cnn", &ZooOptions::default())?;
    model.compile(sparse_ce(), Optimizer::adam(1e-3), &[]);
    let mut err = None;
    let mut epoch = 0u64;
    let mut fit = |max_steps: Option<u64>| {
        epoch += 1;
        let cfg = FitConfig {
            epochs: 1,
            batch_size: 128,
            shuffle: true,
            seed: epoch,
            verbose: Verbosity::Silent,
            max_steps,
            ..FitConfig::default()
        };
        if let Err(e) = model.fit(&x, &y, &cfg, &mut []) {
            err = Some(e);
        }
    };
    // warm-up: a few steps, not a whole epoch
    fit(Some(5));
    let times = time_runs(0, opts.mnist_runs, || {}, || fit(None));
    if let Some(e) = err {
        return Err(e.into());
    }
    push(
        out,
        model_record(
            "model",
            "mnist-cnn-epoch b128".into(),
            t,
            opts.mnist_runs,
            times,
            n,
        ),
    );
    Ok(())
}
