//! `strata train MODEL --data DATA ...` (CONTRACT.md), plus the main job:
//! `strata train mnist-cnn` trains on the bundled MNIST with a recipe that
//! reaches 99% test accuracy, then saves weights, spec, history, curves and
//! the first layer's filters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use strata_nn::model::Callback;
use strata_nn::optimizers::{Adam, RMSprop};
use strata_nn::{
    BatchSource, FitConfig, History, LearningRateSchedule, Loss, Model, Optimizer, Verbosity,
};

use crate::checkpointing::{Checkpointer, Interrupts, StoppedAt};
use crate::checks;
use crate::data_arg::{self, DataRequest};
use crate::image_arg::{self, AugmentArgs, FolderData, ImageArgs, StreamSource};
use crate::model_arg::{load_weights, CliResult, ModelArgs};
use crate::npy_source::{NpySource, STREAM_ABOVE_BYTES};
use crate::precision_arg::PrecisionArgs;

/// Epochs of the mnist-cnn recipe (Adam 2e-3 with cosine decay, batch 128).
pub const MNIST_CNN_EPOCHS: usize = 8;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Initial weights (strata or torchvision-named safetensors) [default: none].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// `mnist` (bundled), a folder of class sub-folders of images, or inputs .npy.
    #[arg(long, default_value = "mnist")]
    data: String,
    /// Labels .npy for --data X.npy (int class ids, or float targets).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Read MNIST's IDX files from this folder instead of the bundled copy.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Epochs [default: 8 for mnist-cnn's recipe, 10 otherwise].
    #[arg(long)]
    epochs: Option<usize>,
    /// Stop after this many optimizer steps in total [default: all the epochs'].
    #[arg(long)]
    steps: Option<u64>,
    /// Samples per step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// sgd, adam, adamw, rmsprop or adagrad.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// Learning rate [default: 0.002 for mnist-cnn's recipe, else Keras's: 0.01 for sgd, 0.001 for the others].
    #[arg(long)]
    lr: Option<f32>,
    /// constant, cosine or exponential [default: cosine for mnist-cnn's recipe, constant otherwise].
    #[arg(long)]
    lr_schedule: Option<String>,
    /// Momentum of sgd and rmsprop [default: 0].
    #[arg(long)]
    momentum: Option<f32>,
    /// Nesterov momentum (sgd).
    #[arg(long)]
    nesterov: bool,
    /// Adam's and AdamW's first-moment decay [default: 0.9].
    #[arg(long = "beta-1")]
    beta_1: Option<f32>,
    /// Adam's and AdamW's second-moment decay [default: 0.999].
    #[arg(long = "beta-2")]
    beta_2: Option<f32>,
    /// The small constant of adam, adamw, rmsprop and adagrad [default: 1e-7].
    #[arg(long)]
    epsilon: Option<f32>,
    /// Decoupled weight decay [default: 0.004 for adamw, none otherwise].
    #[arg(long)]
    weight_decay: Option<f32>,
    /// RMSprop's decay of the squared-gradient average [default: 0.9].
    #[arg(long)]
    rho: Option<f32>,
    /// sparse_categorical_crossentropy, categorical_crossentropy, binary_crossentropy,
    /// mean_squared_error or mean_absolute_error [default: the first for class ids,
    /// the second for float targets after a softmax, else mean_squared_error].
    #[arg(long)]
    loss: Option<String>,
    /// Keep the data's order instead of a new shuffle every epoch.
    #[arg(long)]
    no_shuffle: bool,
    /// Fraction held out for validation: an image folder's files shuffled with
    /// --seed first; MNIST and .npy data lose their last samples, as Keras does.
    #[arg(long)]
    validation_split: Option<f32>,
    /// Load only the --weights tensors that fit the model (e.g. an ImageNet
    /// backbone under a new head); the rest keep their initial values.
    #[arg(long)]
    skip_mismatch: bool,
    /// Train only the classifier head of a zoo ResNet.
    #[arg(long)]
    freeze_backbone: bool,
    /// Where to write the weights (also X.spec.json, X.history.json, X.curves.png,
    /// X.filters.png) [default: runs/MODEL.safetensors, or runs/MODEL-2.safetensors
    /// and so on when taken].
    #[arg(long)]
    save: Option<PathBuf>,
    /// Write a checkpoint (weights, optimizer state, epoch, history) here after every
    /// epoch [default: none; an interrupt writes X.ckpt.safetensors beside --save].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Resume from a checkpoint written by --checkpoint or by an interrupt.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
    /// Read a .npy of inputs a batch at a time instead of whole (automatic
    /// above 2 GiB); training is the same bit for bit.
    #[arg(long)]
    stream: bool,
    /// Train on N processes of this machine: the command relaunched under
    /// mpirun (a build with the `mpi` feature); --batch-size is then the
    /// global batch.
    #[arg(long)]
    workers: Option<usize>,
    /// In a run on several processes: BatchNormalization normalises with each
    /// rank's own batch statistics (PyTorch DDP's way) instead of the global
    /// batch's.
    #[arg(long)]
    local_batchnorm: bool,
    #[command(flatten)]
    precision: PrecisionArgs,
    #[command(flatten)]
    images: ImageArgs,
    #[command(flatten)]
    augment: AugmentArgs,
}

