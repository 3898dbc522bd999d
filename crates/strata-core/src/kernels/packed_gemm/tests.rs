//! The packed kernel against the reference product, on every shape class.

use super::*;
use crate::kernels::gemm::matmul_reference;
use crate::rng::Rng;

fn rand(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

/// Every row count of the micro-kernel, column tails inside either half of a
/// panel, several k blocks, strided A and C, accumulating or not, on one
/// thread and split by rows or by columns: all equal the f64 triple loop.
#[test]
#[cfg_attr(
    not(host_packed_gemm),
    ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
)]
fn matches_reference_on_tails_blocks_and_splits() {
    let mut rng = Rng::new(11);
    let shapes = [
        (4, 0, 5),
        (1, 1, 1),
        (5, 3, 7),
        (13, 40, 17),
        (12, 385, 32),
        (25, 800, 70),
        (200, 64, 33),
        (40, 300, 200),
        (700, 147, 64),
    ];
    for &(m, k, n) in &shapes {
        let lda = k + 3;
        let a = rand(m * lda, &mut rng);
        let b = rand(k * n, &mut rng);
        let av = MatRef::strided(&a, m, k, lda);
        let want = matmul_reference(av, MatRef::new(&b, k, n));
        let packed = PackedB::pack(MatRef::new(&b, k, n));
        // B given transposed packs to the same panels
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        assert_eq!(PackedB::pack(MatRef::new(&bt, n, k).t()).data, packed.data);
        for threads in [1, 2, 3] {
            for accumulate in [false, true] {
                let ldc = n + 4;
                let mut c = vec![1.0f32; m * ldc];
                let src = RowMajor::new(av).unwrap();
                gemm_rows_split(&src, &packed, &mut c[1..], ldc, accumulate, threads);
                for r in 0..m {
                    for j in 0..ldc {
                        let got = c[r * ldc + j];
                        let expect = if (1..=n).contains(&j) {
                            want[r * n + j - 1] + if accumulate { 1.0 } else { 0.0 }
                        } else {
                            1.0
                        };
                        assert!(
                            (got - expect).abs() <= 1e-4 * (1.0 + expect.abs()),
                            "{m}x{k}x{n} t{threads} acc {accumulate} ({r},{j}): {got} vs {expect}"
                        );
                    }
                }
            }
        }
    }
}

/// B read in place (rows a stride apart, several k blocks and panels) gives
/// the bits its packed copy gives, split or not; widths that are not whole
/// panels, non-unit column steps and views past their slice are refused.
#[test]
#[cfg_attr(
    not(host_packed_gemm),
    ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
)]
fn panels_in_place_match_packed_ones() {
    let mut rng = Rng::new(12);
    for &(m, k, n, ldb) in &[(7, 5, 64, 64), (40, 400, 128, 200), (13, 900, 192, 192)] {
        let a = rand(m * k, &mut rng);
        let b = rand(k * ldb, &mut rng);
        let bv = MatRef::strided(&b, k, n, ldb);
        let src = RowMajor::new(MatRef::new(&a, m, k)).unwrap();
        let in_place = Panels::in_place(bv).unwrap();
        let packed = PackedB::pack(bv);
        for threads in [1, 2] {
            let (mut c1, mut c2) = (vec![0f32; m * n], vec![0f32; m * n]);
            gemm_rows_split(&src, in_place, &mut c1, n, false, threads);
            gemm_rows_split(&src, &packed, &mut c2, n, false, threads);
            assert_eq!(c1, c2, "{m}x{k}x{n} ldb {ldb} t{threads}");
        }
    }
    let b = vec![0f32; 64 * 130];
    assert!(Panels::in_place(MatRef::new(&b, 64, 130)).is_none());
    assert!(Panels::in_place(MatRef::new(&b, 130, 64).t()).is_none());
    assert!(Panels::in_place(MatRef::strided(&b, 64, 64, 200)).is_none());
}

/// A stored run-major: run `j` of every row together, as a convolution's
/// kernel rows come from different input rows.
struct RunMajor {
    data: Vec<f32>,
    rows: usize,
    depth: usize,
    run: usize,
}

