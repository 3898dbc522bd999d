//! strata-core: float32 tensors (NHWC for images), define-by-run reverse-mode
//! autograd, and the CPU kernels (GEMM through the `gemm` crate, rayon threads).

pub mod autograd;
pub mod error;
pub mod fixtures;
pub mod gradcheck;
pub mod kernels;
pub mod ops;
pub mod precision;
pub mod rng;
pub mod shape;
pub mod tensor;
pub mod threads;

pub use autograd::{is_grad_enabled, no_grad, no_grad_guard};
pub use error::{fmt_shape, CoreError, Result};
pub use ops::{Conv2dConfig, Epilogue, Padding};
pub use precision::Precision;
pub use rng::Rng;
pub use tensor::Tensor;
pub use threads::{num_threads, set_num_threads};
