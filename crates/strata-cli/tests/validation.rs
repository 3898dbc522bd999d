//! Every argument, file and output path is checked before the work starts.
//! A table of bad command lines: each must exit non-zero with one `error:`
//! line naming the right thing, fail before any training step (no epoch is
//! printed), and leave every existing file as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strata_core::Tensor;

fn strata_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.args(args).current_dir(cwd);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running strata")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-validation-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const SPEC: &str = r#"{"name": "small", "input_shape": [4, 4, 1], "layers": [
  {"type": "Conv2D", "filters": 2, "kernel_size": 3, "activation": "relu"},
  {"type": "Flatten"},
  {"type": "Dense", "units": 3, "activation": "softmax"}]}"#;

/// The files every case starts from; none may change.
fn setup(d: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::write(d.join("small.json"), SPEC).unwrap();
    let x: Vec<f32> = (0..10 * 16).map(|i| (i % 7) as f32 / 7.0).collect();
    strata_data::write_npy_f32(
        d.join("x.npy"),
        &Tensor::from_vec(x.clone(), &[10, 4, 4, 1]).unwrap(),
    )
    .unwrap();
    strata_data::write_npy_f32(d.join("x3.npy"), &Tensor::from_vec(x, &[10, 4, 4]).unwrap())
        .unwrap();
    let y: Vec<i64> = (0..10).map(|i| i % 3).collect();
    strata_data::write_npy_i64(d.join("y.npy"), &y, &[10]).unwrap();
    let mut bad = y.clone();
    bad[3] = 7;
    strata_data::write_npy_i64(d.join("ybad.npy"), &bad, &[10]).unwrap();
    std::fs::create_dir_all(d.join("dir.safetensors")).unwrap();
    let only = d.join("one").join("only");
    std::fs::create_dir_all(&only).unwrap();
    image::RgbImage::from_pixel(5, 5, image::Rgb([9, 9, 9]))
        .save(only.join("a.png"))
        .unwrap();
    for class in ["a", "b"] {
        let p = d.join("photos").join(class);
        std::fs::create_dir_all(&p).unwrap();
        image::GrayImage::from_pixel(6, 6, image::Luma([80]))
            .save(p.join("i.png"))
            .unwrap();
    }
    std::fs::create_dir_all(d.join("runs")).unwrap();
    std::fs::write(d.join("runs/small.safetensors"), b"an earlier run").unwrap();
    std::fs::write(d.join("keep.safetensors"), b"precious").unwrap();
    std::fs::write(
        d.join("h.json"),
        r#"{"epoch": [0], "history": {"loss": [1.0]}}"#,
    )
    .unwrap();
    let mut files = Vec::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                files.push((p, bytes));
            }
        }
    }
    files
}

const TRAIN: &[&str] = &[
    "train",
    "small.json",
    "--data",
    "x.npy",
    "--labels",
    "y.npy",
    "--epochs",
    "1",
    "--batch-size",
    "4",
];

fn train(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = TRAIN.to_vec();
    v.extend_from_slice(extra);
    v
}

/// (command line, environment, what the error line must name)
type Case = (
    Vec<&'static str>,
    Vec<(&'static str, &'static str)>,
    Vec<&'static str>,
);

