//! `strata explain MODEL [--layer NAME] [--json]`: what each layer computes,
//! with the model's real shapes, and how its parameter count arises.

use crate::model_arg::{CliResult, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Explain only this layer.
    #[arg(long)]
    layer: Option<String>,
    /// Print the explanations as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> CliResult<()> {
    let m = a.model.build(None)?;
    let mut all = m.explain();
    if let Some(name) = &a.layer {
        all.retain(|e| &e.name == name);
        if all.is_empty() {
            return Err(format!("no layer named '{name}' in model '{}'", m.name()).into());
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for e in &all {
            println!("{e}");
        }
    }
    Ok(())
}
