//! Why the Conv2D kernel is (7, 7, 8, 16), and DepthwiseConv2D's per-channel kernels.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    strata::demos::kernel_shapes::run(&mut std::io::stdout())?;
    Ok(())
}
