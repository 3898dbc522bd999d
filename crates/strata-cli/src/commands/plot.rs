//! `strata plot HISTORY.json --output F.png`: one panel per metric (loss,
//! accuracy, ...) over the epochs, training in blue and validation in orange,
//! with axes, ticks, a title and a legend.

use std::path::{Path, PathBuf};

use strata_nn::History;

use crate::model_arg::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// A history file written by `strata train` (X.history.json).
    history: PathBuf,
    /// The picture to write (.png).
    #[arg(long)]
    output: PathBuf,
}

pub fn run(a: Args) -> CliResult<()> {
    crate::checks::output_path("--output", &a.output, &["png"])?;
    let h = History::load(&a.history)?;
    let (w, ht) = write_plot(&h, &a.output)?;
    eprintln!("wrote {} ({w}x{ht})", a.output.display());
    Ok(())
}

/// Panels for loss, then accuracy, then any other metric; each panel's series
/// 0 is the training value (empty if only `val_` was logged), series 1 `val_`.
pub fn write_plot(h: &History, out: &Path) -> CliResult<(u32, u32)> {
    let mut keys: Vec<&str> = h
        .history
        .keys()
        .map(|k| k.strip_prefix("val_").unwrap_or(k))
        .filter(|k| *k != "learning_rate")
        .collect();
    keys.sort_by_key(|k| (*k != "loss", *k != "accuracy", *k));
    keys.dedup();
    let mut panels = Vec::new();
    for key in keys {
        let train = h.get(key).map(|v| v.to_vec()).unwrap_or_default();
        let mut series = vec![train];
        if let Some(v) = h.get(&format!("val_{key}")) {
            series.push(v.to_vec());
        }
        panels.push((key.to_string(), series));
    }
    if panels.is_empty() {
        return Err("the history has no loss or metric to plot".into());
    }
    Ok(strata_data::pictures::curves(out, &panels)?)
}
