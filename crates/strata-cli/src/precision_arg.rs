//! `--precision float32|mixed_bfloat16` (Keras's policy names) on `train`,
//! `evaluate` and `predict`: the model-wide policy its Conv2D and Dense
//! layers multiply in (see `Model::set_precision`).

use strata_core::Precision;
use strata_nn::Model;

use crate::checks;
use crate::model_arg::CliResult;

#[derive(clap::Args, Debug, Clone)]
pub struct PrecisionArgs {
    /// float32 or mixed_bfloat16: Conv2D and Dense multiply bfloat16 operands
    /// and sum in float32; weights and every other layer stay float32 [default: float32].
    #[arg(long)]
    pub precision: Option<String>,
}

impl PrecisionArgs {
    /// The policy asked for, checked before any work starts.
    pub fn policy(&self) -> CliResult<Precision> {
        match &self.precision {
            Some(p) => checks::precision("--precision", p),
            None => Ok(Precision::Float32),
        }
    }

    /// Sets the policy on `model` and, when the flag was given and `lead`,
    /// says once on stderr which policy runs (and which bfloat16 kernel).
    pub fn apply(&self, model: &mut Model, lead: bool) -> CliResult<()> {
        let p = self.policy()?;
        model.set_precision(p);
        if lead && self.precision.is_some() {
            eprintln!("{}", header(p));
        }
        Ok(())
    }
}

/// `precision: mixed_bfloat16 (bfloat16 kernel: portable)`, or
/// `precision: float32`.
pub fn header(p: Precision) -> String {
    if p.is_bf16() {
        format!(
            "precision: {p} (bfloat16 kernel: {})",
            strata_core::precision::bf16_kernel()
        )
    } else {
        format!("precision: {p}")
    }
}
