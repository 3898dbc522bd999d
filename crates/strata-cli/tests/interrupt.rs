//! Faults during training: Ctrl-C (SIGINT) finishes the step, writes a
//! checkpoint and says how to resume; resuming gives the same final weights
//! as an uninterrupted run; a process killed while writing checkpoints never
//! leaves a broken one; an exploding learning rate stops with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use strata_core::{Rng, Tensor};

const SPEC: &str = r#"{"name": "tiny", "input_shape": [12, 12, 1], "layers": [
  {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
  {"type": "MaxPooling2D", "pool_size": 2},
  {"type": "Flatten"},
  {"type": "Dropout", "rate": 0.2},
  {"type": "Dense", "units": 3, "activation": "softmax"}]}"#;

fn setup(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-int-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("spec.json"), SPEC).unwrap();
    let x = Tensor::rand_normal(&[256, 12, 12, 1], 0.0, 1.0, &mut Rng::new(1));
    let y: Vec<i64> = (0..256).map(|i| (i % 3) as i64).collect();
    strata_data::write_npy_f32(d.join("x.npy"), &x).unwrap();
    strata_data::write_npy_i64(d.join("y.npy"), &y, &[256]).unwrap();
    d
}

fn train_args<'a>(epochs: &'a str, save: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "spec.json",
        "--data",
        "x.npy",
        "--labels",
        "y.npy",
        "--epochs",
        epochs,
        "--batch-size",
        "4",
        "--optimizer",
        "sgd",
        "--lr",
        "0.01",
        "--momentum",
        "0.9",
        "--seed",
        "5",
        "--quiet",
        "--threads",
        "1",
        "--save",
        save,
    ]
}

fn weights(p: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    strata_nn::model::read_safetensors(p).unwrap().0
}

/// Starts a run with `--checkpoint ckpt.safetensors` and waits until its
/// first epoch's checkpoint exists, so a signal lands mid-training.
fn start_and_wait(d: &Path, args: &[&str]) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(d)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !d.join("ckpt.safetensors").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no checkpoint after 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

fn sigint(child: &std::process::Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
}

#[test]
fn sigint_then_resume_equals_an_uninterrupted_run() {
    let d = setup("sigint");
    let bin = env!("CARGO_BIN_EXE_strata");
    let full = Command::new(bin)
        .args(train_args("100", "full.safetensors"))
        .current_dir(&d)
        .output()
        .unwrap();
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );

    let mut args = train_args("100", "part.safetensors");
    args.extend(["--checkpoint", "ckpt.safetensors"]);
    let child = start_and_wait(&d, &args);
    sigint(&child);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "the run ended before the signal: {err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("interrupt: finishing this step"),
        "{err}"
    );
    assert!(lines[0].contains("Ctrl-C 2 more times"), "{err}");
    assert!(
        lines[1].starts_with(
            "error: train: interrupted: checkpoint written to ckpt.safetensors at epoch"
        ),
        "{err}"
    );
    assert!(err.contains("--resume ckpt.safetensors"), "{err}");

    args.extend(["--resume", "ckpt.safetensors"]);
    let resumed = Command::new(bin)
        .args(&args)
        .current_dir(&d)
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        weights(&d.join("full.safetensors")),
        weights(&d.join("part.safetensors"))
    );
    // the history keeps the epochs before the interruption
    let full_h = strata_nn::History::load(d.join("full.history.json")).unwrap();
    let part_h = strata_nn::History::load(d.join("part.history.json")).unwrap();
    assert_eq!(part_h.epoch, (0..100).collect::<Vec<_>>());
    assert_eq!(part_h.epoch, full_h.epoch);
}

#[test]
fn two_quick_sigints_still_write_the_checkpoint() {
    let d = setup("twice");
    let mut args = train_args("100", "m.safetensors");
    args.extend(["--checkpoint", "ckpt.safetensors"]);
    let child = start_and_wait(&d, &args);
    sigint(&child);
    std::thread::sleep(Duration::from_millis(10));
    sigint(&child);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("error: train: interrupted: checkpoint written to ckpt.safetensors"),
        "{err}"
    );
    let (_, meta) = strata_nn::model::read_safetensors(d.join("ckpt.safetensors")).unwrap();
    let step: usize = meta["step"].parse().unwrap();
    assert!(step > 0, "a mid-epoch checkpoint: {meta:?}");
    assert!(meta.contains_key("history"));
}

#[test]
fn a_killed_checkpoint_write_leaves_the_previous_checkpoint_loadable() {
    let d = setup("kill");
    let bin = env!("CARGO_BIN_EXE_strata");
    let mut args = train_args("1000", "k.safetensors");
    args.extend(["--checkpoint", "ckpt.safetensors"]);
    let mut seen = 0;
    for i in 0..4 {
        let mut child = Command::new(bin)
            .args(&args)
            .current_dir(&d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400 + 170 * i));
        child.kill().unwrap();
        let _ = child.wait();
        let ckpt = d.join("ckpt.safetensors");
        if ckpt.exists() {
            seen += 1;
            let (tensors, meta) =
                strata_nn::model::read_safetensors(&ckpt).expect("checkpoint must stay loadable");
            assert!(
                meta.contains_key("epoch") && tensors.iter().any(|(n, _, _)| n == "conv2d.kernel")
            );
        }
    }
    assert!(seen > 0, "no checkpoint was ever written");
}

#[test]
fn an_exploding_learning_rate_stops_with_a_message_and_keeps_the_checkpoint() {
    let d = setup("explode");
    let bin = env!("CARGO_BIN_EXE_strata");
    let ok = Command::new(bin)
        .args(train_args("1", "a.safetensors"))
        .args(["--checkpoint", "ckpt.safetensors"])
        .current_dir(&d)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let mut args = train_args("3", "b.safetensors");
    args.extend([
        "--resume",
        "ckpt.safetensors",
        "--checkpoint",
        "ckpt.safetensors",
    ]);
    let i = args.iter().position(|a| *a == "0.01").unwrap();
    args[i] = "1e30";
    let out = Command::new(bin)
        .args(&args)
        .current_dir(&d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: train: training:") && last.contains("at step"),
        "{err}"
    );
    let (_, meta) = strata_nn::model::read_safetensors(d.join("ckpt.safetensors")).unwrap();
    assert_eq!(meta["epoch"], "1");
}
