//! Resolves the MODEL argument: a spec file, a saved weights file (its spec is
//! in the metadata), or a zoo name, with `--classes` and `--input-shape`.

use std::path::Path;

use clap::Args as ClapArgs;
use strata_nn::Model;

/// Flags every command that takes a MODEL shares.
#[derive(ClapArgs, Debug, Clone)]
pub struct ModelArgs {
    /// A spec .json file, a .safetensors saved by strata, or a zoo name (mnist-cnn, lenet5, resnet18 ... resnet152).
    pub model: String,
    /// Number of classes of a zoo model's head.
    #[arg(long)]
    pub classes: Option<usize>,
    /// Input shape H,W,C of a zoo model.
    #[arg(long, value_parser = parse_shape)]
    pub input_shape: Option<[usize; 3]>,
    /// Seed for weight initialisation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

fn parse_shape(s: &str) -> Result<[usize; 3], String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{s}' is not H,W,C"))
        })
        .collect::<Result<_, _>>()?;
    match v.as_slice() {
        [h, w, c] if *h > 0 && *w > 0 && *c > 0 => Ok([*h, *w, *c]),
        _ => Err(format!("'{s}' is not three positive sizes H,W,C")),
    }
}

pub type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

impl ModelArgs {
    /// Builds the model. `classes_hint` fills in `--classes` when the data
    /// decides it (an image folder with N class folders).
    pub fn build(&self, classes_hint: Option<usize>) -> CliResult<Model> {
        let p = Path::new(&self.model);
        let is_file = p.is_file();
        if is_file && self.model.ends_with(".safetensors") {
            let (_, meta) = strata_nn::model::read_safetensors(p)?;
            let spec = meta.get("spec").ok_or_else(|| {
                format!(
                    "{}: no model spec in its metadata (not saved by strata?)",
                    p.display()
                )
            })?;
            let v: serde_json::Value = serde_json::from_str(spec)
                .map_err(|e| format!("{}: bad spec in metadata: {e}", p.display()))?;
            let mut m = strata_nn::model::model_from_spec(&v, self.seed)?;
            m.load_weights(p)?;
            m.set_info(strata_nn::ModelInfo::read_from(
                &meta,
                &p.display().to_string(),
            )?);
            return Ok(m);
        }
        if is_file || self.model.ends_with(".json") {
            if self.classes.is_some() || self.input_shape.is_some() {
                return Err(
                    "--classes and --input-shape apply to zoo models, not spec files".into(),
                );
            }
            return Ok(strata_nn::model::model_from_spec_file(p, self.seed)?);
        }
        let opts = strata_zoo::ZooOptions {
            classes: self.classes.or(classes_hint),
            input_shape: self.input_shape,
            seed: self.seed,
        };
        strata_zoo::build(&self.model, &opts).map_err(|e| match e {
            strata_zoo::ZooError::UnknownModel { .. } => format!(
                "unknown model '{}': not a file, and not one of {}",
                self.model,
                strata_zoo::names().join(", ")
            )
            .into(),
            other => Box::new(other) as Box<dyn std::error::Error>,
        })
    }

    /// Whether MODEL is a model file saved by strata (it brings its weights).
    pub fn is_model_file(&self) -> bool {
        self.model.ends_with(".safetensors") && Path::new(&self.model).is_file()
    }

    /// Whether MODEL names a zoo model (whose head can follow the data).
    pub fn is_zoo(&self) -> bool {
        !Path::new(&self.model).exists()
            && !self.model.ends_with(".json")
            && !self.model.ends_with(".safetensors")
    }

    /// A short name for output files.
    pub fn stem(&self) -> String {
        Path::new(&self.model)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "model".into())
    }
}

/// Refuses to answer with weights nobody trained: a command given a zoo
/// name or a spec needs `--weights`, unless `--random-weights` asks for the
/// untrained ones on purpose (then it says so).
pub fn require_trained(
    command: &str,
    model: &ModelArgs,
    weights: Option<&Path>,
    random_weights: bool,
) -> CliResult<()> {
    if weights.is_some() || model.is_model_file() {
        if random_weights {
            return Err(format!(
                "--random-weights contradicts {}: give one or the other",
                if weights.is_some() {
                    "--weights"
                } else {
                    "a model file with its weights"
                }
            )
            .into());
        }
        return Ok(());
    }
    if random_weights {
        eprintln!(
            "note: {command} runs untrained, randomly initialised weights (--random-weights)"
        );
        return Ok(());
    }
    let what = if model.is_zoo() {
        "a zoo name"
    } else {
        "a spec"
    };
    Err(format!(
        "'{}' is {what}, without trained weights: pass --weights W.safetensors (or --random-weights to {command} untrained ones on purpose)",
        model.model
    )
    .into())
}

/// Loads `--weights` into a model, accepting torchvision-named ResNet files.
pub fn load_weights(model: &mut Model, path: &Path) -> CliResult<()> {
    for w in strata_zoo::load_weights_auto(model, path)? {
        eprintln!("warning: {}: {w}", path.display());
    }
    Ok(())
}