// SAFETY: `data` holds `ceil(depth / run)` blocks of `rows * run` values,
// and run `j` of row `i` starts at `(j * rows + i) * run`.
unsafe impl RowSource for RunMajor {
    fn rows(&self) -> usize {
        self.rows
    }
    fn depth(&self) -> usize {
        self.depth
    }
    fn run(&self) -> usize {
        self.run
    }
    fn row_ptr(&self, i: usize, k0: usize) -> *const f32 {
        let (j, o) = (k0 / self.run, k0 % self.run);
        self.data[(j * self.rows + i) * self.run + o..].as_ptr()
    }
}

/// Runs shorter and longer than a k block (split in equal blocks) and a
/// Views stacked (plain, transposed, strided) pack as the matrix they
/// stack, built first: widths below and past a panel.
#[test]
fn pack_stacked_matches_packing_the_stack() {
    let mut rng = Rng::new(16);
    for n in [5, 64, 70, 130] {
        let plain = rand(7 * n, &mut rng);
        let stored = rand(n * 20, &mut rng); // its transpose is 20 x n
        let wide = rand(3 * (n + 9), &mut rng); // 3 x n inside rows of n + 9
        let views = [
            MatRef::new(&plain, 7, n),
            MatRef::new(&stored, n, 20).t(),
            MatRef::strided(&wide, 3, n, n + 9),
        ];
        let mut stack = Vec::new();
        for v in &views {
            for r in 0..v.rows {
                stack.extend((0..n).map(|c| v.data[r * v.row_stride + c * v.col_stride]));
            }
        }
        let want = PackedB::pack(MatRef::new(&stack, 30, n));
        let got = PackedB::pack_stacked(&views);
        assert_eq!((got.rows(), got.cols()), (30, n));
        assert_eq!(got.data, want.data, "n {n}");
    }
}

/// `build` writes the same panels as packing the matrix it describes,
/// zero padding included, for widths below, at and past one panel.
#[test]
fn build_matches_pack() {
    let mut rng = Rng::new(15);
    for &(k, n) in &[(1, 1), (7, 64), (5, 70), (33, 130), (0, 9)] {
        let b = rand(k * n, &mut rng);
        let built = PackedB::build(k, n, |r, n0, dst| {
            dst.copy_from_slice(&b[r * n + n0..][..dst.len()])
        });
        let packed = PackedB::pack(MatRef::new(&b, k, n));
        assert_eq!((built.rows(), built.cols()), (k, n));
        assert_eq!(built.data, packed.data, "k {k} n {n}");
    }
}

/// last run cut short by the depth: all equal the dense product.
#[test]
#[cfg_attr(
    not(host_packed_gemm),
    ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
)]
fn row_sources_in_runs_match_the_dense_product() {
    let mut rng = Rng::new(14);
    for &(m, k, n, run) in &[(13, 30, 70, 7), (50, 900, 64, 500), (20, 1000, 20, 1000)] {
        let dense = rand(m * k, &mut rng);
        let runs = k.div_ceil(run);
        let mut data = vec![0.0; runs * m * run];
        for i in 0..m {
            for p in 0..k {
                data[((p / run) * m + i) * run + p % run] = dense[i * k + p];
            }
        }
        let src = RunMajor {
            data,
            rows: m,
            depth: k,
            run,
        };
        let b = rand(k * n, &mut rng);
        let want = matmul_reference(MatRef::new(&dense, m, k), MatRef::new(&b, k, n));
        let packed = PackedB::pack(MatRef::new(&b, k, n));
        assert_eq!(
            PackedB::pack_serial(MatRef::new(&b, k, n)).data,
            packed.data
        );
        for t in [1, 2] {
            let mut c = vec![0.0; m * n];
            gemm_rows_split(&src, &packed, &mut c, n, false, t);
            for (g, w) in c.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{m}x{k}x{n} run {run}: {g} vs {w}"
                );
            }
        }
    }
}

/// The split over threads changes which thread computes an element, never
/// how: results are bitwise equal for every thread count.
#[test]
#[cfg_attr(
    not(host_packed_gemm),
    ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
)]
fn bitwise_equal_for_every_thread_count() {
    let mut rng = Rng::new(12);
    for &(m, k, n) in &[(500, 900, 96), (30, 1000, 256)] {
        let a = rand(m * k, &mut rng);
        let b = PackedB::pack(MatRef::new(&rand(k * n, &mut rng), k, n));
        let run = |t: usize| {
            let mut c = vec![0.0; m * n];
            let src = RowMajor::new(MatRef::new(&a, m, k)).unwrap();
            gemm_rows_split(&src, &b, &mut c, n, false, t);
            c
        };
        let one = run(1);
        let mut serial = vec![0.0; m * n];
        gemm_packed_serial(MatRef::new(&a, m, k), &b, &mut serial, n, false);
        assert_eq!(one, serial);
        for t in [2, 3, 4] {
            assert_eq!(run(t), one, "{m}x{k}x{n} threads {t}");
        }
    }
}

