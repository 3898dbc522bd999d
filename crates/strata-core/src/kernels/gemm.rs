//! Matrix multiply through the `gemm` crate (AVX-512 micro-kernels, rayon threads).
//!
//! A [`MatRef`] describes a strided matrix view of a slice; [`gemm`] checks that
//! every view stays inside its slice before calling the crate, which is what makes
//! the single `unsafe` call sound.
//!
//! Convolutions give very unequal shapes, and the crate's own threading splits
//! them poorly, so [`gemm`] splits the work over threads itself where a shape
//! calls for it: tall products by rows, short deep ones (dW) by the inner
//! dimension with per-thread partial sums added in thread order, short wide ones
//! (batch 1, deep layers) by columns. Each part runs the crate single-threaded.

use crate::threads;

/// A row-major or transposed view of an `rows x cols` matrix inside a slice.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    /// Distance between consecutive rows, in elements.
    pub row_stride: usize,
    /// Distance between consecutive columns, in elements.
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A contiguous row-major matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }
    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
    /// A row-major view with an explicit row stride (a column block of a wider matrix).
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }
    fn last_index(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
        }
    }
    fn fits(&self) -> bool {
        self.rows == 0 || self.cols == 0 || self.last_index() < self.data.len()
    }
}

/// `c = a · b` (or `c += a · b` when `accumulate`), where `c` is row-major with
/// row stride `c_row_stride`. Panics only on an internal misuse (views that do
/// not fit their slices), which the callers' shape checks rule out.
pub fn gemm(a: MatRef, b: MatRef, c: &mut [f32], c_row_stride: usize, accumulate: bool) {
    gemm_split(a, b, c, c_row_stride, accumulate, threads::num_threads())
}

/// [`gemm`] with its work split for `t` threads (the result depends only on `t`).
fn gemm_split(
    a: MatRef,
    b: MatRef,
    c: &mut [f32],
    c_row_stride: usize,
    accumulate: bool,
    t: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions differ");
    assert!(a.fits() && b.fits(), "gemm: operand view exceeds its slice");
    assert!(
        m == 0 || n == 0 || (m - 1) * c_row_stride + n <= c.len(),
        "gemm: output view exceeds its slice"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[r * c_row_stride..r * c_row_stride + n].fill(0.0);
            }
        }
        return;
    }
    let flops = 2 * m * n * k;
    if flops >= 2_000_000 && t > 1 && split_rows(m, n, t) {
        // Tall-skinny products (every convolution as GEMM: M = batch*H*W) split
        // best by rows: each thread runs the whole single-threaded kernel on its
        // own block of rows of A and C, with no synchronisation inside.
        let rows = m.div_ceil(t);
        let crs = c_row_stride;
        use rayon::prelude::*;
        threads::install(|| {
            c.par_chunks_mut(rows * crs)
                .enumerate()
                .for_each(|(i, cb)| {
                    let r0 = i * rows;
                    if r0 >= m {
                        return; // `c` may extend past the last row (a column block)
                    }
                    let nr = rows.min(m - r0);
                    let ab = MatRef {
                        data: &a.data[r0 * a.row_stride..],
                        rows: nr,
                        ..a
                    };
                    gemm_serial(ab, b, cb, crs, accumulate);
                })
        });
        return;
    }
    if flops >= 2_000_000 && t > 1 && split_depth(m, n, k, t) {
        // Short, deep products (a convolution's dW = colsᵀ·dY sums over every
        // pixel of the batch) split by the inner dimension: each thread computes
        // the product of its slice of K into its own m x n partial, then the
        // partials are added in thread order (so the result depends only on t).
        let kc = k.div_ceil(t);
        use rayon::prelude::*;
        let partials: Vec<Vec<f32>> = threads::install(|| {
            (0..t)
                .into_par_iter()
                .map(|i| {
                    let k0 = (i * kc).min(k);
                    let k1 = ((i + 1) * kc).min(k);
                    let mut part = super::buffers::dirty(m * n);
                    let ab = MatRef {
                        data: &a.data[k0 * a.col_stride..],
                        cols: k1 - k0,
                        ..a
                    };
                    let bb = MatRef {
                        data: &b.data[k0 * b.row_stride..],
                        rows: k1 - k0,
                        ..b
                    };
                    gemm_serial(ab, bb, &mut part, n, false);
                    part
                })
                .collect()
        });
        for r in 0..m {
            let dst = &mut c[r * c_row_stride..r * c_row_stride + n];
            for (pi, part) in partials.iter().enumerate() {
                let src = &part[r * n..(r + 1) * n];
                if pi == 0 && !accumulate {
                    dst.copy_from_slice(src);
                } else {
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                }
            }
        }
        partials.into_iter().for_each(super::buffers::recycle);
        return;
    }
    if flops >= 2_000_000 && t > 1 && split_cols(m, n, k, t) {
        // Few rows, many columns (a batch-1 convolution deep in the network):
        // each thread multiplies by its own block of B's columns into a private
        // buffer, copied into its columns of C afterwards.
        let nc = n.div_ceil(t);
        use rayon::prelude::*;
        let blocks: Vec<(usize, Vec<f32>)> = threads::install(|| {
            (0..t)
                .into_par_iter()
                .filter(|i| i * nc < n)
                .map(|i| {
                    let (n0, n1) = (i * nc, ((i + 1) * nc).min(n));
                    let mut part = super::buffers::dirty(m * (n1 - n0));
                    let bb = MatRef {
                        data: &b.data[n0 * b.col_stride..],
                        cols: n1 - n0,
                        ..b
                    };
                    gemm_serial(a, bb, &mut part, n1 - n0, false);
                    (n0, part)
                })
                .collect()
        });
        for (n0, part) in blocks {
            let w = part.len() / m;
            for r in 0..m {
                let dst = &mut c[r * c_row_stride + n0..r * c_row_stride + n0 + w];
                let src = &part[r * w..(r + 1) * w];
                if accumulate {
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                } else {
                    dst.copy_from_slice(src);
                }
            }
            super::buffers::recycle(part);
        }
        return;
    }
    let par = if flops < 2_000_000 || t == 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(t)
    };
    call(a, b, c, c_row_stride, accumulate, par);
}

