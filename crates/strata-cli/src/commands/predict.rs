//! `strata predict MODEL --input IMG|FOLDER|X.npy [--top-k K] [--output F]`:
//! runs the model in inference mode. Photos are read as the model file says
//! (size, centre crop, normalisation) and each one's top classes are printed
//! with their names and probabilities; `--output` writes them as .csv or
//! .json, or the raw outputs as .npy (CONTRACT's `--input X.npy --output
//! Y.npy` is unchanged).

use std::path::{Path, PathBuf};

use strata_core::Tensor;
use strata_data::{read_npy, write_npy_f32, ImageStream};

use crate::checks;
use crate::image_arg::{self, ImageArgs};
use crate::model_arg::{load_weights, require_trained, CliResult, ModelArgs};
use crate::precision_arg::PrecisionArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Trained weights [default: those of a strata model file given as MODEL].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Run a zoo model's or spec's untrained, random weights on purpose.
    #[arg(long)]
    random_weights: bool,
    /// An image (PNG, JPEG), a folder of images, X.npy (a batch or one
    /// sample), or NAME=X.npy once per input of a multi-input model.
    #[arg(long, required = true)]
    input: Vec<String>,
    /// Y.npy (the raw outputs), or preds.csv / preds.json (the top classes).
    /// Required for .npy inputs with outputs that are not class scores.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Classes printed (and written to .csv/.json) per input.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    #[command(flatten)]
    precision: PrecisionArgs,
    #[command(flatten)]
    images: ImageArgs,
}

/// What `--output` writes, from its extension.
#[derive(Clone, Copy, PartialEq)]
enum OutputFormat {
    Npy,
    Csv,
    Json,
}

fn output_format(p: &Path) -> CliResult<OutputFormat> {
    match p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("npy") => Ok(OutputFormat::Npy),
        Some("csv") => Ok(OutputFormat::Csv),
        Some("json") => Ok(OutputFormat::Json),
        _ => Err(format!(
            "--output {}: expected a .npy, .csv or .json file name",
            p.display()
        )
        .into()),
    }
}

/// One input's top classes: (class id, probability), best first.
type Ranking = Vec<(usize, f32)>;

pub fn run(a: Args) -> CliResult<()> {
    checks::at_least_one("--batch-size", a.batch_size)?;
    checks::at_least_one("--top-k", a.top_k)?;
    a.precision.policy()?;
    let format = a.output.as_deref().map(output_format).transpose()?;
    if let Some(p) = &a.output {
        checks::output_path("--output", p, &["npy", "csv", "json"])?;
    }
    require_trained("predict", &a.model, a.weights.as_deref(), a.random_weights)?;
    let mut m = a.model.build(None)?;
    if let Some(w) = &a.weights {
        load_weights(&mut m, w)?;
    }
    a.precision.apply(&mut m, true)?;
    let is_image_input = |s: &String| {
        let p = Path::new(s);
        p.is_dir() || image_arg::is_image_path(p)
    };
    let (names, out) = if a.input.iter().all(is_image_input) {
        predict_images(&a, &mut m)?
    } else if a.input.iter().any(is_image_input) {
        return Err("--input mixes images and .npy files: give one kind".into());
    } else {
        let out = predict_npy(&a, &mut m)?;
        let n = out.shape().first().copied().unwrap_or(0);
        let stem = a.input.join(",");
        let names = (0..n).map(|i| format!("{stem}[{i}]")).collect();
        (names, out)
    };
    if format == Some(OutputFormat::Npy) {
        if let Some(path) = &a.output {
            write_npy_f32(path, &out)?;
            eprintln!(
                "wrote {} {}",
                path.display(),
                strata_core::fmt_shape(out.shape())
            );
        }
        return Ok(());
    }
    let ranks = rankings(&out, m.ends_in_softmax(), a.top_k)?;
    let class_names = m.info().class_names.clone();
    let label = |k: usize| {
        class_names
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("class {k}"))
    };
    for (name, r) in names.iter().zip(&ranks) {
        let top: Vec<String> = r
            .iter()
            .map(|(k, p)| format!("{} {:.3}", label(*k), p))
            .collect();
        println!("{name}: {}", top.join(", "));
    }
    if let (Some(path), Some(f)) = (&a.output, format) {
        let text = if f == OutputFormat::Csv {
            let mut t = String::from("input,rank,class_id,class,probability\n");
            for (name, r) in names.iter().zip(&ranks) {
                for (i, (k, p)) in r.iter().enumerate() {
                    t.push_str(&format!(
                        "{},{},{k},{},{p}\n",
                        csv_field(name),
                        i + 1,
                        csv_field(&label(*k))
                    ));
                }
            }
            t
        } else {
            let rows: Vec<serde_json::Value> = names
                .iter()
                .zip(&ranks)
                .map(|(name, r)| {
                    let top: Vec<serde_json::Value> = r
                        .iter()
                        .map(|(k, p)| {
                            serde_json::json!({"class_id": k, "class": label(*k), "probability": p})
                        })
                        .collect();
                    serde_json::json!({"input": name, "top": top})
                })
                .collect();
            serde_json::to_string_pretty(&rows)? + "\n"
        };
        strata_nn::model::write_atomic(path, text.as_bytes())?;
        eprintln!("wrote {} ({} inputs)", path.display(), names.len());
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The top `k` classes of every row of (N, classes) outputs, as
/// probabilities (a softmax is applied when the model does not end in one).
fn rankings(out: &Tensor, probabilities: bool, k: usize) -> CliResult<Vec<Ranking>> {
    let [n, classes] = *out.shape() else {
        return Err(format!(
            "the model's outputs {} are not class scores (N, classes): pass --output Y.npy to write them",
            strata_core::fmt_shape(out.shape())
        )
        .into());
    };
    let data = out.data();
    Ok((0..n)
        .map(|i| {
            let row = &data[i * classes..(i + 1) * classes];
            let p: Vec<f32> = if probabilities {
                row.to_vec()
            } else {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
                let sum: f32 = e.iter().sum();
                e.iter().map(|v| v / sum).collect()
            };
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|&x, &y| p[y].total_cmp(&p[x]).then(x.cmp(&y)));
            order.into_iter().take(k).map(|c| (c, p[c])).collect()
        })
        .collect())
}

