//! Random filters become edge detectors: first-layer kernels before and after training.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new("runs/learned_filters");
    strata::demos::learned_filters::run(&mut std::io::stdout(), dir, 60_000, 2)?;
    Ok(())
}
