//! The streaming image loader on a folder of JPEGs (see jpegs.rs): alone
//! (`loader`: decode, random resized crop to 224, flip, ImageNet
//! normalisation, batch 32) and feeding the ResNet-50 training step
//! (`resnet50-jpeg`: how long the step waits for its next batch, and how
//! much slower the step is while the workers share the cores with it).

use std::path::PathBuf;
use std::time::Instant;

use crate::jpegs;
use crate::record::{model_record, print_row, time_runs, Record};
use crate::Opts;
use strata_core::set_num_threads;
use strata_data::{
    list_class_files, Augmentation, ImageStream, ImageStreamConfig, ImageTransform, IMAGENET_MEAN,
    IMAGENET_STD,
};
use strata_nn::{Loss, Model, Optimizer, Targets};
use strata_zoo::{build, ZooOptions};

type BoxError = Box<dyn std::error::Error>;

/// torchvision's ImageNet training transform: `RandomResizedCrop(224)`,
/// `RandomHorizontalFlip()`, `ToTensor()`, `Normalize(mean, std)`.
fn train_transform() -> ImageTransform {
    ImageTransform {
        augment: Some(Augmentation::standard()),
        mean: IMAGENET_MEAN.to_vec(),
        std: IMAGENET_STD.to_vec(),
        ..ImageTransform::resize(224, 224, 3)
    }
}

/// The benchmark folder's files, made first if need be.
fn files(opts: &Opts) -> Result<Vec<(PathBuf, usize)>, BoxError> {
    let dir = jpegs::ensure_folder(&opts.jpeg_dir, opts.jpeg_count, opts.jpeg_classes)?;
    Ok(list_class_files(&dir)?.1)
}

fn stream(
    opts: &Opts,
    batch_size: usize,
    drop_last: bool,
    workers: usize,
) -> Result<ImageStream, BoxError> {
    Ok(ImageStream::new(
        files(opts)?,
        train_transform(),
        ImageStreamConfig {
            batch_size,
            shuffle: true,
            seed: 0,
            drop_last,
            workers,
            in_flight: 4,
            strict: true,
        },
    )?)
}

fn push(out: &mut Vec<Record>, r: Record) {
    print_row(&r);
    out.push(r);
}

/// `loader`: images/s of whole epochs at batch 32 with `t` workers; each
/// run is a new epoch (a new order and new crops), its threads' start
/// included.
pub fn loader(opts: &Opts, t: usize, out: &mut Vec<Record>) -> Result<(), BoxError> {
    let stream = stream(opts, 32, false, t)?;
    let mut epoch = 0u64;
    let mut images = 0usize;
    let mut err = None;
    let times = time_runs(
        opts.warmup,
        opts.runs,
        || {},
        || {
            images = 0;
            for batch in stream.epoch(epoch, 0) {
                match batch {
                    Ok(b) => images += b.labels.len(),
                    Err(e) => err = Some(e),
                }
            }
            epoch += 1;
        },
    );
    if let Some(e) = err {
        return Err(e.into());
    }
    let mut r = model_record(
        "loader",
        "loader-rrc224-b32".into(),
        t,
        opts.runs,
        times,
        images,
    );
    r.note = format!("{images} JPEGs, {t} workers, RandomResizedCrop 224 + flip + normalise");
    push(out, r);
    Ok(())
}

/// Time blocked in `next()` and time in the step, per timed step.
struct StepTimes {
    wait: Vec<f64>,
    step: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// `resnet50-jpeg`: `resnet50-train`'s step (batch 8, SGD momentum 0.9) fed
/// from the JPEG folder through `ImageStream` (`t` workers, 4 batches in
/// flight), after `--train-warmup` steps; then the same number of steps on
/// one held batch with the workers stopped, for the step without the loader.
pub fn resnet50_jpeg(opts: &Opts, t: usize, out: &mut Vec<Record>) -> Result<(), BoxError> {
    set_num_threads(t);
    let stream = stream(opts, 8, true, t)?;
    let mut model: Model = build(
        "resnet50",
        &ZooOptions {
            classes: Some(1000),
            input_shape: Some([224, 224, 3]),
            seed: 0,
        },
    )?;
    model.compile(
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        Optimizer::sgd(0.01, 0.9, false),
        &[],
    );
    let steps = opts.jpeg_steps.max(1);
    let mut times = StepTimes {
        wait: Vec::new(),
        step: Vec::new(),
    };
    let mut epoch = 0u64;
    let mut batches = stream.epoch(epoch, 0);
    let mut last = None;
    for s in 0..opts.train_warmup + steps {
        let t0 = Instant::now();
        let batch = loop {
            match batches.next() {
                Some(b) => break b?,
                None => {
                    epoch += 1;
                    batches = stream.epoch(epoch, 0);
                }
            }
        };
        let t1 = Instant::now();
        let y = Targets::Classes(batch.labels.clone());
        model.train_step(std::slice::from_ref(&batch.inputs), &y, None)?;
        let t2 = Instant::now();
        if s >= opts.train_warmup {
            times.wait.push((t1 - t0).as_secs_f64());
            times.step.push((t2 - t1).as_secs_f64());
        }
        last = Some((batch.inputs, y));
    }
    drop(batches);
    let (x, y) = last.ok_or("no batch")?;
    let mut plain = Vec::new();
    for _ in 0..steps {
        let t0 = Instant::now();
        model.train_step(std::slice::from_ref(&x), &y, None)?;
        plain.push(t0.elapsed().as_secs_f64());
    }

    let iter: Vec<f64> = times
        .wait
        .iter()
        .zip(&times.step)
        .map(|(w, s)| w + s)
        .collect();
    let min = iter.iter().copied().fold(f64::INFINITY, f64::min);
    let mut r = model_record(
        "model",
        "resnet50-jpeg b8".into(),
        t,
        steps,
        (median(&iter), min),
        8,
    );
    let (wait, step): (f64, f64) = (times.wait.iter().sum(), times.step.iter().sum());
    r.wait_fraction = Some(wait / step);
    r.max_wait_s = times.wait.iter().copied().reduce(f64::max);
    r.step_s = Some(median(&times.step));
    r.plain_step_s = Some(median(&plain));
    r.note = format!("{t} kernel threads and {t} loader workers on the same cores");
    push(out, r);
    println!(
        "#   waited {:.2}% of the step time (longest wait {:.1} ms); step {:.1} ms fed from JPEGs, \
         {:.1} ms on a held batch with the workers stopped (medians of {steps})",
        100.0 * wait / step,
        1e3 * times.wait.iter().copied().fold(0.0, f64::max),
        1e3 * median(&times.step),
        1e3 * median(&plain),
    );
    Ok(())
}