/// Runs the model on every image named (folders: every image under them),
/// batch by batch; unreadable images are skipped with a warning, or
/// refused with `--strict`.
fn predict_images(a: &Args, m: &mut strata_nn::Model) -> CliResult<(Vec<String>, Tensor)> {
    let mut files = Vec::new();
    for s in &a.input {
        let p = Path::new(s);
        if p.is_dir() {
            files.extend(image_arg::images_under(p)?);
        } else if p.is_file() {
            files.push(p.to_path_buf());
        } else {
            return Err(format!("--input {s}: no such file or folder").into());
        }
    }
    let pre = a.images.preprocessing(m)?;
    let stream = ImageStream::new(
        files.into_iter().map(|f| (f, 0)).collect(),
        image_arg::transform_of(&pre, None),
        a.images.stream_config(a.batch_size, false, 0),
    )?;
    let (mut names, mut parts) = (Vec::new(), Vec::new());
    for batch in stream.epoch(0, 0) {
        let batch = batch?;
        for (path, why) in &batch.skipped {
            eprintln!(
                "warning: {}: skipped, cannot decode the image: {why}",
                path.display()
            );
        }
        if batch.indices.is_empty() {
            continue;
        }
        names.extend(
            batch
                .indices
                .iter()
                .map(|&i| stream.files()[i].0.display().to_string()),
        );
        parts.push(m.predict(&[batch.inputs], a.batch_size)?.remove(0));
    }
    if parts.is_empty() {
        return Err("no image could be read".into());
    }
    Ok((names, Tensor::concat(&parts, 0)?))
}

/// CONTRACT's .npy path: one array per model input; an array of one
/// sample without its batch axis gets one.
fn predict_npy(a: &Args, m: &mut strata_nn::Model) -> CliResult<Tensor> {
    let inputs_of_model: Vec<(String, Vec<usize>)> = m.inputs().to_vec();
    let names: Vec<String> = inputs_of_model.iter().map(|(n, _)| n.clone()).collect();
    let mut inputs: Vec<Option<Tensor>> = vec![None; names.len()];
    for spec in &a.input {
        let (slot, path) = match spec.split_once('=') {
            Some((n, p)) => (
                names.iter().position(|x| x == n).ok_or_else(|| {
                    format!(
                        "--input {n}=...: the model has no input named '{n}' (inputs: {})",
                        names.join(", ")
                    )
                })?,
                p,
            ),
            None if names.len() == 1 => (0, spec.as_str()),
            None => {
                return Err(format!(
                    "the model has {} inputs: pass --input NAME=X.npy for each ({})",
                    names.len(),
                    names.join(", ")
                )
                .into())
            }
        };
        let t = read_npy(path)?.into_tensor()?;
        let sample = &inputs_of_model[slot].1;
        let t = if t.shape() == sample.as_slice() {
            let mut batched = vec![1];
            batched.extend_from_slice(sample);
            t.reshape(&batched)?
        } else {
            crate::data_arg::check_input_shape(path, t.shape(), sample)?;
            t
        };
        inputs[slot] = Some(t);
    }
    let inputs: Vec<Tensor> = inputs
        .into_iter()
        .zip(&names)
        .map(|(t, n)| t.ok_or_else(|| format!("missing --input for model input '{n}'")))
        .collect::<Result<_, _>>()?;
    Ok(m.predict(&inputs, a.batch_size)?.remove(0))
}
