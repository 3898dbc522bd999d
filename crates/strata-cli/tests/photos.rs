//! A new user's path with their own photos, end to end on real files the
//! test writes: JPEG and PNG, greyscale, RGBA and 16-bit PNGs, odd sizes and
//! one corrupt file. Train from the folder, then summary, evaluate and
//! predict on the saved model file alone, with class names throughout.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{ok_out_err as ok, strata};

use serde_json::Value;

fn fails(o: &Output) -> String {
    assert!(!o.status.success(), "should have failed");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    assert!(
        err.trim_end().ends_with(errors[0].trim_end()),
        "the error comes last: {err}"
    );
    errors[0].to_string()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-photos-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The colour of each class, with some noise per pixel.
const CLASSES: [(&str, [u8; 3]); 3] = [
    ("blueberry", [30, 40, 200]),
    ("lime", [60, 210, 40]),
    ("tomato", [220, 40, 30]),
];

fn pixel(base: [u8; 3], x: u32, y: u32, i: u32) -> [u8; 3] {
    let n = |k: u32| ((x * 7 + y * 13 + i * 29 + k * 5) % 41) as i32 - 20;
    [0, 1, 2].map(|k| (base[k] as i32 + n(k as u32)).clamp(0, 255) as u8)
}

/// Writes image `i` of a class in one of six formats and sizes.
fn write_photo(dir: &Path, base: [u8; 3], i: u32) -> PathBuf {
    let (w, h) = (17 + (i * 5) % 23, 13 + (i * 7) % 19);
    let rgb = image::RgbImage::from_fn(w, h, |x, y| image::Rgb(pixel(base, x, y, i)));
    let path = match i % 6 {
        0 => {
            let p = dir.join(format!("p{i}.jpeg"));
            rgb.save_with_format(&p, image::ImageFormat::Jpeg).unwrap();
            p
        }
        3 => {
            let p = dir.join(format!("p{i}.jpg"));
            rgb.save(&p).unwrap();
            p
        }
        1 => {
            let p = dir.join(format!("p{i}.PNG"));
            rgb.save_with_format(&p, image::ImageFormat::Png).unwrap();
            p
        }
        2 => {
            let p = dir.join(format!("p{i}.png"));
            let rgba = image::RgbaImage::from_fn(w, h, |x, y| {
                let [r, g, b] = pixel(base, x, y, i);
                image::Rgba([r, g, b, 128])
            });
            rgba.save(&p).unwrap();
            p
        }
        4 => {
            let p = dir.join(format!("p{i}.png"));
            let deep = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
                image::Rgb(pixel(base, x, y, i).map(|v| v as u16 * 257))
            });
            deep.save(&p).unwrap();
            p
        }
        _ => {
            // greyscale: the class shows only as brightness
            let p = dir.join(format!("p{i}.png"));
            let grey = image::GrayImage::from_fn(w, h, |x, y| {
                let [r, g, b] = pixel(base, x, y, i);
                image::Luma([((r as u32 * 299 + g as u32 * 587 + b as u32 * 114) / 1000) as u8])
            });
            grey.save(&p).unwrap();
            p
        }
    };
    path
}

fn make_folder(root: &Path, per_class: u32, classes: &[usize], corrupt: bool) {
    for &c in classes {
        let (name, base) = CLASSES[c];
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            write_photo(&dir, base, i + 100 * c as u32);
        }
    }
    if corrupt {
        std::fs::write(
            root.join(CLASSES[classes[0]].0).join("broken.jpg"),
            b"\xff\xd8\xff\xe0 not really a jpeg",
        )
        .unwrap();
    }
}

const SPEC: &str = r#"{"name": "colours", "input_shape": [16, 16, 3], "layers": [
  {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
  {"type": "GlobalAveragePooling2D"},
  {"type": "Dense", "units": 3, "activation": "softmax"}]}"#;

