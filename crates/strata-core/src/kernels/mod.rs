//! Fast CPU kernels behind the ops. Each has a plain reference in its tests.

pub mod buffers;
pub mod gemm;
pub mod lanes;
pub mod moments;
pub mod packed_gemm;
pub mod parallel;
pub mod transpose;