/// The bfloat16 kernel against the f64 product of the rounded operands, on
/// row tails, odd depths, several k blocks, runs of A, strided A and C,
/// accumulating or not, on 1-3 threads: within the bound of
/// [`crate::precision::bf16_tolerance`], bitwise equal for every split, and
/// nothing outside C's block written.
#[test]
#[cfg_attr(not(host_avx512bf16), ignore = "needs a CPU with AVX512-BF16")]
fn bf16_matches_the_rounded_product_on_tails_blocks_runs_and_splits() {
    use crate::precision::{bf16_tolerance, round_bf16};
    let mut rng = Rng::new(21);
    // (m, k, n, run): run == k is a plain matrix
    let shapes = [
        (4, 0, 5, 0),
        (1, 1, 1, 1),
        (5, 3, 7, 3),
        (13, 41, 17, 41),
        (12, 770, 32, 770),
        (25, 1601, 70, 1601),
        (200, 64, 33, 64),
        (40, 300, 200, 60),
        (61, 1000, 130, 500),
        (700, 147, 64, 147),
    ];
    for &(m, k, n, run) in &shapes {
        let dense = rand(m * k, &mut rng);
        let b = rand(k * n, &mut rng);
        let round = |v: &[f32]| {
            v.iter()
                .map(|&x| round_bf16(x) as f64)
                .collect::<Vec<f64>>()
        };
        let (ar, br) = (round(&dense), round(&b));
        let packed = PackedB::pack_bf16(MatRef::new(&b, k, n));
        assert!(packed.is_bf16());
        assert_eq!(
            PackedB::pack_bf16_serial(MatRef::new(&b, k, n)).data,
            packed.data
        );
        let runs = k.div_ceil(run.max(1));
        let mut data = vec![0.0; runs * m * run];
        for i in 0..m {
            for p in 0..k {
                data[((p / run) * m + i) * run + p % run] = dense[i * k + p];
            }
        }
        let src = RunMajor {
            data,
            rows: m,
            depth: k,
            run,
        };
        let mut first: Option<Vec<f32>> = None;
        for threads in [1, 2, 3] {
            for accumulate in [false, true] {
                let ldc = n + 4;
                let mut c = vec![1.0f32; m * ldc];
                gemm_rows_split(&src, &packed, &mut c[1..], ldc, accumulate, threads);
                for r in 0..m {
                    for j in 0..ldc {
                        let got = c[r * ldc + j] as f64;
                        if !(1..=n).contains(&j) {
                            assert_eq!(got, 1.0, "outside C");
                            continue;
                        }
                        let (mut want, mut mag) =
                            (accumulate as u8 as f64, accumulate as u8 as f64);
                        for p in 0..k {
                            let t = ar[r * k + p] * br[p * n + j - 1];
                            want += t;
                            mag += t.abs();
                        }
                        assert!(
                            (got - want).abs() <= bf16_tolerance(k + 1, mag),
                            "{m}x{k}x{n} run {run} t{threads} acc {accumulate} ({r},{j}): {got} vs {want}"
                        );
                    }
                }
                if !accumulate {
                    match &first {
                        None => first = Some(c),
                        Some(f) => assert_eq!(f, &c, "bitwise equal for every split"),
                    }
                }
            }
        }
    }
}

/// Linux's cache sizes are read in bytes; anything else, or a size no L2
/// has, is refused (the default then holds), and the pass over B is 3/8 of
/// whatever L2 this machine reports.
#[test]
fn cache_sizes_parse_and_set_the_pass_over_b() {
    assert_eq!(parse_cache_size("512K\n"), Some(512 << 10));
    assert_eq!(parse_cache_size("2M"), Some(2 << 20));
    assert_eq!(parse_cache_size("1048576"), Some(1 << 20));
    for bad in [
        "",
        "K",
        "512KB",
        "12",
        "-1K",
        "99999999999999999999K",
        "128M",
    ] {
        assert_eq!(parse_cache_size(bad), None, "{bad:?}");
    }
    assert_eq!(nc_bytes(), 3 * l2_bytes().unwrap_or(L2_BYTES) / 8);
}
