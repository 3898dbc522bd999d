//! Sets `cfg(host_avx512)` when the building CPU has AVX-512F, so that tests
//! of the AVX-512 paths are reported as ignored (not passed) on one without.
//! strata itself picks its kernels at run time; this only marks the tests.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(host_avx512)");
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        println!("cargo::rustc-cfg=host_avx512");
    }
}
