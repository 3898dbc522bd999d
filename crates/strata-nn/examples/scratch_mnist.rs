use serde_json::json;
use strata_nn::model::model_from_spec;
use strata_nn::*;
fn main() {
    let t0 = std::time::Instant::now();
    let m = strata_data::Mnist::load_bundled().unwrap();
    println!("load {:?}", t0.elapsed());
    let spec = json!({"input_shape": [28,28,1], "layers": [
        {"type":"Conv2D","filters":32,"kernel_size":3,"activation":"relu"},
        {"type":"MaxPooling2D","pool_size":2},
        {"type":"Conv2D","filters":64,"kernel_size":3,"activation":"relu"},
        {"type":"MaxPooling2D","pool_size":2},
        {"type":"Flatten"},{"type":"Dropout","rate":0.5},
        {"type":"Dense","units":10,"activation":"softmax"}]});
    let mut model = model_from_spec(&spec, 1).unwrap();
    model.compile(
        Loss::from_name("sparse_categorical_crossentropy").unwrap(),
        Optimizer::adam(1e-3),
        &[Metric::Accuracy],
    );
    let steps: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(100);
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 128,
        verbose: Verbosity::Auto,
        max_steps: Some(steps),
        ..FitConfig::default()
    };
    let t = std::time::Instant::now();
    model
        .fit(
            &[m.train_images.clone()],
            &Targets::Classes(m.train_labels.clone()),
            &cfg,
            &mut [],
        )
        .unwrap();
    let dt = t.elapsed().as_secs_f64();
    println!(
        "{steps} steps in {dt:.2}s -> epoch (469 steps) est {:.1}s",
        dt / steps as f64 * 469.0
    );
    let e = model
        .evaluate(
            &[m.test_images.clone()],
            &Targets::Classes(m.test_labels.clone()),
            512,
        )
        .unwrap();
    println!("{e:?}");
}
