//! `strata summary MODEL [--json]`.

use crate::model_arg::{CliResult, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Print the CONTRACT JSON document instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> CliResult<()> {
    let m = a.model.build(None)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&m.summary_json())?);
    } else {
        print!("{}", m.summary_table());
    }
    Ok(())
}
