//! Fast CPU kernels behind the ops. Each has a plain reference in its tests.

pub mod gemm;
pub mod parallel;