/// Every argument and output path, checked before any data is read: one
/// rule per value (`checks`), and flags that do not apply to the chosen
/// data or optimizer are refused, saying why.
fn check_args(a: &Args) -> CliResult<()> {
    checks::at_least_one("--batch-size", a.batch_size)?;
    a.precision.policy()?;
    if let Some(e) = a.epochs {
        checks::at_least_one("--epochs", e)?;
    }
    if let Some(s) = a.steps {
        checks::at_least_one("--steps", s as usize)?;
    }
    if let Some(v) = a.lr {
        checks::positive("--lr", v)?;
    }
    if let Some(v) = a.epsilon {
        checks::positive("--epsilon", v)?;
    }
    for (flag, v) in [
        ("--beta-1", a.beta_1),
        ("--beta-2", a.beta_2),
        ("--momentum", a.momentum),
        ("--rho", a.rho),
    ] {
        if let Some(v) = v {
            checks::unit_interval(flag, v)?;
        }
    }
    if let Some(v) = a.weight_decay {
        checks::non_negative("--weight-decay", v)?;
    }
    if let Some(v) = a.validation_split {
        checks::open_fraction("--validation-split", v)?;
    }
    let opt = a.optimizer.as_str();
    if !Optimizer::NAMES.contains(&opt) {
        return Err(format!(
            "--optimizer {opt}: expected one of {}",
            Optimizer::NAMES.join(", ")
        )
        .into());
    }
    let applies: [(&str, bool, &[&str]); 6] = [
        ("--momentum", a.momentum.is_some(), &["sgd", "rmsprop"]),
        ("--nesterov", a.nesterov, &["sgd"]),
        ("--beta-1", a.beta_1.is_some(), &["adam", "adamw"]),
        ("--beta-2", a.beta_2.is_some(), &["adam", "adamw"]),
        ("--rho", a.rho.is_some(), &["rmsprop"]),
        (
            "--epsilon",
            a.epsilon.is_some(),
            &["adam", "adamw", "rmsprop", "adagrad"],
        ),
    ];
    for (flag, given, optimizers) in applies {
        if given && !optimizers.contains(&opt) {
            return Err(format!(
                "{flag} applies to {}, not to --optimizer {opt}",
                optimizers.join(" and ")
            )
            .into());
        }
    }
    if let Some(s) = &a.lr_schedule {
        if !["constant", "cosine", "exponential"].contains(&s.as_str()) {
            return Err(
                format!("--lr-schedule '{s}': expected constant, cosine or exponential").into(),
            );
        }
    }
    if let Some(l) = &a.loss {
        Loss::from_name(l)
            .map_err(|_| format!("--loss {l}: expected one of {}", Loss::NAMES.join(", ")))?;
    }
    let folder = Path::new(&a.data).is_dir();
    let npy = a.data.ends_with(".npy");
    if !folder && !npy && a.data != "mnist" {
        return Err(format!(
            "--data '{}': expected 'mnist', a folder of class sub-folders, or an .npy file",
            a.data
        )
        .into());
    }
    if npy && !Path::new(&a.data).is_file() {
        return Err(format!("--data {}: no such file", a.data).into());
    }
    let not_here = |flag: &str, why: &str| -> CliResult<()> {
        Err(format!("{flag} does not apply to --data {}: {why}", a.data).into())
    };
    if a.labels.is_some() && !npy {
        not_here(
            "--labels",
            "labels come with MNIST and from an image folder's sub-folders",
        )?;
    }
    if npy && a.labels.is_none() {
        return Err("--data X.npy needs --labels Y.npy".into());
    }
    if a.data_dir.is_some() && a.data != "mnist" {
        not_here("--data-dir", "it names where MNIST's IDX files are")?;
    }
    if a.stream && !npy {
        not_here("--stream", "it reads a .npy a batch at a time")?;
    }
    if !folder {
        for (flag, given) in [
            ("--augment", a.augment.augment.is_some()),
            ("--crop-scale", a.augment.crop_scale.is_some()),
            ("--crop-ratio", a.augment.crop_ratio.is_some()),
            ("--jitter", a.augment.jitter.is_some()),
            ("--normalize", a.images.normalize.is_some()),
            ("--center-crop", a.images.center_crop.is_some()),
            ("--data-workers", a.images.data_workers.is_some()),
            ("--strict", a.images.strict),
        ] {
            if given {
                not_here(flag, "it is about the images of a folder")?;
            }
        }
    }
    a.augment.augmentation()?;
    if a.skip_mismatch && a.weights.is_none() {
        return Err("--skip-mismatch applies to --weights, which is not given".into());
    }
    for (flag, p) in [
        ("--weights", &a.weights),
        ("--resume", &a.resume),
        ("--labels", &a.labels),
    ] {
        if let Some(p) = p {
            if !p.is_file() {
                return Err(format!("{flag} {}: no such file", p.display()).into());
            }
        }
    }
    Ok(())
}

