use std::time::Instant;
fn main() {
    let gzb = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/mnist/train-images-idx3-ubyte.gz"
    ))
    .unwrap();
    let t = Instant::now();
    let raw = strata_data::idx::gunzip_idx("x", &gzb, 1 << 30).unwrap();
    println!("gunzip {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    let h = strata_data::sha256_hex(&raw);
    println!("sha {:.1} ms {h}", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    let v: Vec<f32> = raw.iter().map(|&b| b as f32 / 255.0).collect();
    println!("conv {:.1} ms {}", t.elapsed().as_secs_f64() * 1e3, v.len());
}
