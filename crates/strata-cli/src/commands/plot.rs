//! `strata plot HISTORY.json --output F.png`: loss and accuracy curves per
//! epoch (training in blue, validation in orange).

use std::path::{Path, PathBuf};

use strata_nn::History;

use crate::model_arg::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// A history file written by `strata train` (X.history.json).
    history: PathBuf,
    #[arg(long)]
    output: PathBuf,
}

pub fn run(a: Args) -> CliResult<()> {
    let h = History::load(&a.history)?;
    let (w, ht) = write_plot(&h, &a.output)?;
    eprintln!("wrote {} ({w}x{ht})", a.output.display());
    Ok(())
}

pub fn write_plot(h: &History, out: &Path) -> CliResult<(u32, u32)> {
    let mut panels = Vec::new();
    for key in ["loss", "accuracy"] {
        let mut series = Vec::new();
        for k in [key.to_string(), format!("val_{key}")] {
            if let Some(v) = h.get(&k) {
                series.push(v.to_vec());
            }
        }
        if !series.is_empty() {
            panels.push((key.to_string(), series));
        }
    }
    if panels.is_empty() {
        return Err("the history has neither loss nor accuracy".into());
    }
    Ok(strata_data::pictures::curves(out, &panels)?)
}