/// Whether to split `m x n` over `t` threads by rows rather than inside the crate.
fn split_rows(m: usize, n: usize, t: usize) -> bool {
    m >= 4 * n && m >= 256 * t
}

/// Whether to split `m x k x n` over `t` threads along `k`.
fn split_depth(m: usize, n: usize, k: usize, t: usize) -> bool {
    k >= 8 * m.max(n) && k >= 256 * t
}

/// Whether to split `m x k x n` over `t` threads by columns of B and C.
fn split_cols(m: usize, n: usize, k: usize, t: usize) -> bool {
    m < 256 * t && n >= 64 * t && k >= 64
}

/// [`gemm`] on the calling thread only (for a caller that already runs in parallel).
pub fn gemm_serial(a: MatRef, b: MatRef, c: &mut [f32], c_row_stride: usize, accumulate: bool) {
    assert_eq!(b.rows, a.cols, "gemm: inner dimensions differ");
    assert!(a.fits() && b.fits(), "gemm: operand view exceeds its slice");
    assert!(
        a.rows == 0 || b.cols == 0 || (a.rows - 1) * c_row_stride + b.cols <= c.len(),
        "gemm: output view exceeds its slice"
    );
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    if a.cols == 0 {
        if !accumulate {
            for r in 0..a.rows {
                c[r * c_row_stride..r * c_row_stride + b.cols].fill(0.0);
            }
        }
        return;
    }
    call(a, b, c, c_row_stride, accumulate, gemm::Parallelism::None);
}

/// The crate call, for views already checked to fit (`k > 0`, `m, n > 0`).
fn call(
    a: MatRef,
    b: MatRef,
    c: &mut [f32],
    c_row_stride: usize,
    accumulate: bool,
    par: gemm::Parallelism,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    threads::install(|| {
        // SAFETY: both callers (`gemm_split` and `gemm_serial`) assert, for exactly
        // the views passed here, that every element the call reads (a: (rows-1) *
        // row_stride + (cols-1) * col_stride < a.data.len(), likewise b) and writes
        // (c: (m-1) * c_row_stride + n <= c.len()) lies inside its slice, and that
        // m, n, k > 0. `c` is borrowed mutably and cannot alias `a` or `b`, which
        // are shared borrows. All strides are non-negative and fit isize (slice
        // lengths do).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                c_row_stride as isize,
                accumulate,
                a.data.as_ptr(),
                a.col_stride as isize,
                a.row_stride as isize,
                b.data.as_ptr(),
                b.col_stride as isize,
                b.row_stride as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                par,
            )
        }
    });
}

