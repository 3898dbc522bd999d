//! Fast CPU kernels behind the ops. Each has a plain reference in its tests.

pub mod buffers;
pub mod epilogue;
pub mod gemm;
#[cfg(target_arch = "x86_64")]
pub mod lanes;
pub mod moments;
pub mod packed_gemm;
pub mod parallel;
pub mod transpose;