/// The files `train` writes, checked before it starts: every one is
/// creatable and writable and none is a folder or a device.
fn check_outputs(save: &Path, checkpoint: &Path) -> CliResult<()> {
    checks::output_path("--save", save, &["safetensors"])?;
    checks::output_path("--checkpoint", checkpoint, &["safetensors"])?;
    for suffix in [".spec.json", ".history.json", ".curves.png", ".filters.png"] {
        let p = sibling(save, suffix);
        let ext = suffix.rsplit('.').next().unwrap_or("");
        checks::output_path("--save", &p, &[ext])?;
    }
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    path.with_file_name(format!("{stem}{suffix}"))
}

fn build_optimizer(a: &Args, recipe: bool, steps_total: u64) -> CliResult<Optimizer> {
    let lr = a.lr.or(recipe.then_some(2e-3));
    let mut opt = Optimizer::from_name(&a.optimizer, lr)?;
    let base_lr = opt.current_learning_rate();
    if a.momentum.is_some() && a.optimizer != "sgd" && a.optimizer != "rmsprop" {
        return Err(format!("--momentum applies to sgd and rmsprop, not {}", a.optimizer).into());
    }
    if a.optimizer == "sgd" {
        opt = Optimizer::sgd(base_lr, a.momentum.unwrap_or(0.0), a.nesterov);
    }
    if let Some(r) = opt.rule_mut::<Adam>() {
        if let Some(b) = a.beta_1 {
            r.beta_1 = b;
        }
        if let Some(b) = a.beta_2 {
            r.beta_2 = b;
        }
        if let Some(e) = a.epsilon {
            r.epsilon = e;
        }
    }
    if let Some(r) = opt.rule_mut::<RMSprop>() {
        if let Some(x) = a.rho {
            r.rho = x;
        }
        if let Some(e) = a.epsilon {
            r.epsilon = e;
        }
        if let Some(m) = a.momentum {
            r.momentum = m;
        }
    }
    if let Some(wd) = a.weight_decay {
        opt.weight_decay = Some(wd);
    }
    let schedule = a.lr_schedule.clone().unwrap_or_else(|| {
        if recipe {
            "cosine".into()
        } else {
            "constant".into()
        }
    });
    opt.learning_rate = match schedule.as_str() {
        "constant" => LearningRateSchedule::Constant(base_lr),
        "cosine" => LearningRateSchedule::CosineDecay {
            initial: base_lr,
            decay_steps: steps_total.max(1),
            alpha: 0.0,
        },
        "exponential" => LearningRateSchedule::ExponentialDecay {
            initial: base_lr,
            decay_steps: (steps_total / 10).max(1),
            decay_rate: 0.5,
            staircase: false,
        },
        other => {
            return Err(format!(
                "--lr-schedule '{other}': expected constant, cosine or exponential"
            )
            .into())
        }
    };
    Ok(opt)
}

