//! A 1x1 Conv2D equals a Dense layer applied to every pixel.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    strata::demos::one_by_one_conv::run(&mut std::io::stdout())?;
    Ok(())
}
