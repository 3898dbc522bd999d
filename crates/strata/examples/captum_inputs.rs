//! Writes the captum parity network (torchvision-named weights) and input
//! into a folder, for `tests/captum/make_reference.py`:
//!
//!     cargo run --release -p strata --example captum_inputs -- /tmp/parity

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: captum_inputs DIR")?);
    std::fs::create_dir_all(&dir)?;
    let model = strata::parity::model()?;
    let tensors = strata::zoo::strata_to_torchvision(&model);
    strata::nn::model::write_safetensors_atomic(dir.join("weights.safetensors"), &tensors, None)?;
    strata::data::write_npy_f32(dir.join("input.npy"), &strata::parity::input())?;
    println!(
        "wrote {} and {}",
        dir.join("weights.safetensors").display(),
        dir.join("input.npy").display()
    );
    Ok(())
}
