//! Data-parallel training over MPI (built only with the `mpi` feature; run
//! with `cargo test -p strata-cli --features mpi --test distributed`).
//! Every launch is on loopback (`btl self,vader`, `oob_tcp_if_include lo`),
//! oversubscribed, allowed as root, as CI runs it.
//!
//! - mnist-cnn, 30 steps, 2 and 4 ranks against 1 at the same global batch;
//!   every rank's weights bitwise alike after every step; a run repeated
//!   gives the same bits.
//! - resnet18 with synchronised BatchNorm, 10 steps, 2 ranks against one
//!   plain process.
//! - a batch that does not divide, and ranks started differently: one
//!   error line each, no hang.
//! - a rank killed mid-run: the others stop within 30 s with one error line
//!   naming it; the checkpoint loads and `--resume` at 2 ranks ends bitwise
//!   where the uninterrupted run does.
#![cfg(feature = "mpi")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use strata_core::Tensor;

const EXE: &str = env!("CARGO_BIN_EXE_strata");

/// One launch at a time: several mpirun jobs at once on a small machine
/// oversubscribe it and stretch the timing-sensitive fault checks.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// OpenMPI's settings for CI: loopback only, as root.
fn mpi_env(c: &mut Command) -> &mut Command {
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl", "self,vader")
        .env("OMPI_MCA_oob_tcp_if_include", "lo")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env_remove("STRATA_NUM_THREADS")
}