fn cases() -> Vec<Case> {
    let none = Vec::new;
    vec![
        (train(&["--lr", "-1"]), none(), vec!["--lr", "-1"]),
        (train(&["--lr=nan"]), none(), vec!["--lr", "NaN"]),
        (
            train(&["--beta-1", "2"]),
            none(),
            vec!["--beta-1", "[0, 1)"],
        ),
        (
            train(&["--rho", "0.9"]),
            none(),
            vec!["--rho", "rmsprop", "adam"],
        ),
        (
            train(&["--momentum", "0.9"]),
            none(),
            vec!["--momentum", "adam"],
        ),
        (
            train(&["--optimizer", "sgd", "--epsilon", "1e-3"]),
            none(),
            vec!["--epsilon", "sgd"],
        ),
        (train(&["--optimizer", "lion"]), none(), vec!["lion"]),
        (train(&["--steps", "0"]), none(), vec!["--steps"]),
        (train(&["--epochs", "0"]), none(), vec!["--epochs"]),
        (train(&["--batch-size", "0"]), none(), vec!["--batch-size"]),
        (
            train(&["--validation-split", "1.5"]),
            none(),
            vec!["--validation-split", "1.5"],
        ),
        (
            train(&["--weight-decay", "-1"]),
            none(),
            vec!["--weight-decay"],
        ),
        (
            train(&["--lr-schedule", "linear"]),
            none(),
            vec!["--lr-schedule", "linear"],
        ),
        (train(&["--loss", "hinge_loss"]), none(), vec!["hinge_loss"]),
        (
            vec![
                "train",
                "small.json",
                "--data",
                "x.npy",
                "--labels",
                "ybad.npy",
            ],
            none(),
            vec!["ybad.npy", "label 7", "index 3"],
        ),
        (
            vec![
                "train",
                "small.json",
                "--data",
                "x3.npy",
                "--labels",
                "y.npy",
            ],
            none(),
            vec!["x3.npy", "(10, 4, 4)", "channel axis"],
        ),
        (
            vec!["train", "small.json", "--data", "x.npy"],
            none(),
            vec!["--labels"],
        ),
        (
            train(&["--save", "dir.safetensors"]),
            none(),
            vec!["dir.safetensors", "folder"],
        ),
        (
            train(&["--save", "/dev/full"]),
            none(),
            vec!["/dev/full", "not a regular file"],
        ),
        (
            train(&["--save", "m.bin"]),
            none(),
            vec!["m.bin", ".safetensors"],
        ),
        (
            train(&["--checkpoint", "dir.safetensors"]),
            none(),
            vec!["--checkpoint", "folder"],
        ),
        (
            train(&["--augment", "flip"]),
            none(),
            vec!["--augment", "folder"],
        ),
        (
            train(&["--stream", "--data-workers", "2"]),
            none(),
            vec!["--data-workers"],
        ),
        (
            train(&["--skip-mismatch"]),
            none(),
            vec!["--skip-mismatch", "--weights"],
        ),
        (
            train(&["--weights", "missing.safetensors"]),
            none(),
            vec!["missing.safetensors"],
        ),
        (
            vec!["train", "mnist-cnn", "--labels", "y.npy"],
            none(),
            vec!["--labels", "mnist"],
        ),
        (
            vec!["train", "small.json", "--data", "photos", "--data-dir", "x"],
            none(),
            vec!["--data-dir", "photos"],
        ),
        (
            vec![
                "train",
                "small.json",
                "--data",
                "photos",
                "--augment",
                "spin",
            ],
            none(),
            vec!["--augment", "spin"],
        ),
        (
            vec![
                "train",
                "small.json",
                "--data",
                "photos",
                "--jitter",
                "0.1,0.1,0.1,0.1",
            ],
            none(),
            vec!["--jitter", "--augment jitter"],
        ),
        (
            vec!["train", "small.json", "--data", "one"],
            none(),
            vec!["one", "two"],
        ),
        (
            vec!["train", "small.json", "--data", "nothing-here"],
            none(),
            vec!["nothing-here"],
        ),
        (
            vec!["--threads", "1000", "train", "small.json"],
            none(),
            vec!["--threads", "1000"],
        ),
        (
            vec!["summary", "small.json"],
            vec![("STRATA_NUM_THREADS", "abc")],
            vec!["STRATA_NUM_THREADS", "abc"],
        ),
        (
            vec![
                "predict",
                "small.json",
                "--input",
                "x.npy",
                "--output",
                "p.npy",
            ],
            none(),
            vec!["predict", "without trained weights", "--random-weights"],
        ),
        (
            vec!["predict", "lenet5", "--input", "x.npy", "--output", "p.npy"],
            none(),
            vec!["zoo name", "--weights"],
        ),
        (
            vec!["filters", "mnist-cnn", "--output", "f.png"],
            none(),
            vec!["filters", "without trained weights"],
        ),
        (
            vec![
                "filters",
                "mnist-cnn",
                "--random-weights",
                "--output",
                "f.jpg",
            ],
            none(),
            vec!["f.jpg", ".png"],
        ),
        (
            vec!["plot", "h.json", "--output", "p.svg"],
            none(),
            vec!["p.svg", ".png"],
        ),
        (
            vec![
                "predict",
                "small.json",
                "--random-weights",
                "--input",
                "x.npy",
                "--output",
                "p.txt",
            ],
            none(),
            vec!["p.txt", ".npy"],
        ),
        (
            vec![
                "predict",
                "small.json",
                "--random-weights",
                "--input",
                "x3.npy",
            ],
            none(),
            vec!["x3.npy", "channel axis"],
        ),
        (
            vec![
                "evaluate",
                "small.json",
                "--random-weights",
                "--data",
                "x.npy",
                "--labels",
                "y.npy",
                "--batch-size",
                "0",
            ],
            none(),
            vec!["--batch-size"],
        ),
        (
            vec![
                "evaluate",
                "small.json",
                "--data",
                "x.npy",
                "--labels",
                "y.npy",
            ],
            none(),
            vec!["evaluate:", "--weights"],
        ),
        (
            vec![
                "evaluate",
                "mnist-cnn",
                "--random-weights",
                "--labels",
                "y.npy",
            ],
            none(),
            vec!["--labels", "mnist"],
        ),
        (
            vec![
                "predict",
                "small.json",
                "--weights",
                "keep.safetensors",
                "--random-weights",
                "--input",
                "x.npy",
            ],
            none(),
            vec!["--random-weights", "--weights"],
        ),
    ]
}

