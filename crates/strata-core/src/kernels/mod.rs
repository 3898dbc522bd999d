//! Fast CPU kernels behind the ops. Each has a plain reference in its tests.

pub mod buffers;
pub mod gemm;
pub mod lanes;
pub mod packed_gemm;
pub mod parallel;
pub mod transpose;

/// Where strata-nn finds `ChannelMoments` (now BatchNorm's own, in
/// [`crate::ops::batch_norm::moments`]).
pub mod moments {
    pub use crate::ops::batch_norm::moments::{ChannelMoments, MomentSink};
}