#[test]
fn from_a_photo_folder_to_named_predictions() {
    let d = tmp("path");
    let photos = d.join("photos");
    make_folder(&photos, 12, &[0, 1, 2], true);
    std::fs::write(d.join("colours.json"), SPEC).unwrap();
    let (out, err) = ok(&strata(
        &[
            "train",
            "colours.json",
            "--data",
            "photos",
            "--epochs",
            "12",
            "--batch-size",
            "6",
            "--lr",
            "0.02",
            "--augment",
            "crop,flip",
            "--crop-scale",
            "0.5,1",
            "--validation-split",
            "0.25",
            "--normalize",
            "0.5,0.25",
            "--save",
            "m.safetensors",
        ],
        &d,
    ));
    assert!(out.contains("classes: blueberry, lime, tomato"), "{out}");
    assert!(
        out.contains("1 unreadable image skipped") || err.contains("1 unreadable image skipped"),
        "the corrupt file is counted in the progress line:\n{out}\n{err}"
    );
    assert!(out.contains("validation accuracy: "), "{out}");

    // The model file alone answers: summary, evaluate, predict.
    let (summary, _) = ok(&strata(&["summary", "m.safetensors"], &d));
    assert!(summary.contains("Total params"), "{summary}");
    let (ev, _) = ok(&strata(
        &["evaluate", "m.safetensors", "--data", "photos", "--json"],
        &d,
    ));
    let ev: Value = serde_json::from_str(ev.trim()).unwrap();
    let acc = ev["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.9, "accuracy on the training folder: {acc}");

    // A folder holding two of the three classes, matched by name.
    let two = d.join("two");
    make_folder(&two, 4, &[1, 2], false);
    let (ev2, _) = ok(&strata(
        &["evaluate", "m.safetensors", "--data", "two", "--json"],
        &d,
    ));
    let acc2 = serde_json::from_str::<Value>(ev2.trim()).unwrap()["accuracy"]
        .as_f64()
        .unwrap();
    assert!(acc2 >= 0.75, "two classes matched by name: {acc2}");
    // A class the model does not know is refused, by name.
    let other = d.join("other");
    make_folder(&other, 2, &[0], false);
    std::fs::create_dir_all(other.join("banana")).unwrap();
    write_photo(&other.join("banana"), [230, 220, 40], 1);
    let e = fails(&strata(
        &["evaluate", "m.safetensors", "--data", "other"],
        &d,
    ));
    assert!(e.contains("banana"), "{e}");

    // One photo: its class by name, first.
    let tomato = write_photo(&d, CLASSES[2].1, 7);
    let (pred, _) = ok(&strata(
        &[
            "predict",
            "m.safetensors",
            "--input",
            tomato.to_str().unwrap(),
            "--top-k",
            "2",
        ],
        &d,
    ));
    let line = pred.lines().next().unwrap();
    let after = line.split(": ").nth(1).unwrap();
    assert!(after.starts_with("tomato "), "{pred}");
    assert_eq!(after.split(", ").count(), 2, "{pred}");

    // A folder, written as CSV and JSON.
    ok(&strata(
        &[
            "predict",
            "m.safetensors",
            "--input",
            "two",
            "--output",
            "preds.csv",
        ],
        &d,
    ));
    let csv = std::fs::read_to_string(d.join("preds.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("input,rank,class_id,class,probability"));
    let firsts: Vec<&str> = csv
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some("1"))
        .collect();
    assert_eq!(firsts.len(), 8);
    let right = firsts
        .iter()
        .filter(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f[0].contains(&format!("/{}/", f[3]))
        })
        .count();
    assert!(right >= 6, "{csv}");
    ok(&strata(
        &[
            "predict",
            "m.safetensors",
            "--input",
            tomato.to_str().unwrap(),
            "--output",
            "p.json",
        ],
        &d,
    ));
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("p.json")).unwrap()).unwrap();
    assert_eq!(j[0]["top"][0]["class"], "tomato");
    let total: f64 = j[0]["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["probability"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-4, "all 3 classes shown: {total}");

    // --strict refuses the corrupt file, naming it.
    let e = fails(&strata(
        &[
            "train",
            "colours.json",
            "--data",
            "photos",
            "--epochs",
            "1",
            "--strict",
            "--no-shuffle",
            "--save",
            "s.safetensors",
        ],
        &d,
    ));
    assert!(e.contains("broken.jpg"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_saved_zoo_resnet_loads_everywhere() {
    let d = tmp("resnet");
    let photos = d.join("photos");
    make_folder(&photos, 3, &[0, 1, 2], false);
    ok(&strata(
        &[
            "train",
            "resnet18",
            "--data",
            "photos",
            "--input-shape",
            "32,32,3",
            "--steps",
            "1",
            "--batch-size",
            "9",
            "--save",
            "r18.safetensors",
        ],
        &d,
    ));
    let (summary, _) = ok(&strata(&["summary", "r18.safetensors"], &d));
    assert!(summary.contains("conv1"), "{summary}");
    ok(&strata(
        &["evaluate", "r18.safetensors", "--data", "photos"],
        &d,
    ));
    let photo = write_photo(&d, CLASSES[0].1, 1);
    let (pred, _) = ok(&strata(
        &[
            "predict",
            "r18.safetensors",
            "--input",
            photo.to_str().unwrap(),
        ],
        &d,
    ));
    assert!(
        CLASSES.iter().any(|(n, _)| pred.contains(n)),
        "class names in {pred}"
    );
    // Usage errors keep the missing argument's name.
    let e = fails(&strata(&["predict", "r18.safetensors"], &d));
    assert!(e.contains("--input"), "{e}");
    // A spec or zoo name needs --weights to evaluate.
    let e = fails(&strata(
        &[
            "evaluate",
            "resnet18",
            "--data",
            "photos",
            "--input-shape",
            "32,32,3",
        ],
        &d,
    ));
    assert!(e.contains("--weights"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}
