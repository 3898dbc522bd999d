//! Times decoding the bundled MNIST (gunzip + SHA-256 + u8→f32).
//! `cargo run --release -p strata-data --example mnist_decode_time`

use std::time::Instant;

fn main() -> Result<(), strata_data::DataError> {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let m = strata_data::Mnist::load_bundled()?;
        let s = t.elapsed().as_secs_f64();
        best = best.min(s);
        assert_eq!(m.train_labels.len(), 60000);
    }
    println!("bundled MNIST decode: best of 5 = {:.1} ms", best * 1e3);
    Ok(())
}
