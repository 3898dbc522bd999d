//! Training from a .npy read a batch at a time (`--stream`, automatic for
//! large files) equals training on the same array in memory, bit for bit:
//! the same weights, the same history, validation split included.

use std::path::PathBuf;
use std::process::Output;

mod common;
use common::strata;

use strata_core::Tensor;

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-npy-stream-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const SPEC: &str = r#"{"name": "small", "input_shape": [6, 6, 1], "layers": [
  {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
  {"type": "Flatten"},
  {"type": "Dropout", "rate": 0.3},
  {"type": "Dense", "units": 3, "activation": "softmax"}]}"#;

#[test]
fn streamed_npy_trains_exactly_as_in_memory() {
    let d = tmp("same");
    let n = 61;
    let x: Vec<f32> = (0..n * 36)
        .map(|i| ((i * 7919) % 113) as f32 / 113.0)
        .collect();
    strata_data::write_npy_f32(
        d.join("x.npy"),
        &Tensor::from_vec(x, &[n, 6, 6, 1]).unwrap(),
    )
    .unwrap();
    let y: Vec<i64> = (0..n as i64).map(|i| (i * 5) % 3).collect();
    strata_data::write_npy_i64(d.join("y.npy"), &y, &[n]).unwrap();
    std::fs::write(d.join("small.json"), SPEC).unwrap();
    let run = |save: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "small.json",
            "--data",
            "x.npy",
            "--labels",
            "y.npy",
            "--epochs",
            "3",
            "--batch-size",
            "8",
            "--validation-split",
            "0.2",
            "--save",
            save,
        ];
        args.extend_from_slice(extra);
        ok(&strata(&args, &d))
    };
    let memory = run("a.safetensors", &[]);
    let streamed = run("b.safetensors", &["--stream"]);
    assert!(memory.contains("val_accuracy"), "{memory}");
    assert!(streamed.contains("val_accuracy"), "{streamed}");
    let (a, _) = strata_nn::model::read_safetensors(d.join("a.safetensors")).unwrap();
    let (b, _) = strata_nn::model::read_safetensors(d.join("b.safetensors")).unwrap();
    assert_eq!(a.len(), b.len());
    for ((na, sa, va), (nb, sb, vb)) in a.iter().zip(&b) {
        assert_eq!((na, sa), (nb, sb));
        assert!(
            va.iter().zip(vb).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{na} differs"
        );
    }
    let ha = std::fs::read_to_string(d.join("a.history.json")).unwrap();
    let hb = std::fs::read_to_string(d.join("b.history.json")).unwrap();
    assert_eq!(ha, hb);
    std::fs::remove_dir_all(&d).ok();
}
