//! Runnable answers to the classic CNN questions. Each demo prints what it
//! shows and returns the facts as numbers, so the examples (`cargo run
//! --example NAME`) and the tests share one implementation.

pub mod kernel_shapes;
pub mod learned_blend;
pub mod learned_filters;
pub mod one_by_one_conv;
pub mod resnet50_head;
pub mod softmax_layer;

/// Errors of the demos: whatever layer, data or zoo error occurred.
pub type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Largest absolute difference between two equal-length slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