#[test]
fn bad_command_lines_fail_before_any_work_and_change_nothing() {
    let d = tmp("table");
    let files = setup(&d);
    let cases = cases();
    for (args, env, names) in &cases {
        let out = strata_env(args, &d, env);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} succeeded:\n{stdout}\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: one error line:\n{stderr}");
        assert!(errors[0].starts_with("error: "), "{args:?}: {stderr}");
        for name in names {
            assert!(
                errors[0].contains(name),
                "{args:?}: '{name}' missing from: {}",
                errors[0]
            );
        }
        assert!(
            !stdout.contains("Epoch") && !stderr.contains("Epoch"),
            "{args:?} trained before failing:\n{stdout}"
        );
        for (path, bytes) in &files {
            assert_eq!(
                &std::fs::read(path).unwrap(),
                bytes,
                "{args:?} changed {}",
                path.display()
            );
        }
    }
    assert!(cases.len() >= 40);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn outputs_are_created_where_asked_and_never_replace_an_earlier_run() {
    let d = tmp("outputs");
    setup(&d);
    // --checkpoint into a folder that does not exist yet: created up front
    let out = strata_env(
        &train(&[
            "--checkpoint",
            "new/deeper/c.safetensors",
            "--save",
            "out/m.safetensors",
        ]),
        &d,
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.join("new/deeper/c.safetensors").is_file());
    assert!(d.join("out/m.safetensors").is_file());
    // without --save: runs/small.safetensors is taken, so a fresh name
    let out = strata_env(TRAIN, &d, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("runs/small-2.safetensors"), "{stdout}");
    assert_eq!(
        std::fs::read(d.join("runs/small.safetensors")).unwrap(),
        b"an earlier run"
    );
    // --steps says steps, and the epoch it cut says so
    let args = [
        "train",
        "small.json",
        "--data",
        "x.npy",
        "--labels",
        "y.npy",
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--epochs",
        "5",
        "--save",
        "s.safetensors",
    ];
    let out = strata_env(&args, &d, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Epoch 1/1 (stopped after step 2 of 3)"),
        "{stdout}"
    );
    assert!(stdout.contains("trained 2 steps"), "{stdout}");
    // negative numbers parse, so the message speaks of the value
    let out = strata_env(&train(&["--lr", "-0.5"]), &d, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--lr must be a positive finite number, found -0.5"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&d).ok();
}

/// The effective user id, from `id -u`.
fn euid() -> Option<u32> {
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[test]
fn a_read_only_folder_is_refused_before_training() {
    let d = tmp("readonly");
    setup(&d);
    let ro = d.join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [&d, &ro] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // a copy of the binary the unprivileged user can reach wherever the
    // build lives (a root-only home folder, say)
    let bin = d.join("strata-copy");
    std::fs::copy(env!("CARGO_BIN_EXE_strata"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let args: Vec<&str> = train(&["--save", "ro/m.safetensors"]);
    // root ignores file modes: run the child as nobody, as a user would be
    let mut cmd = if euid() == Some(0) {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let out = cmd
        .args(&args)
        .current_dir(&d)
        .env("HOME", &d)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("cannot write in the folder ro"), "{stderr}");
    assert!(!stdout.contains("Epoch"), "{stdout}");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(&d).ok();
}
