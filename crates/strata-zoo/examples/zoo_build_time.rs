//! Builds every zoo model by name and prints its parameter counts and how long
//! building (weight initialisation included) took:
//! `cargo run --release -p strata-zoo --example zoo_build_time`.

use std::time::Instant;

use strata_zoo::{build, names, ZooOptions};

fn main() {
    for name in names() {
        let opts = ZooOptions {
            classes: if name.starts_with("resnet") {
                Some(3)
            } else {
                None
            },
            ..ZooOptions::default()
        };
        let t = Instant::now();
        match build(name, &opts) {
            Ok(m) => {
                let total = m.count_params();
                let trainable = m.count_trainable_params();
                println!(
                    "{name:<10} {total:>11} params ({trainable} trainable, {} non-trainable), built in {:.3} s",
                    total - trainable,
                    t.elapsed().as_secs_f64()
                );
            }
            Err(e) => println!("{name}: {e}"),
        }
    }
}
