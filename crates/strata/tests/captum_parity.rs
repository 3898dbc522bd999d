//! strata's attributions equal captum's on torchvision's ResNet-18 with
//! seeded random weights (`strata::parity`), within 1e-4 of the largest
//! reference value: logits, Saliency (abs=False), LayerGradCam on layer4
//! and the outputs of layer2 and layer4. IntegratedGradients (zero
//! baseline, 50 steps, riemann_trapezoid) within 1e-3: it sums the
//! gradients at 50 scaled inputs, and at some of them a ReLU whose input
//! lies within rounding of zero is on in one engine and off in the other,
//! which moves the gradient of a whole receptive field (the gradient is
//! discontinuous there); between such points the two agree to about 4e-6.
//! The references were computed by `tests/captum/make_reference.py`
//! (versions in `versions.json`).

use std::path::PathBuf;

use strata::nn::attribution::{self, SaliencyMethod};

fn reference(name: &str) -> Vec<f32> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/captum")
        .join(name);
    strata::data::read_npy(&p)
        .unwrap_or_else(|e| panic!("the captum reference {}: {e}", p.display()))
        .to_f32()
}

/// max |a - b| / max |b|
fn relative(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    let scale = b.iter().fold(0.0f64, |m, y| m.max((*y as f64).abs()));
    worst / scale
}

fn check(what: &str, got: &[f32], name: &str, tolerance: f64) {
    let want = reference(name);
    let r = relative(got, &want);
    println!("{what}: largest difference {r:.2e} of the largest captum value");
    assert!(r <= tolerance, "{what}: {r:.3e} relative to captum");
}

#[test]
fn attributions_equal_captums() {
    let mut m = strata::parity::model().unwrap();
    let x = strata::parity::input();
    let versions = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/captum/versions.json"),
    )
    .unwrap();
    let target: usize = serde_json::from_str::<serde_json::Value>(&versions).unwrap()["target"]
        .as_u64()
        .unwrap() as usize;

    let logits = attribution::class_scores(&mut m, &x).unwrap();
    check("logits", &logits.to_vec(), "logits.npy", 1e-4);
    let top = logits
        .to_vec()
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i);
    assert_eq!(top, Some(target), "the same top class as torchvision");

    let sal = attribution::saliency(&mut m, &x, None, SaliencyMethod::Gradient).unwrap();
    assert_eq!(sal.class, target);
    check("saliency", &sal.values.to_vec(), "saliency.npy", 1e-4);

    let ig = attribution::saliency(
        &mut m,
        &x,
        Some(target),
        SaliencyMethod::IntegratedGradients { steps: 50 },
    )
    .unwrap();
    check(
        "integrated gradients",
        &ig.values.to_vec(),
        "integrated_gradients.npy",
        1e-3,
    );

    // torchvision's layer4 is the output of its last block: strata's
    // layer4.1.relu
    let cam = attribution::grad_cam(&mut m, &x, "layer4.1.relu", Some(target), false).unwrap();
    check(
        "Grad-CAM layer4",
        &cam.map.to_vec(),
        "gradcam_layer4.npy",
        1e-4,
    );
    for (layer, file) in [
        ("layer2.1.relu", "layer2.npy"),
        ("layer4.1.relu", "layer4.npy"),
    ] {
        let out = attribution::layer_output(&mut m, &x, layer).unwrap();
        check(layer, &out.to_vec(), file, 1e-4);
    }
}
