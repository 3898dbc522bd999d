//! Differentiable operations. Each file holds one family: forward, backward,
//! shape rule and tests together. Ops are methods on [`crate::Tensor`].

pub mod binary;
pub mod matmul;
pub mod reduce;
pub mod shape_ops;
pub mod softmax;
pub mod unary;
