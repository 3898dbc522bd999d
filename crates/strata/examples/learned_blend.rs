//! Two (batch, 512) heads mixed by sigmoid(alpha), and the Concatenate + Dense alternative.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    strata::demos::learned_blend::run(&mut std::io::stdout(), 256, 512, 8)?;
    Ok(())
}
