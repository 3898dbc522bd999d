//! Sets `cfg(host_avx512)` when the building CPU has AVX-512F,
//! `cfg(host_avx512bf16)` when it also has AVX512-BF16, and
//! `cfg(host_packed_gemm)` when it runs the packed GEMM (AVX-512F, or AVX2
//! and FMA), so that tests of those paths are reported as ignored (not
//! passed) on one without.
//! strata itself picks its kernels at run time; this only marks the tests.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(host_avx512)");
    println!("cargo::rustc-check-cfg=cfg(host_avx512bf16)");
    println!("cargo::rustc-check-cfg=cfg(host_packed_gemm)");
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f")
        || (std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"))
    {
        println!("cargo::rustc-cfg=host_packed_gemm");
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        println!("cargo::rustc-cfg=host_avx512");
        if std::is_x86_feature_detected!("avx512bw") && std::is_x86_feature_detected!("avx512bf16")
        {
            println!("cargo::rustc-cfg=host_avx512bf16");
        }
    }
}
