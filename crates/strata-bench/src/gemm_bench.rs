//! `gemm`: `strata_core::kernels::gemm::gemm` (the `gemm` crate) on square
//! matrices and on the ResNet-50 convolutions seen as GEMMs at batch 8
//! (M = batch*H_out*W_out, K = C_in*kh*kw, N = C_out), row-major, no
//! transposes; then, where the CPU has AVX-512, the packed kernel the
//! convolutions use (`gemm-packed` rows, B packed once beforehand as a
//! convolution's weights are; compare.py pairs them with PyTorch's `gemm` rows).
//! With `--precision mixed_bfloat16`, where the CPU has AVX512-BF16, also
//! the bfloat16 packed kernel (`gemm-packed-bf16` rows: B packed in
//! bfloat16 pairs once, A rounded as the kernel stages it).

use crate::record::{kernel_record, print_row, time_runs, Record};
use crate::Opts;
use strata_core::kernels::gemm::{gemm, MatRef};
use strata_core::kernels::packed_gemm::{self, gemm_packed, PackedB};
use strata_core::{set_num_threads, Rng};

/// (label, M, K, N); bench/torch_bench.py holds the same list.
pub const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("square", 1024, 1024, 1024),
    ("square", 2048, 2048, 2048),
    ("r50.conv1 7x7/2", 8 * 112 * 112, 147, 64),
    ("r50.layer1 1x1", 8 * 56 * 56, 64, 64),
    ("r50.layer1 1x1", 8 * 56 * 56, 64, 256),
    ("r50.layer1 1x1", 8 * 56 * 56, 256, 64),
    ("r50.layer1 3x3", 8 * 56 * 56, 576, 64),
    ("r50.layer2 3x3", 8 * 28 * 28, 1152, 128),
    ("r50.layer2 1x1", 8 * 28 * 28, 128, 512),
    ("r50.layer2 1x1", 8 * 28 * 28, 512, 128),
    ("r50.layer3 3x3", 8 * 14 * 14, 2304, 256),
    ("r50.layer3 1x1", 8 * 14 * 14, 256, 1024),
    ("r50.layer3 1x1", 8 * 14 * 14, 1024, 256),
    ("r50.layer4 3x3", 8 * 7 * 7, 4608, 512),
    ("r50.layer4 1x1", 8 * 7 * 7, 512, 2048),
    ("r50.layer4 1x1", 8 * 7 * 7, 2048, 512),
];

pub fn key(label: &str, m: usize, k: usize, n: usize) -> String {
    format!("gemm {label} {m}x{k}x{n}")
}

fn packed_key(kernel: &str, label: &str, m: usize, k: usize, n: usize) -> String {
    format!("{kernel} {label} {m}x{k}x{n}")
}

fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.normal()).collect()
}

pub fn run(opts: &Opts, threads: &[usize], out: &mut Vec<Record>) {
    let mut rng = Rng::new(1);
    for &(label, m, k, n) in SHAPES {
        let a = random(m * k, &mut rng);
        let b = random(k * n, &mut rng);
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        for &t in threads {
            set_num_threads(t);
            let times = time_runs(
                opts.warmup,
                opts.runs,
                || {},
                || {
                    gemm(
                        MatRef::new(&a, m, k),
                        MatRef::new(&b, k, n),
                        &mut c,
                        n,
                        false,
                    );
                    std::hint::black_box(&c);
                },
            );
            let r = kernel_record(
                "gemm",
                key(label, m, k, n),
                t,
                opts.runs,
                times,
                flops,
                opts.peak(t),
            );
            print_row(&r);
            out.push(r);
        }
        if !packed_gemm::available() {
            continue;
        }
        // strata's packed kernel, and its bfloat16 twin under --precision mixed_bfloat16
        let mut packings = vec![("gemm-packed", PackedB::pack(MatRef::new(&b, k, n)))];
        let bf16 = opts.precision == Some(strata_core::Precision::MixedBfloat16);
        if bf16 && packed_gemm::bf16_available() {
            packings.push((
                "gemm-packed-bf16",
                PackedB::pack_bf16(MatRef::new(&b, k, n)),
            ));
        }
        for (name, packed) in &packings {
            for &t in threads {
                set_num_threads(t);
                let times = time_runs(
                    opts.warmup,
                    opts.runs,
                    || {},
                    || {
                        gemm_packed(MatRef::new(&a, m, k), packed, &mut c, n, false);
                        std::hint::black_box(&c);
                    },
                );
                let key = packed_key(name, label, m, k, n);
                let r = kernel_record("gemm", key, t, opts.runs, times, flops, opts.peak(t));
                print_row(&r);
                out.push(r);
            }
        }
    }
    set_num_threads(0);
}
