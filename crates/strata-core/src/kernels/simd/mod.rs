//! Every SIMD function of strata-core in one place: the AVX-512 forms of
//! kernels whose portable form lives with its caller, which picks between
//! the two with [`available`] at run time, and the packed GEMM's AVX2
//! micro-kernel (`gemm_micro_avx2`) for CPUs without AVX-512. Each `unsafe` block here says why
//! it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod gemm_bf16_micro;
pub mod gemm_micro;
pub mod gemm_micro_avx2;
pub mod lanes;
pub mod moments;
pub mod transpose;
pub mod winograd;
pub mod winograd_f4;

/// Whether this CPU has AVX-512F, which every function here needs but
/// `gemm_micro_avx2`'s.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