/// Runs `c`, killing it (and failing) past `limit`: a hang is a failure.
fn run_with_limit(c: &mut Command, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting strata");
    loop {
        if child.try_wait().expect("waiting").is_some() {
            return (child.wait_with_output().expect("output"), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?} (a hang?)\n{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn strata(args: &[&str], dir: &Path, env: &[(&str, &Path)]) -> (Output, Duration) {
    let mut c = Command::new(EXE);
    c.args(args).current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    run_with_limit(mpi_env(&mut c), Duration::from_secs(120))
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn error_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_string)
        .collect()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-dist-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `n` MNIST-shaped samples in 10 classes: a bright square whose place is
/// the class, on a hashed noise background.
fn digits(d: &Path, n: usize) {
    let mut x = vec![0.0f32; n * 28 * 28];
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let k = (i * 7) % 10;
        y.push(k as i64);
        let img = &mut x[i * 784..(i + 1) * 784];
        for (p, v) in img.iter_mut().enumerate() {
            *v = (((p * 2654435761 + i * 40503) >> 7) % 97) as f32 / 400.0;
        }
        let (r0, c0) = (2 + (k / 5) * 12, 2 + (k % 5) * 5);
        for r in r0..r0 + 8 {
            for c in c0..c0 + 4 {
                img[r * 28 + c] = 1.0;
            }
        }
    }
    strata_data::write_npy_f32(
        d.join("x.npy"),
        &Tensor::from_vec(x, &[n, 28, 28, 1]).unwrap(),
    )
    .unwrap();
    strata_data::write_npy_i64(d.join("y.npy"), &y, &[n]).unwrap();
}

type Weights = HashMap<String, Vec<f32>>;

fn weights(p: &Path) -> Weights {
    let (t, _) = strata_nn::model::read_safetensors(p).unwrap();
    t.into_iter().map(|(n, _, v)| (n, v)).collect()
}

/// The largest over tensors of max|a - b| / max|b|.
fn largest_relative_difference(a: &Weights, b: &Weights) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f64;
    for (name, va) in a {
        let vb = &b[name];
        let scale = vb.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
        let diff = va
            .iter()
            .zip(vb)
            .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
        if scale > 0.0 {
            worst = worst.max(diff / scale);
        }
    }
    worst
}

/// Every rank's per-step weight hashes, which must be the same lines.
fn ranks_alike(dir: &Path, ranks: usize) -> usize {
    let steps: Vec<String> = (0..ranks)
        .map(|r| std::fs::read_to_string(dir.join(format!("rank{r}.steps"))).unwrap())
        .collect();
    for (r, s) in steps.iter().enumerate() {
        assert_eq!(s, &steps[0], "rank {r}'s weights differ from rank 0's");
    }
    steps[0].lines().count()
}

const MNIST_ARGS: &[&str] = &[
    "train",
    "mnist-cnn",
    "--data",
    "x.npy",
    "--labels",
    "y.npy",
    "--steps",
    "30",
    "--validation-split",
    "0.2",
    "--quiet",
];

#[test]
fn mnist_cnn_on_2_and_4_ranks_equals_one() {
    let _one = exclusive();
    let d = tmp("mnist");
    // 800 training samples: batches of 64, the last of each epoch 32
    digits(&d, 1000);
    let run = |workers: usize, tag: &str| {
        let save = format!("w{tag}.safetensors");
        let record = d.join(format!("rec{tag}"));
        let w = workers.to_string();
        let mut args = MNIST_ARGS.to_vec();
        // SGD: Adam divides each gradient by its own size, so the reduction
        // order's rounding in near-zero gradients becomes lr-sized steps
        // (2e-4 relative after 30 steps); SGD keeps it at rounding size
        args.extend([
            "--batch-size",
            "64",
            "--optimizer",
            "sgd",
            "--lr",
            "0.05",
            "--momentum",
            "0.9",
            "--workers",
            &w,
            "--save",
            &save,
        ]);
        let (o, t) = strata(&args, &d, &[("STRATA_DEBUG_RANK_DIR", &record)]);
        ok(&o);
        assert_eq!(ranks_alike(&record, workers), 30);
        eprintln!("{workers} rank(s): {t:.1?}");
        weights(&d.join(save))
    };
    let one = run(1, "1");
    let two = run(2, "2");
    let four = run(4, "4");
    let again = run(2, "2b");
    assert_eq!(two, again, "a repeated 2-rank run is not bitwise the same");
    let (r2, r4) = (
        largest_relative_difference(&two, &one),
        largest_relative_difference(&four, &one),
    );
    eprintln!("largest relative difference against 1 rank: 2 ranks {r2:.3e}, 4 ranks {r4:.3e}");
    eprintln!(
        "bitwise equal to 1 rank: 2 ranks {}, 4 ranks {}",
        two == one,
        four == one
    );
    assert!(r2 < 1e-5 && r4 < 1e-5, "2 ranks {r2:e}, 4 ranks {r4:e}");
}

#[test]
fn a_batch_that_does_not_divide_and_ranks_that_differ_fail_at_once() {
    let _one = exclusive();
    let d = tmp("refuse");
    digits(&d, 200);
    let mut args = MNIST_ARGS.to_vec();
    args.extend(["--workers", "2", "--batch-size", "63"]);
    let (o, t) = strata(&args, &d, &[]);
    assert!(!o.status.success());
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        errors[0].contains("does not divide by the 2 ranks"),
        "{}",
        errors[0]
    );
    eprintln!("non-dividing batch refused in {t:.1?}");

    // two ranks started with different models (MPMD launch)
    std::fs::write(
        d.join("small.json"),
        r#"{"name": "small", "input_shape": [28, 28, 1], "layers": [
          {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}"#,
    )
    .unwrap();
    let common = [
        "--data", "x.npy", "--labels", "y.npy", "--steps", "2", "--quiet",
    ];
    let mut c = Command::new("mpirun");
    c.args(["-np", "1", "--bind-to", "none", EXE, "train", "mnist-cnn"])
        .args(common)
        .args([
            ":",
            "-np",
            "1",
            "--bind-to",
            "none",
            EXE,
            "train",
            "small.json",
        ])
        .args(common)
        .current_dir(&d);
    let (o, t) = run_with_limit(mpi_env(&mut c), Duration::from_secs(60));
    assert!(!o.status.success());
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        errors[0].contains("disagree on the model spec") && errors[0].contains("rank 1"),
        "{}",
        errors[0]
    );
    eprintln!("mismatched ranks refused in {t:.1?}");
}