/// What `train` fits on: tensors in memory, or batches read as training
/// goes (an image folder, a large .npy).
enum TrainData {
    Memory(data_arg::Data),
    Stream {
        train: Box<dyn BatchSource>,
        validation: Option<Box<dyn BatchSource>>,
        /// Dense float targets rather than class ids.
        dense: bool,
    },
}

/// A `.npy` of inputs read a batch at a time: with `--stream`, or when it is
/// larger than [`STREAM_ABOVE_BYTES`].
fn npy_stream(a: &Args, model: &Model) -> CliResult<Option<TrainData>> {
    if !a.data.ends_with(".npy") {
        return Ok(None);
    }
    let big = std::fs::metadata(&a.data).is_ok_and(|m| m.len() > STREAM_ABOVE_BYTES);
    if !a.stream && !big {
        return Ok(None);
    }
    let labels = a
        .labels
        .as_deref()
        .ok_or("--data X.npy needs --labels Y.npy")?;
    let targets = data_arg::targets_from_npy(labels)?;
    let dense = matches!(targets, strata_nn::Targets::Dense(_));
    let outputs = model
        .output_shapes()
        .first()
        .and_then(|s| s.last().copied())
        .unwrap_or(0);
    data_arg::check_labels(&labels.display().to_string(), &targets, outputs)?;
    let source = NpySource::open(Path::new(&a.data), targets, a.batch_size)?;
    let want = model
        .inputs()
        .first()
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    data_arg::check_input_shape(&a.data, source.shape(), &want)?;
    let (train, validation) = source.split(
        a.validation_split.unwrap_or(0.0),
        !a.no_shuffle,
        a.model.seed,
    );
    Ok(Some(TrainData::Stream {
        train: Box::new(train),
        validation: validation.map(|v| Box::new(v) as Box<dyn BatchSource>),
        dense,
    }))
}

/// Streams of an image folder for `model`, whose file info gets the class
/// names and preprocessing; a model that already names its classes (a
/// model file being fine-tuned) has the folder's classes matched by name.
fn prepare_folder(a: &Args, model: &mut Model, lead: bool) -> CliResult<FolderData> {
    let p = a.images.preprocessing(model)?;
    let cfg = a
        .images
        .stream_config(a.batch_size, !a.no_shuffle, a.model.seed);
    let dir = Path::new(&a.data);
    let mut f =
        image_arg::folder_streams(dir, &p, a.augment.augmentation()?, a.validation_split, cfg)?;
    if f.class_names.len() < 2 {
        return Err(format!(
            "{}: one class folder ({}): a classifier needs at least two",
            dir.display(),
            f.class_names.join(", ")
        )
        .into());
    }
    let known = model.info().class_names.clone();
    let class_names = if known.is_empty() {
        f.class_names.clone()
    } else {
        let map = image_arg::match_classes(&f.class_names, &known, dir)?;
        f.train = image_arg::relabel(f.train, &map)?;
        if let Some(v) = f.validation.take() {
            f.validation = Some(image_arg::relabel(v, &map)?);
        }
        known
    };
    let outputs = model
        .output_shapes()
        .first()
        .and_then(|s| s.last().copied())
        .unwrap_or(0);
    if outputs < class_names.len() {
        return Err(format!(
            "{}: {} classes ({}) but the model has {outputs} outputs",
            dir.display(),
            class_names.len(),
            class_names.join(", ")
        )
        .into());
    }
    lead.then(|| {
        println!(
            "classes: {} ({} training images{})",
            class_names.join(", "),
            f.train.len(),
            f.validation
                .as_ref()
                .map(|v| format!(", {} validation", v.len()))
                .unwrap_or_default()
        )
    });
    model.set_info(strata_nn::ModelInfo {
        class_names,
        preprocessing: Some(p),
    });
    Ok(f)
}

