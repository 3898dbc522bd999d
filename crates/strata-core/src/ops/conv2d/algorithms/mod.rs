//! The convolution's algorithms, one file each. Each computes what it is
//! given; `dispatch.rs` decides which one runs, so none asks whether it applies.

pub mod dw_tiled;
pub mod im2col;
pub mod im2col_gemm;
pub mod implicit;
pub mod pointwise_dw;
pub mod strided_pointwise_dx;
pub mod winograd;
pub mod winograd_dw;
pub mod winograd_f4;
pub mod winograd_f4_whole;
