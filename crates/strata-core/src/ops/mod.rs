//! Differentiable operations. Each file holds one family: forward, backward,
//! shape rule and tests together. Ops are methods on [`crate::Tensor`].

pub mod batch_norm;
pub mod binary;
pub mod conv2d;
pub mod depthwise_conv2d;
pub mod dropout;
pub mod matmul;
pub mod padding;
pub mod pool;
pub mod reduce;
pub mod relu_mask;
pub mod shape_ops;
pub mod softmax;
pub mod unary;

pub use conv2d::{Conv2dConfig, Epilogue};
pub use padding::{Geometry2d, Padding};