pub fn run(a: Args) -> CliResult<()> {
    if let Some(n) = a.workers {
        checks::at_least_one("--workers", n)?;
        check_args(&a)?;
        return crate::distributed::relaunch(n);
    }
    let Some(ranks) = crate::distributed::init()? else {
        if a.local_batchnorm {
            return Err(
                "--local-batchnorm applies to a run on several processes (mpirun, --workers)"
                    .into(),
            );
        }
        return run_on(a, None);
    };
    match run_on(a, Some(&ranks)) {
        Ok(()) => {
            ranks.finish();
            Ok(())
        }
        Err(e) => {
            // every rank meets these alike: rank 0 alone says so
            let agreed = matches!(
                e.downcast_ref::<strata_nn::NnError>(),
                Some(strata_nn::NnError::Ranks(_))
            ) || e.to_string().starts_with("interrupted:");
            ranks.fail(&e.to_string().replace('\n', " "), agreed)
        }
    }
}

/// `train` in this process, alone or as one rank of `ranks` (then rank 0
/// alone prints and writes files).
fn run_on(a: Args, ranks: Option<&crate::distributed::Ranks>) -> CliResult<()> {
    let lead = ranks.is_none_or(|r| r.rank() == 0);
    check_args(&a)?;
    if let Some(w) = a.images.data_workers {
        checks::threads("--data-workers", w)?;
    }
    let save = match &a.save {
        Some(p) => p.clone(),
        // never replace an earlier run's model without being told to
        None => checks::fresh_path(
            &PathBuf::from("runs").join(format!("{}.safetensors", a.model.stem())),
        ),
    };
    let ckpt = a
        .checkpoint
        .clone()
        .unwrap_or_else(|| sibling(&save, ".ckpt.safetensors"));
    check_outputs(&save, &ckpt)?;
    let recipe = a.model.is_zoo() && a.model.model == "mnist-cnn" && a.data == "mnist";
    // a zoo model's head follows the number of class folders (spec files ignore it)
    let mut model = a.model.build(data_arg::class_count_of_folder(&a.data))?;
    a.precision.apply(&mut model, lead)?;
    if let Some(w) = &a.weights {
        if a.skip_mismatch {
            for warning in strata_zoo::load_matching_weights(&mut model, w)? {
                eprintln!("warning: {}: {warning}", w.display());
            }
        } else {
            load_weights(&mut model, w)?;
        }
    }
    if a.freeze_backbone {
        let left = strata_zoo::freeze_backbone(&mut model)?;
        if lead {
            eprintln!("frozen backbone; training {}", left.join(", "));
        }
    }
    let folder = Path::new(&a.data).is_dir();
    let data = if folder {
        let f = prepare_folder(&a, &mut model, lead)?;
        TrainData::Stream {
            train: Box::new(StreamSource(f.train)),
            validation: f
                .validation
                .map(|v| Box::new(StreamSource(v)) as Box<dyn BatchSource>),
            dense: false,
        }
    } else if let Some(d) = npy_stream(&a, &model)? {
        d
    } else if a.data == "mnist" && model.info().is_empty() {
        // digits are their own class names; a photo is resized to the input
        if let Some(shape) = image_arg::image_input_shape(&model) {
            model.set_info(strata_nn::ModelInfo {
                class_names: (0..10).map(|d| d.to_string()).collect(),
                preprocessing: Some(strata_nn::Preprocessing::plain(shape)),
            });
        }
        TrainData::Memory(data_arg::load(&DataRequest {
            data: &a.data,
            labels: a.labels.as_deref(),
            data_dir: a.data_dir.as_deref(),
        })?)
    } else {
        TrainData::Memory(data_arg::load(&DataRequest {
            data: &a.data,
            labels: a.labels.as_deref(),
            data_dir: a.data_dir.as_deref(),
        })?)
    };
    if let TrainData::Memory(d) = &data {
        let want = model
            .inputs()
            .first()
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        data_arg::check_input_shape(&a.data, d.inputs.shape(), &want)?;
    }
    let labels_source = a
        .labels
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| a.data.clone());
    let outputs = model
        .output_shapes()
        .first()
        .and_then(|s| s.last().copied())
        .unwrap_or(0);
    match &data {
        TrainData::Memory(d) => data_arg::check_labels(&labels_source, &d.targets, outputs)?,
        TrainData::Stream { .. } => {}
    }
    let targets_for_loss = match &data {
        TrainData::Memory(d) => d.targets.clone(),
        TrainData::Stream { dense: true, .. } => {
            strata_nn::Targets::Dense(strata_core::Tensor::zeros(&[0, 1]))
        }
        TrainData::Stream { .. } => strata_nn::Targets::Classes(Vec::new()),
    };
    let loss = match &a.loss {
        Some(l) => Loss::from_name(l)?,
        None => data_arg::default_loss(&targets_for_loss, model.ends_in_softmax()),
    };
    let metrics = data_arg::metrics_for(loss);
    let epochs = a
        .epochs
        .unwrap_or(if recipe { MNIST_CNN_EPOCHS } else { 10 });
    let steps_per_epoch = match &data {
        TrainData::Memory(d) => {
            let n = d.inputs.shape().first().copied().unwrap_or(0);
            let held = (n as f64 * a.validation_split.unwrap_or(0.0) as f64).floor() as usize;
            (n - held.min(n)).div_ceil(a.batch_size)
        }
        TrainData::Stream { train, .. } => train.batches_per_epoch(),
    };
    // --steps ends the run, so the epochs shown end where the steps do
    let epochs = match a.steps {
        Some(s) => epochs.min((s as usize).div_ceil(steps_per_epoch.max(1))),
        None => epochs,
    };
    let steps_total = a.steps.unwrap_or(epochs as u64 * steps_per_epoch as u64);
    model.compile(loss, build_optimizer(&a, recipe, steps_total)?, &metrics);
    let (mut initial_epoch, mut initial_step) = (0, 0);
    if let Some(r) = &a.resume {
        (initial_epoch, initial_step) = model.load_checkpoint(r)?;
        lead.then(|| {
            eprintln!(
                "resuming from {} at epoch {}, step {initial_step}",
                r.display(),
                initial_epoch + 1
            )
        });
    }
    let cfg = FitConfig {
        epochs,
        batch_size: a.batch_size,
        shuffle: !a.no_shuffle,
        seed: a.model.seed,
        // tensors in memory hold out their last samples, as Keras does
        validation_split: match &data {
            TrainData::Memory(_) => a.validation_split.unwrap_or(0.0),
            TrainData::Stream { .. } => 0.0,
        },
        verbose: if a.quiet || !lead {
            Verbosity::Silent
        } else {
            Verbosity::Auto
        },
        max_steps: a.steps,
        initial_epoch,
        initial_step,
        distributed: ranks.map(|r| {
            let mut d = r.dist.clone();
            d.sync_batchnorm = !a.local_batchnorm;
            let argv: Vec<String> = std::env::args().skip(1).collect();
            d.agree_on = vec![(
                "the command line".to_string(),
                strata_nn::distributed::hash_bytes(argv.join("\u{1f}").as_bytes()),
            )];
            d
        }),
        ..FitConfig::default()
    };
    let prior = match &a.resume {
        Some(r) => strata_nn::model::checkpoint_history(r)?.unwrap_or_default(),
        None => History::default(),
    };
    let history = Arc::new(Mutex::new(prior));
    let stopped_at: StoppedAt = Arc::new(Mutex::new(None));
    let mut callbacks: Vec<Box<dyn Callback>> = vec![Box::new(Checkpointer {
        every_epoch: a.checkpoint.clone(),
        on_interrupt: ckpt.clone(),
        interrupts: Interrupts::install(),
        history: Arc::clone(&history),
        stopped_at: Arc::clone(&stopped_at),
        ranks: cfg.distributed.clone(),
    })];
    if let Some(r) = ranks {
        if let Some(record) = crate::distributed::StepRecord::from_env(r.rank())? {
            callbacks.push(Box::new(record));
        }
    }
    let start = std::time::Instant::now();
    let this_run = match &data {
        TrainData::Memory(d) => model.fit(
            std::slice::from_ref(&d.inputs),
            &d.targets,
            &cfg,
            &mut callbacks,
        )?,
        TrainData::Stream {
            train, validation, ..
        } => model.fit_source(train.as_ref(), validation.as_deref(), &cfg, &mut callbacks)?,
    };
    let stopped = stopped_at.lock().ok().and_then(|g| *g);
    if let Some((e, st)) = stopped {
        return Err(format!(
            "interrupted: checkpoint written to {} at epoch {}, step {st}; resume with the same command plus --resume {}",
            ckpt.display(),
            e + 1,
            ckpt.display()
        )
        .into());
    }
    let secs = start.elapsed().as_secs_f64();
    let history = history.lock().map(|h| h.clone()).unwrap_or(this_run);
    if !lead {
        // rank 0 reports and writes the files
        return Ok(());
    }
    let epochs_done = history.epoch.len();
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match a.steps {
        Some(st) => println!(
            "trained {} (--steps) in {secs:.1}s",
            plural(st as usize, "step")
        ),
        None => println!("trained {} in {secs:.1}s", plural(epochs_done, "epoch")),
    }
    if let Some(d) = &cfg.distributed {
        report_data_parallel(d);
    }
    let held_out = match &data {
        TrainData::Memory(d) => match &d.test {
            Some((x, y)) => Some((model.evaluate(std::slice::from_ref(x), y, 512)?, y.len())),
            None => None,
        },
        TrainData::Stream { validation, .. } => match validation {
            Some(v) => {
                let (r, skipped) = model.evaluate_source(v.as_ref())?;
                Some((r, v.samples() - skipped))
            }
            None => None,
        },
    };
    let held_out_name = match &data {
        TrainData::Memory(d) => d.test_name,
        TrainData::Stream { .. } => "validation",
    };
    if let Some((r, n)) = held_out {
        match r.get("accuracy").copied() {
            Some(acc) => println!(
                "{held_out_name} accuracy: {:.2}% (loss {:.4}) on {n} samples",
                acc * 100.0,
                r["loss"],
            ),
            None => println!("{held_out_name} loss: {:.4} on {n} samples", r["loss"]),
        }
    }
    model.save_weights(&save)?;
    strata_nn::model::write_atomic(
        &sibling(&save, ".spec.json"),
        serde_json::to_string_pretty(&model.to_spec())?.as_bytes(),
    )?;
    history.save(sibling(&save, ".history.json"))?;
    let mut wrote = vec![save.display().to_string()];
    if !history.epoch.is_empty() {
        let curves = sibling(&save, ".curves.png");
        super::plot::write_plot(&history, &curves)?;
        wrote.push(curves.display().to_string());
    }
    if model.layers().iter().any(|l| l.class_name() == "Conv2D") {
        let f = sibling(&save, ".filters.png");
        super::filters::write_filters(&model, None, &f, 8)?;
        wrote.push(f.display().to_string());
    }
    println!("saved {}", wrote.join(", "));
    Ok(())
}

/// Rank 0's view of the data-parallel steps: the median step (past the
/// first two) and the part of it spent waiting on the all-reduce.
fn report_data_parallel(d: &strata_nn::distributed::Distributed) {
    let timings = d.timings.lock().map(|t| t.clone()).unwrap_or_default();
    let Some(t) = strata_nn::distributed::median_timing(&timings, 2) else {
        return;
    };
    let ms = |x: std::time::Duration| x.as_secs_f64() * 1e3;
    println!(
        "data parallel: {} ranks x {} threads; median step {:.1} ms, {:.1} ms of it waiting on the \
         all-reduce ({:.1}%); {:.1} MB of gradients a step in {} buckets, {} sent during the backward",
        d.size(),
        strata_core::num_threads(),
        ms(t.step),
        ms(t.waited),
        100.0 * ms(t.waited) / ms(t.step).max(1e-9),
        t.bytes as f64 / 1e6,
        t.buckets,
        t.overlapped
    );
}
