//! Fast CPU kernels behind the ops. Each has a plain reference in its tests.
//!
//! The GEMMs (`gemm`, the crate's and its reference; `packed_gemm`, with B
//! packed once), the matrix `transpose`, the buffer pool (`buffers`), the
//! element-wise loops over threads (`parallel`), and, in `simd`, every
//! SIMD function of the crate (AVX-512, and AVX2 forms of the GEMM
//! micro-kernel, the transposes and the F(4x4) Winograd tiles). Dependencies run one way: `packed_gemm`
//! and `transpose` use `simd`, `parallel` uses `buffers`, and `simd` uses
//! nothing here.

pub mod buffers;
pub mod gemm;
pub mod packed_gemm;
pub mod parallel;
pub mod simd;
pub mod transpose;

/// Where strata-nn finds `ChannelMoments` (now BatchNorm's own, in
/// [`crate::ops::batch_norm::moments`]).
pub mod moments {
    pub use crate::ops::batch_norm::moments::{ChannelMoments, MomentSink};
}
