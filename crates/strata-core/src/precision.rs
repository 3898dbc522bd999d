//! The precision a convolution or matrix product multiplies in: Keras's
//! `float32` and `mixed_bfloat16` dtype policies.
//!
//! Under `mixed_bfloat16` the operands (input, kernel, and in the backward the
//! output gradient) are rounded to bfloat16 and their products summed in
//! float32; the variables, the outputs and every other op stay float32. The
//! product of two bfloat16 values is exact in float32, so "round, then the
//! float32 algorithm" is the portable definition every faster bfloat16
//! kernel is tested against.

use std::fmt;
use std::str::FromStr;

/// What a convolution or Dense layer multiplies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// Everything in float32.
    #[default]
    Float32,
    /// Operands rounded to bfloat16, sums in float32 (Keras `mixed_bfloat16`).
    MixedBfloat16,
}

impl Precision {
    /// The Keras policy name: `float32` or `mixed_bfloat16`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::MixedBfloat16 => "mixed_bfloat16",
        }
    }

    /// True when operands are rounded to bfloat16.
    pub fn is_bf16(self) -> bool {
        self == Precision::MixedBfloat16
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "float32" => Ok(Precision::Float32),
            "mixed_bfloat16" => Ok(Precision::MixedBfloat16),
            other => Err(format!(
                "unknown precision '{other}': expected float32 or mixed_bfloat16"
            )),
        }
    }
}

/// `x` rounded to the nearest bfloat16 (ties to even), as an f32; NaN stays
/// NaN, infinities stay infinite, values past bfloat16's range become infinite.
pub fn round_bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    if x.is_nan() {
        return f32::from_bits((bits | 0x0040_0000) & 0xffff_0000);
    }
    let lsb = (bits >> 16) & 1;
    f32::from_bits(bits.wrapping_add(0x7fff + lsb) & 0xffff_0000)
}

/// Every value of `v` rounded to bfloat16 (see [`round_bf16`]).
pub fn rounded_bf16(v: &[f32]) -> Vec<f32> {
    crate::kernels::parallel::map(v, round_bf16)
}

/// The kernel that multiplies bfloat16 operands on this CPU, detected at run
/// time: `avx512-bf16` (`vdpbf16ps`: bfloat16 pairs into float32 sums, about
/// twice the float32 kernel's rate) or `portable` (rounded operands through
/// the float32 kernels). AMX is not implemented. Which convolutions take the
/// fast kernel is decided in `ops/conv2d/dispatch.rs`.
pub fn bf16_kernel() -> &'static str {
    match crate::kernels::packed_gemm::bf16_available() {
        true => "avx512-bf16",
        false => "portable",
    }
}

/// How far a bfloat16 kernel's sum may lie from the portable one (the
/// rounded operands through a float32 kernel): both sum the same exact
/// products in float32, in different orders (`vdpbf16ps` adds pairs first)
/// and with subnormals flushed, so each lies within `depth * 2^-24 *
/// sum|a*b|` of the exact sum and they differ by at most twice that:
/// `depth * 2^-23 * sum|a*b|`, plus the smallest normal float32 for the flushes.
#[cfg(test)]
pub(crate) fn bf16_tolerance(depth: usize, sum_abs_products: f64) -> f64 {
    depth.max(1) as f64 * f64::powi(2.0, -23) * sum_abs_products + f32::MIN_POSITIVE as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_even_bfloat16() {
        assert_eq!(round_bf16(1.0), 1.0);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even one
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round_bf16(1.0 + 1.5 / 256.0), 1.0 + 1.0 / 128.0);
        assert_eq!(round_bf16(-f32::MAX), -f32::INFINITY);
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        for x in [0.1f32, -7.3, 1e-30, 3.0e5] {
            let r = round_bf16(x);
            assert_eq!(r.to_bits() & 0xffff, 0);
            assert!((r - x).abs() <= x.abs() / 256.0, "{x} -> {r}");
        }
    }

    /// The kernel named is the one the CPU has.
    #[test]
    fn names_the_kernel_of_this_cpu() {
        #[cfg(host_avx512bf16)]
        assert_eq!(bf16_kernel(), "avx512-bf16");
        #[cfg(not(host_avx512bf16))]
        assert_eq!(bf16_kernel(), "portable");
    }

    #[test]
    fn names_round_trip() {
        for p in [Precision::Float32, Precision::MixedBfloat16] {
            assert_eq!(p.as_str().parse::<Precision>(), Ok(p));
        }
        assert!("bfloat16".parse::<Precision>().is_err());
    }
}
