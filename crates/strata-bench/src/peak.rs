//! The machine's float32 FMA peak, measured with a register-only AVX-512
//! (or AVX2) FMA loop on 1..=n threads. Nothing is read from memory, so this
//! is the ceiling no GEMM can pass.

use std::time::Instant;

/// Peak assumed for this machine when it cannot be measured (GFLOP/s on 1 thread).
pub const NOMINAL_PEAK_1T: f64 = 258.5;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512(iters: u64) -> (f32, u64) {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    // 12 independent chains: FMA latency 4 x 2 ports = 8 in flight needed.
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(*r, a, b);
        }
    }
    let mut s = acc[0];
    for r in &acc[1..] {
        s = _mm512_add_ps(s, *r);
    }
    (_mm512_reduce_add_ps(s), iters * 12 * 16 * 2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_avx2(iters: u64) -> (f32, u64) {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(*r, a, b);
        }
    }
    let mut s = acc[0];
    for r in &acc[1..] {
        s = _mm256_add_ps(s, *r);
    }
    let mut out = [0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    (out.iter().sum(), iters * 12 * 8 * 2)
}

/// One thread's FMA loop: returns FLOPs done (0 when no FMA unit is usable).
fn fma_loop(iters: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            let (s, f) = unsafe { fma_loop_avx512(iters) };
            std::hint::black_box(s);
            return f;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            let (s, f) = unsafe { fma_loop_avx2(iters) };
            std::hint::black_box(s);
            return f;
        }
    }
    let _ = iters;
    0
}

/// Measured FMA peak in GFLOP/s on `threads` threads (best of `trials`), or
/// `None` where no FMA loop exists for this CPU.
pub fn measure(threads: usize, trials: usize) -> Option<f64> {
    let iters = 20_000_000u64; // ~0.1 s per thread at 4 GHz
    let mut best: Option<f64> = None;
    for _ in 0..trials.max(1) {
        let t0 = Instant::now();
        let flops: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads.max(1))
                .map(|_| s.spawn(|| fma_loop(iters)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        let dt = t0.elapsed().as_secs_f64();
        if flops == 0 {
            return None;
        }
        let g = flops as f64 / dt / 1e9;
        best = Some(best.map_or(g, |b: f64| b.max(g)));
    }
    best
}