/// 16 PNGs of 64x64 in two classes (bright left or right half, with noise).
fn image_folder(d: &Path) -> PathBuf {
    let root = d.join("pics");
    for (k, class) in ["left", "right"].iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..8 {
            let img = image::RgbImage::from_fn(64, 64, |x, y| {
                let bright = (x < 32) == (k == 0);
                let n = ((x * 31 + y * 17 + i * 13) % 50) as u8;
                let base = if bright { 180 } else { 40 };
                image::Rgb([base + n, base + n / 2, base + (i as u8) * 3])
            });
            img.save(root.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    root
}

#[test]
fn resnet18_with_synchronised_batchnorm_on_2_ranks_equals_one_process() {
    let _one = exclusive();
    let d = tmp("resnet");
    image_folder(&d);
    let base = [
        "train",
        "resnet18",
        "--data",
        "pics",
        "--input-shape",
        "64,64,3",
        "--batch-size",
        "8",
        "--steps",
        "10",
        "--optimizer",
        "sgd",
        "--lr",
        "0.01",
        "--quiet",
        "--threads",
        "1",
    ];
    let mut one = base.to_vec();
    one.extend(["--save", "one.safetensors"]);
    let (o, t1) = strata(&one, &d, &[]);
    ok(&o);
    let mut two = base.to_vec();
    two.extend(["--workers", "2", "--save", "two.safetensors"]);
    let record = d.join("rec");
    let (o, t2) = strata(&two, &d, &[("STRATA_DEBUG_RANK_DIR", &record)]);
    ok(&o);
    assert_eq!(ranks_alike(&record, 2), 10);
    let (a, b) = (
        weights(&d.join("two.safetensors")),
        weights(&d.join("one.safetensors")),
    );
    let r = largest_relative_difference(&a, &b);
    eprintln!("resnet18, 10 steps: 1 process {t1:.1?}, 2 ranks {t2:.1?}; largest relative difference {r:.3e}");
    // the same process at 2 threads instead of 1: rounding alone, which
    // BatchNorm over small batches amplifies step after step
    let mut threads = base.to_vec();
    threads.pop();
    threads.extend(["2", "--save", "threads.safetensors"]);
    ok(&strata(&threads, &d, &[]).0);
    let noise = largest_relative_difference(&weights(&d.join("threads.safetensors")), &b);
    eprintln!("resnet18, 10 steps: 1 process at 2 threads against 1 thread: {noise:.3e}");
    // stated tolerance: 5% of a tensor's largest value (BatchNorm betas,
    // which start at 0, differ most)
    assert!(r < 5e-2, "largest relative difference {r:e}");
}

#[test]
fn a_killed_rank_stops_the_others_and_resume_continues_bitwise() {
    let _one = exclusive();
    let d = tmp("fault");
    digits(&d, 480);
    let args = |save: &str, ckpt: &str| -> Vec<String> {
        [
            "train",
            "mnist-cnn",
            "--data",
            "x.npy",
            "--labels",
            "y.npy",
            "--batch-size",
            "32",
            "--epochs",
            "6",
            "--quiet",
            "--workers",
            "2",
            "--save",
            save,
            "--checkpoint",
            ckpt,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // the uninterrupted run
    let full: Vec<String> = args("full.safetensors", "full.ckpt.safetensors");
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    ok(&strata(&full, &d, &[]).0);

    // the same run, rank 1 killed once a checkpoint is written
    let record = d.join("rec");
    let cut = args("cut.safetensors", "cut.ckpt.safetensors");
    let mut c = Command::new(EXE);
    c.args(&cut)
        .current_dir(&d)
        .env("STRATA_DEBUG_RANK_DIR", &record)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = mpi_env(&mut c).spawn().unwrap();
    let ckpt = d.join("cut.ckpt.safetensors");
    let start = Instant::now();
    while !ckpt.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no checkpoint written"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before a checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = std::fs::read_to_string(record.join("rank1.pid")).unwrap();
    let killed = Instant::now();
    Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    let o = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        if killed.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the other rank did not stop within 30 s of rank 1's death");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stopped = killed.elapsed();
    assert!(!o.status.success(), "the run succeeded with a dead rank");
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(errors[0].contains("rank 1"), "{}", errors[0]);
    eprintln!("rank 1 killed: stopped in {stopped:.1?}: {}", errors[0]);

    // the checkpoint loads, and resuming from it ends where the full run does
    let (t, meta) = strata_nn::model::read_safetensors(&ckpt).unwrap();
    assert!(!t.is_empty() && meta.contains_key("epoch"));
    let mut resume = args("resumed.safetensors", "resumed.ckpt.safetensors");
    resume.extend(["--resume".to_string(), "cut.ckpt.safetensors".to_string()]);
    let resume: Vec<&str> = resume.iter().map(String::as_str).collect();
    ok(&strata(&resume, &d, &[]).0);
    assert_eq!(
        weights(&d.join("resumed.safetensors")),
        weights(&d.join("full.safetensors")),
        "the resumed run is not bitwise the uninterrupted one"
    );
}
