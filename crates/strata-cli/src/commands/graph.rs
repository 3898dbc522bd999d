//! `strata graph MODEL --output F.svg`: the model's graph as an SVG picture
//! (boxes with each layer's name, type and output shape, arrows for the
//! edges, branches side by side), laid out by strata itself.

use std::path::PathBuf;

use crate::model_arg::{CliResult, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The picture to write (.svg).
    #[arg(long)]
    output: PathBuf,
}

pub fn run(a: Args) -> CliResult<()> {
    crate::checks::output_path("--output", &a.output, &["svg"])?;
    let m = a.model.build(None)?;
    let svg = m.graph_svg();
    strata_nn::model::write_atomic(&a.output, svg.as_bytes())?;
    eprintln!("wrote {} ({} layers)", a.output.display(), m.layers().len());
    Ok(())
}
