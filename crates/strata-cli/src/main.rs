//! The `strata` command line (see CONTRACT.md): every subcommand prints one
//! `error: ...` line and exits non-zero on bad input; it never panics on it.

mod checkpointing;
mod checks;
mod commands;
mod data_arg;
mod distributed;
mod image_arg;
mod model_arg;
mod npy_source;
mod precision_arg;
mod sample_arg;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Convolutional networks you can see into: train, inspect and explain them"
)]
struct Cli {
    /// Worker threads for the kernels, at most the cores [default: STRATA_NUM_THREADS or all cores].
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Keras-style table of layers, output shapes and parameter counts.
    #[command(allow_negative_numbers = true)]
    Summary(commands::summary::Args),
    /// Train a model (MNIST, an image folder, or .npy arrays).
    #[command(allow_negative_numbers = true)]
    Train(Box<commands::train::Args>),
    /// Loss and accuracy of trained weights on a dataset.
    #[command(allow_negative_numbers = true)]
    Evaluate(commands::evaluate::Args),
    /// Run a model on photos (top classes with their names) or .npy inputs.
    #[command(allow_negative_numbers = true)]
    Predict(commands::predict::Args),
    /// What every layer computes, with the model's real shapes and parameter counts.
    #[command(allow_negative_numbers = true)]
    Explain(commands::explain::Args),
    /// Write a PNG grid of a convolution layer's kernels.
    #[command(allow_negative_numbers = true)]
    Filters(commands::filters::Args),
    /// Write PNG loss/accuracy curves from a training history.
    #[command(allow_negative_numbers = true)]
    Plot(commands::plot::Args),
    /// Write an SVG picture of the model's graph: layers, shapes and connections.
    #[command(allow_negative_numbers = true)]
    Graph(commands::graph::Args),
    /// Which input pixels raise a class score: gradient, SmoothGrad or integrated gradients.
    #[command(allow_negative_numbers = true)]
    Saliency(commands::saliency::Args),
    /// Where a layer looks for a class: Grad-CAM or Grad-CAM++ over the image.
    #[command(allow_negative_numbers = true)]
    Gradcam(commands::gradcam::Args),
    /// A layer's feature maps for one input, one tile per channel.
    #[command(allow_negative_numbers = true)]
    Activations(commands::activations::Args),
    /// Write the model with its weights as an ONNX file (NHWC inputs, dynamic batch).
    #[command(allow_negative_numbers = true)]
    Export(commands::export::Args),
    /// Read an ONNX model (NCHW from PyTorch, or strata's own) into a strata model file.
    Import(commands::import::Args),
}

/// A clap usage error as one line: every line of its message (the missing
/// argument's name is on the second), without the usage and help hints.
fn usage_error_line(rendered: &str) -> String {
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let line = parts.join(" ");
    let line = line.trim_start_matches("error: ").trim();
    if line.is_empty() {
        "invalid arguments".to_string()
    } else {
        line.to_string()
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            let msg = usage_error_line(&e.to_string());
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    };
    let threads = match cli.threads {
        Some(n) => checks::threads("--threads", n).map(|_| Some(n)),
        None => checks::env_threads(),
    };
    match threads {
        Ok(Some(n)) => strata_core::set_num_threads(n),
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let (name, result) = match cli.command {
        Command::Summary(a) => ("summary", commands::summary::run(a)),
        Command::Train(a) => ("train", commands::train::run(*a)),
        Command::Evaluate(a) => ("evaluate", commands::evaluate::run(a)),
        Command::Predict(a) => ("predict", commands::predict::run(a)),
        Command::Explain(a) => ("explain", commands::explain::run(a)),
        Command::Filters(a) => ("filters", commands::filters::run(a)),
        Command::Plot(a) => ("plot", commands::plot::run(a)),
        Command::Graph(a) => ("graph", commands::graph::run(a)),
        Command::Saliency(a) => ("saliency", commands::saliency::run(a)),
        Command::Gradcam(a) => ("gradcam", commands::gradcam::run(a)),
        Command::Activations(a) => ("activations", commands::activations::run(a)),
        Command::Export(a) => ("export", commands::export::run(a)),
        Command::Import(a) => ("import", commands::import::run(a)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_line(name, &e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// A command's error as one line that names the command: "train: ...". The
/// library's "training:" prefix is dropped where nothing is being trained.
fn error_line(command: &str, message: &str) -> String {
    let one_line = message.replace('\n', " ");
    let text = match one_line.strip_prefix("training: ") {
        Some(rest) if command != "train" => rest.to_string(),
        _ => one_line,
    };
    let text = text
        .strip_prefix(&format!("{command}: "))
        .unwrap_or(&text)
        .to_string();
    format!("{command}: {text}")
}
