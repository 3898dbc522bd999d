//! ResNet50 backbone + GlobalAveragePooling2D (1, 2048) + Dense(3, softmax) on one image.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    strata::demos::resnet50_head::run(&mut std::io::stdout(), 224)?;
    Ok(())
}
