//! The all-reduce's speed on this machine or cluster, for the scaling model
//! in bench/SCALING.md: the fixed-order sum of ResNet-50's gradients (25.6 M
//! values in 25 MB buckets) and of a BatchNorm layer's per-channel sums
//! (2 x 512 values), each timed as the median of several rounds.
//!
//! `mpirun -np 2 --bind-to none target/release/examples/all_reduce_bandwidth`
//! (build: `cargo build --release -p strata-dist --features mpi --examples`).

#[cfg(feature = "mpi")]
fn main() {
    use std::time::Instant;
    use strata_nn::distributed::Collective;

    let (_run, c) = match strata_dist::mpi_collective::init() {
        Ok(Some(v)) => v,
        Ok(None) => {
            eprintln!("error: start this under mpirun");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let time = |values: usize, rounds: usize| -> f64 {
        let mut buf = vec![1.0f32; values];
        let mut times = Vec::new();
        for r in 0..rounds + 2 {
            let mut ready = [0.0f64];
            c.all_reduce_sum_f64(&mut ready).expect("barrier");
            let t = Instant::now();
            c.all_reduce_sum(&mut buf).expect("all-reduce");
            if r >= 2 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        median(times)
    };
    let gradients: usize = 25_557_032; // ResNet-50's trainable values
    let bucket = 25 * 1024 * 1024 / 4;
    let mut total = 0.0;
    let mut left = gradients;
    while left > 0 {
        let n = left.min(bucket);
        total += time(n, 5);
        left -= n;
    }
    let small = time(1024, 50);
    if c.rank() == 0 {
        let n = c.size();
        let bytes = gradients as f64 * 4.0;
        // bytes each rank sends in a bandwidth-optimal all-reduce
        let wire = 2.0 * (n as f64 - 1.0) / n as f64 * bytes;
        println!(
            "all-reduce over {n} ranks: ResNet-50 gradients ({:.1} MB) in {:.1} ms \
             ({:.2} GB/s of algorithm bandwidth, {:.2} GB/s on the wire); \
             a BatchNorm's 1024 sums in {:.1} us",
            bytes / 1e6,
            total * 1e3,
            bytes / total / 1e9,
            wire / total / 1e9,
            small * 1e6
        );
    }
}

#[cfg(not(feature = "mpi"))]
fn main() {
    eprintln!("error: build with --features mpi");
    std::process::exit(2);
}
