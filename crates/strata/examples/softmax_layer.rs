//! Softmax as a function, and Dense + softmax as a classifier.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    strata::demos::softmax_layer::run(&mut std::io::stdout(), 30)?;
    Ok(())
}