/// `a · b` into a new row-major `m x n` buffer.
pub fn matmul(a: MatRef, b: MatRef) -> Vec<f32> {
    // a non-accumulating GEMM writes every element (zeros where K = 0)
    let mut c = super::buffers::dirty(a.rows * b.cols);
    gemm(a, b, &mut c, b.cols, false);
    c
}

/// The plain triple loop, the oracle the tests compare [`gemm`] with.
pub fn matmul_reference(a: MatRef, b: MatRef) -> Vec<f32> {
    let mut c = vec![0.0; a.rows * b.cols];
    for i in 0..a.rows {
        for j in 0..b.cols {
            let mut s = 0.0f64;
            for p in 0..a.cols {
                s += a.data[i * a.row_stride + p * a.col_stride] as f64
                    * b.data[p * b.row_stride + j * b.col_stride] as f64;
            }
            c[i * b.cols + j] = s as f32;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn rand(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.normal()).collect()
    }

    #[test]
    fn matches_reference_on_random_shapes_and_transposes() {
        let mut rng = Rng::new(3);
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 9),
            (64, 70, 130),
            (200, 31, 3),
        ] {
            let a = rand(m * k, &mut rng);
            let b = rand(k * n, &mut rng);
            let want = matmul_reference(MatRef::new(&a, m, k), MatRef::new(&b, k, n));
            let got = matmul(MatRef::new(&a, m, k), MatRef::new(&b, k, n));
            for (x, y) in got.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{k}x{n}");
            }
            // a^T stored as (k, m), b^T stored as (n, k)
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let got_t = matmul(MatRef::new(&at, k, m).t(), MatRef::new(&bt, n, k).t());
            for (x, y) in got_t.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()));
            }
        }
    }

    #[test]
    fn accumulates_and_writes_strided_blocks() {
        let a = vec![1.0, 2.0, 3.0, 4.0];
        let b = vec![1.0, 0.0, 0.0, 1.0];
        let mut c = vec![10.0; 6];
        gemm(
            MatRef::new(&a, 2, 2),
            MatRef::new(&b, 2, 2),
            &mut c,
            3,
            true,
        );
        assert_eq!(c, vec![11.0, 12.0, 10.0, 13.0, 14.0, 10.0]);
    }

    /// Shapes that take each way of splitting over threads (by rows, by the
    /// inner dimension, by columns) and the crate's own, with transposed and
    /// strided operands, into a column block of a wider C, accumulating or not.
    #[test]
    fn every_split_matches_reference() {
        let mut rng = Rng::new(4);
        let shapes = [
            (3000, 20, 40), // tall: rows
            (24, 5000, 30), // deep: inner dimension
            (40, 300, 700), // short and wide: columns
            (300, 300, 300),
        ];
        for threads in [2, 3] {
            for &(m, k, n) in &shapes {
                let a = rand(m * k, &mut rng);
                let b = rand(k * n, &mut rng);
                let want = matmul_reference(MatRef::new(&a, m, k), MatRef::new(&b, k, n));
                let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
                for transposed in [false, true] {
                    let av = if transposed {
                        MatRef::new(&at, k, m).t()
                    } else {
                        MatRef::new(&a, m, k)
                    };
                    for accumulate in [false, true] {
                        // C is the middle n columns of an (m, n + 5) matrix of 1s
                        let stride = n + 5;
                        let mut c = vec![1.0; m * stride];
                        let bv = MatRef::new(&b, k, n);
                        gemm_split(av, bv, &mut c[2..], stride, accumulate, threads);
                        for r in 0..m {
                            for j in 0..stride {
                                let got = c[r * stride + j];
                                let expect = if (2..n + 2).contains(&j) {
                                    want[r * n + j - 2] + if accumulate { 1.0 } else { 0.0 }
                                } else {
                                    1.0
                                };
                                assert!(
                                    (got - expect).abs() <= 1e-3 * (1.0 + expect.abs()),
                                    "{m}x{k}x{n} t{threads} {transposed} {accumulate}: {got} {expect}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
