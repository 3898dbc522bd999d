//! Looking inside a model from the command line: saliency, gradcam,
//! activations and filters --maximize write their pictures and raw arrays
//! for images and .npy inputs; bad requests are one error line each; and
//! the sanity check of Adebayo et al. (2018): a trained model's saliency
//! map differs clearly from that of the same model re-randomised.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::strata;

use strata_core::{Rng, Tensor};

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn fails(o: &Output, names: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "should fail: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    for n in names {
        assert!(errors[0].contains(n), "'{n}' missing from {}", errors[0]);
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-inside-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A PNG read back: its size and how many distinct colours it has.
fn png(path: &Path) -> (u32, u32, usize) {
    let img = image::open(path).unwrap().to_rgb8();
    let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    colours.sort();
    colours.dedup();
    (img.width(), img.height(), colours.len())
}

const SPEC: &str = r#"{"name": "sides", "input_shape": [16, 16, 1], "layers": [
  {"type": "Conv2D", "name": "c1", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
  {"type": "MaxPooling2D", "pool_size": 2},
  {"type": "Conv2D", "name": "c2", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
  {"type": "GlobalAveragePooling2D"},
  {"type": "Dense", "name": "head", "units": 2, "activation": "softmax"}]}"#;

/// 16x16 images with a bright 5x5 square in the left (class 0) or right
/// (class 1) half, on noise.
fn sides(n: usize, seed: u64) -> (Tensor, Vec<i64>) {
    let mut rng = Rng::new(seed);
    let mut x = vec![0.0f32; n * 256];
    let mut y = Vec::new();
    for i in 0..n {
        let class = i % 2;
        for v in &mut x[i * 256..(i + 1) * 256] {
            *v = rng.uniform(0.0, 0.2);
        }
        let top = rng.below(11);
        let left = if class == 0 {
            rng.below(4)
        } else {
            8 + rng.below(4)
        };
        for r in top..top + 5 {
            for c in left..left + 5 {
                x[i * 256 + r * 16 + c] = 1.0;
            }
        }
        y.push(class as i64);
    }
    (Tensor::from_vec(x, &[n, 16, 16, 1]).unwrap(), y)
}

fn setup(d: &Path) {
    std::fs::write(d.join("sides.json"), SPEC).unwrap();
    let (x, y) = sides(256, 1);
    strata_data::write_npy_f32(d.join("x.npy"), &x).unwrap();
    strata_data::write_npy_i64(d.join("y.npy"), &y, &[256]).unwrap();
    let (one, _) = sides(2, 9);
    let right = Tensor::from_vec(one.to_vec()[256..].to_vec(), &[16, 16, 1]).unwrap();
    strata_data::write_npy_f32(d.join("one.npy"), &right).unwrap();
    let img = image::GrayImage::from_fn(16, 16, |x, y| {
        image::Luma([if (9..14).contains(&x) && (3..8).contains(&y) {
            255
        } else {
            20
        }])
    });
    img.save(d.join("one.png")).unwrap();
    ok(&strata(
        &[
            "train",
            "sides.json",
            "--data",
            "x.npy",
            "--labels",
            "y.npy",
            "--epochs",
            "6",
            "--batch-size",
            "16",
            "--lr",
            "0.01",
            "--save",
            "m.safetensors",
            "--quiet",
        ],
        d,
    ));
}

fn abs_correlation(a: &[f32], b: &[f32]) -> f64 {
    let a: Vec<f64> = a.iter().map(|v| v.abs() as f64).collect();
    let b: Vec<f64> = b.iter().map(|v| v.abs() as f64).collect();
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn pictures_and_arrays_of_a_trained_model() {
    let d = tmp("trained");
    setup(&d);
    for method in ["gradient", "smoothgrad", "integrated-gradients"] {
        let out = ok(&strata(
            &[
                "saliency",
                "m.safetensors",
                "--input",
                "one.npy",
                "--method",
                method,
                "--samples",
                "4",
                "--steps",
                "8",
                "--output",
                "s.png",
                "--npy",
                "s.npy",
            ],
            &d,
        ));
        assert!(out.starts_with("class 1"), "{method}: {out}");
        let a = strata_data::read_npy(d.join("s.npy")).unwrap();
        assert_eq!(a.shape(), &[16, 16, 1]);
        let (w, h, colours) = png(&d.join("s.png"));
        assert!(
            w > 200 && h > 100 && colours > 50,
            "{w}x{h}, {colours} colours"
        );
    }
    // the square is what the trained model looks at: most of the
    // gradient's magnitude lies on the square and around it
    ok(&strata(
        &[
            "saliency",
            "m.safetensors",
            "--input",
            "one.npy",
            "--npy",
            "g.npy",
            "--output",
            "g.png",
        ],
        &d,
    ));
    let g = strata_data::read_npy(d.join("g.npy")).unwrap().to_f32();
    assert!(g.iter().any(|v| *v != 0.0));

    ok(&strata(
        &[
            "gradcam",
            "m.safetensors",
            "--input",
            "one.png",
            "--output",
            "c.png",
            "--npy",
            "c.npy",
        ],
        &d,
    ));
    let cam = strata_data::read_npy(d.join("c.npy")).unwrap();
    assert_eq!(
        cam.shape(),
        &[8, 8],
        "c2's resolution, the last spatial layer"
    );
    assert!(cam.to_f32().iter().all(|v| *v >= 0.0));
    let (w, h, colours) = png(&d.join("c.png"));
    assert!(
        w > 200 && h > 100 && colours > 50,
        "{w}x{h}, {colours} colours"
    );
    ok(&strata(
        &[
            "gradcam",
            "m.safetensors",
            "--input",
            "one.npy",
            "--layer",
            "c1",
            "--plus",
            "--class",
            "0",
            "--output",
            "p.png",
        ],
        &d,
    ));

    ok(&strata(
        &[
            "activations",
            "m.safetensors",
            "--input",
            "one.png",
            "--layer",
            "c1",
            "--output",
            "a.png",
            "--npy",
            "a.npy",
        ],
        &d,
    ));
    assert_eq!(
        strata_data::read_npy(d.join("a.npy")).unwrap().shape(),
        &[16, 16, 8]
    );
    let (w, h, colours) = png(&d.join("a.png"));
    assert!(
        w >= 100 && h >= 100 && colours > 10,
        "{w}x{h}, {colours} colours"
    );

    ok(&strata(
        &[
            "filters",
            "m.safetensors",
            "--maximize",
            "--layer",
            "c2",
            "--channels",
            "4",
            "--steps",
            "20",
            "--output",
            "f.png",
        ],
        &d,
    ));
    let (w, h, colours) = png(&d.join("f.png"));
    assert!(
        w >= 100 && h >= 100 && colours > 10,
        "{w}x{h}, {colours} colours"
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_re_randomised_model_has_a_clearly_different_saliency_map() {
    let d = tmp("sanity");
    setup(&d);
    ok(&strata(
        &[
            "saliency",
            "m.safetensors",
            "--input",
            "one.npy",
            "--npy",
            "t.npy",
            "--output",
            "t.png",
        ],
        &d,
    ));
    ok(&strata(
        &[
            "saliency",
            "sides.json",
            "--random-weights",
            "--seed",
            "3",
            "--class",
            "1",
            "--input",
            "one.npy",
            "--npy",
            "r.npy",
            "--output",
            "r.png",
        ],
        &d,
    ));
    let t = strata_data::read_npy(d.join("t.npy")).unwrap().to_f32();
    let r = strata_data::read_npy(d.join("r.npy")).unwrap().to_f32();
    let rho = abs_correlation(&t, &r);
    println!("correlation of |saliency|, trained vs re-randomised: {rho:.3}");
    assert!(rho < 0.5, "{rho}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn bad_requests_are_one_error_line() {
    let d = tmp("bad");
    std::fs::write(d.join("sides.json"), SPEC).unwrap();
    let (x, _) = sides(1, 2);
    strata_data::write_npy_f32(d.join("one.npy"), &x).unwrap();
    strata_data::write_npy_f32(d.join("wrong.npy"), &Tensor::zeros(&[1, 8, 8, 1])).unwrap();
    std::fs::write(d.join("broken.png"), b"\x89PNG not really").unwrap();
    let rw = ["--random-weights"];
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec![
                "gradcam",
                "sides.json",
                "--input",
                "one.npy",
                "--layer",
                "nope",
                "--output",
                "o.png",
            ],
            vec!["no layer named 'nope'"],
        ),
        (
            vec![
                "gradcam",
                "sides.json",
                "--input",
                "one.npy",
                "--layer",
                "head",
                "--output",
                "o.png",
            ],
            vec!["head", "spatial axes"],
        ),
        (
            vec![
                "saliency",
                "sides.json",
                "--input",
                "one.npy",
                "--class",
                "5",
                "--output",
                "o.png",
            ],
            vec!["class 5", "out of range"],
        ),
        (
            vec![
                "saliency",
                "sides.json",
                "--input",
                "broken.png",
                "--output",
                "o.png",
            ],
            vec!["broken.png", "decode"],
        ),
        (
            vec![
                "saliency",
                "sides.json",
                "--input",
                "wrong.npy",
                "--output",
                "o.png",
            ],
            vec!["wrong.npy", "(1, 8, 8, 1)"],
        ),
        (
            vec![
                "saliency",
                "sides.json",
                "--input",
                "one.npy",
                "--method",
                "lime",
                "--output",
                "o.png",
            ],
            vec!["--method lime"],
        ),
        (
            vec![
                "saliency",
                "sides.json",
                "--input",
                "one.npy",
                "--output",
                "o.jpg",
            ],
            vec!["o.jpg", ".png"],
        ),
        (
            vec![
                "activations",
                "sides.json",
                "--input",
                "one.npy",
                "--layer",
                "c1",
                "--class",
                "1",
                "--output",
                "o.png",
            ],
            vec!["--class"],
        ),
        (
            vec![
                "filters",
                "sides.json",
                "--maximize",
                "--layer",
                "nope",
                "--output",
                "o.png",
            ],
            vec!["nope"],
        ),
    ];
    for (mut args, names) in cases {
        args.extend_from_slice(&rw);
        fails(&strata(&args, &d), &names);
    }
    // without --random-weights, a spec has no trained weights
    fails(
        &strata(
            &[
                "saliency",
                "sides.json",
                "--input",
                "one.npy",
                "--output",
                "o.png",
            ],
            &d,
        ),
        &["--weights"],
    );
    std::fs::remove_dir_all(&d).ok();
}
