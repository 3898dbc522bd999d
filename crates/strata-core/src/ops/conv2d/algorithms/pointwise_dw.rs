//! dW of a one-group 1x1 convolution on the packed kernel: `dW = Xᵀ · dY`
//! (with dX in the same pass over dY where that pays: [`dx_and_dw`]).
//!
//! With M = batch * H * W rows, X `(M, C_in)` and dY `(M, C_out)`, the sum runs
//! over M: tens of thousands of rows for a 56x56 layer, while dW itself is
//! small (`C_in x C_out`). Read in place, Xᵀ is column-major, and a
//! micro-kernel broadcasting from it would touch a new cache line for every
//! value of k. So each thread takes a contiguous part of the rows and walks it
//! in blocks of [`KC`] rows: the block of the narrower of X and dY is
//! transposed into a thread-private matrix (rows the kernel reads with a unit
//! step), the other's block is read in place as B (its width a whole number
//! of panels and its rows less than 4 KiB apart: `OnceB`; packed otherwise),
//! and the kernel accumulates the block's
//! product into the thread's partial result (dW, or dWᵀ when dY is the
//! narrower, transposed at the end); the wider operand is not packed, which
//! would only copy it. The partials are added in part order, so the result
//! depends only on the thread count.

use crate::kernels::gemm::MatRef;
use crate::kernels::packed_gemm::{self, gemm_rows_serial, OnceB, PackedB, RowMajor};
use crate::kernels::transpose::transpose;
use crate::kernels::{buffers, parallel};
use crate::ops::conv2d::geometry::ConvPlan;
use std::sync::{Mutex, PoisonError};

/// Rows of X and dY per block: the transposed block (`C_in x KC`) and the
/// other (`KC x C_out`) stay in L2 for C_in and C_out up to 512, and
/// each product adds KC terms to every element of the thread's partial dW.
const KC: usize = 256;

/// `dW = Xᵀ · dY` of a one-group pointwise convolution, as a `C_in x C_out`
/// row-major matrix (HWIO with a 1x1 window); with `bf16`, on the bfloat16 kernel.
pub fn dw(x: &[f32], dy: &[f32], p: &ConvPlan, bf16: bool) -> Vec<f32> {
    dw_split(x, dy, p, crate::threads::num_threads(), bf16)
}

/// [`dw`] with the rows split into at most `parts` parts, one per task.
fn dw_split(x: &[f32], dy: &[f32], p: &ConvPlan, parts: usize, bf16: bool) -> Vec<f32> {
    let (cin, cout) = (p.c, p.cout);
    let rows = p.n * p.out_pixels();
    // transposing the narrower operand costs the fewest copies: with fewer
    // output channels than input ones, dWᵀ = dYᵀ · X, transposed at the end
    if cout < cin {
        let dwt = product_split(dy, x, rows, cout, cin, parts, bf16);
        let mut dw = buffers::dirty(cin * cout);
        transpose(&dwt, cout, cin, cin, &mut dw, cout);
        buffers::recycle(dwt);
        return dw;
    }
    product_split(x, dy, rows, cin, cout, parts, bf16)
}

/// dX and dW of such a convolution in one pass over dY: each
/// thread takes a contiguous part of the rows and, a block of [`KC`] rows
/// at a time, computes that block's dX (`dY · Wᵀ`, with `wt` the packed
/// `C_out x C_in` Wᵀ, added into `dx` when `dx_accumulate`) and then adds
/// the block's `Xᵀ · dY` to its partial dW while the block of dY is still
/// in L2, instead of a dW pass and a dX pass each reading all of dY from
/// memory. dX and dW are bitwise what [`dw`] and a separate dX GEMM give
/// (each dX row sums over k in the same order whatever the rows' split).
/// Both run on the bfloat16 kernel when `wt` is packed in bfloat16 pairs.
pub fn dx_and_dw(
    x: &[f32],
    dy: &[f32],
    wt: &PackedB,
    p: &ConvPlan,
    dx: &mut [f32],
    dx_accumulate: bool,
) -> Vec<f32> {
    let (cin, cout) = (p.c, p.cout);
    let rows = p.n * p.out_pixels();
    let parts = crate::threads::num_threads().clamp(1, rows.div_ceil(KC).max(1));
    // each part's rows of dX, split where `product_split` splits the rows
    let mut dx_parts = Vec::with_capacity(parts);
    let mut rest = &mut dx[..rows * cin];
    for i in 0..parts {
        let len = (rows * (i + 1) / parts - rows * i / parts) * cin;
        let (part, tail) = rest.split_at_mut(len);
        dx_parts.push(Mutex::new(part));
        rest = tail;
    }
    // a block's dX rows, in the part that starts at row r0 (each part's
    // lock is only ever taken by the one thread that runs that part)
    let dx_block = |r0: usize, k0: usize, kc: usize| {
        let i = (0..parts).find(|&i| rows * i / parts == r0).unwrap_or(0);
        let mut part = dx_parts[i].lock().unwrap_or_else(PoisonError::into_inner);
        let a = MatRef::new(&dy[k0 * cout..(k0 + kc) * cout], kc, cout);
        let a = RowMajor::new(a).expect("a whole matrix is row-major");
        let off = (k0 - r0) * cin;
        gemm_rows_serial(&a, wt, &mut part[off..off + kc * cin], cin, dx_accumulate);
    };
    // dWᵀ = dYᵀ · X where dY is the narrower (transposed at the end)
    if cout < cin {
        let dwt = product_split_with(dy, x, rows, cout, cin, parts, wt.is_bf16(), dx_block);
        let mut dw = buffers::dirty(cin * cout);
        transpose(&dwt, cout, cin, cin, &mut dw, cout);
        buffers::recycle(dwt);
        return dw;
    }
    product_split_with(x, dy, rows, cin, cout, parts, wt.is_bf16(), dx_block)
}

/// `dW = Xᵀ · dY` for a convolution with [`few_rows`]. The sum over the rows
/// is short, so rather than each thread adding its part of the rows into a
/// whole partial dW of its own (4 MiB at 2048 -> 512 channels, for 196
/// rows), the rows of dW are split among the threads in blocks of input
/// channels, each the product of X's channels of the block (transposed)
/// and all of dY (read in place where its width allows, else packed once).
/// Every element sums over all the rows in order, whatever the split.
/// With `bf16`, dY is packed in bfloat16 pairs for the bfloat16 kernel.
pub fn dw_few_rows(x: &[f32], dy: &[f32], p: &ConvPlan, bf16: bool) -> Vec<f32> {
    let (cin, cout) = (p.c, p.cout);
    let rows = p.n * p.out_pixels();
    let mut dw = buffers::dirty(cin * cout);
    let dy = OnceB::of_in(MatRef::new(&dy[..rows * cout], rows, cout), true, bf16);
    // Xᵀ's rows (input channels) `cs`
    let xt = |cs: std::ops::Range<usize>, block: &mut [f32], ld: usize| {
        transpose(&x[cs.start..], rows, cs.len(), cin, block, ld)
    };
    packed_gemm::gemm_built_rows(&mut dw, (cin, rows), dy.panels(), xt);
    dw
}

/// `Aᵀ · B` (`ca x cb`) for row-major `a` (`rows x ca`) and `b` (`rows x cb`),
/// the rows split into at most `parts` parts, one per task (`bf16`: on the
/// bfloat16 kernel).
fn product_split(
    a: &[f32],
    b: &[f32],
    rows: usize,
    ca: usize,
    cb: usize,
    parts: usize,
    bf16: bool,
) -> Vec<f32> {
    product_split_with(a, b, rows, ca, cb, parts, bf16, |_, _, _| {})
}

/// [`product_split`], calling `before(part_start, k0, kc)` before each
/// block's product (on the thread that runs the block).
#[allow(clippy::too_many_arguments)]
fn product_split_with(
    a: &[f32],
    b: &[f32],
    rows: usize,
    ca: usize,
    cb: usize,
    parts: usize,
    bf16: bool,
    before: impl Fn(usize, usize, usize) + Sync + Send,
) -> Vec<f32> {
    let parts = parts.clamp(1, rows.div_ceil(KC).max(1));
    let part = |std::ops::Range { start: r0, end: r1 }: std::ops::Range<usize>| -> Vec<f32> {
        // the first block's product overwrites every element
        let mut c = buffers::dirty(ca * cb);
        let mut at = buffers::dirty(ca * KC);
        for k0 in (r0..r1).step_by(KC) {
            let kc = KC.min(r1 - k0);
            before(r0, k0, kc);
            let at = &mut at[..ca * kc];
            transpose(&a[k0 * ca..(k0 + kc) * ca], kc, ca, ca, at, kc);
            let at = RowMajor::new(MatRef::new(at, ca, kc)).expect("a whole matrix is row-major");
            let block = OnceB::of_in(
                MatRef::new(&b[k0 * cb..(k0 + kc) * cb], kc, cb),
                false,
                bf16,
            );
            gemm_rows_serial(&at, block.panels(), &mut c, cb, k0 > r0);
        }
        buffers::recycle(at);
        c
    };
    parallel::sum_over_parts(rows, parts, ca * cb, part)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::matmul_reference;
    use crate::ops::conv2d::{plan, Conv2dConfig};
    use crate::rng::Rng;

    /// A 1x1 convolution's plan over `n` images of `hw x hw`, its row
    /// count, and random X and dY.
    fn case(
        n: usize,
        hw: usize,
        cin: usize,
        cout: usize,
        rng: &mut Rng,
    ) -> (ConvPlan, usize, Vec<f32>, Vec<f32>) {
        let shape = [n, hw, hw, cin];
        let p = plan(&shape, &[1, 1, cin, cout], None, &Conv2dConfig::default()).unwrap();
        let rows = n * hw * hw;
        let x: Vec<f32> = (0..rows * cin).map(|_| rng.normal()).collect();
        let dy: Vec<f32> = (0..rows * cout).map(|_| rng.normal()).collect();
        (p, rows, x, dy)
    }

    /// `Xᵀ · dY` as the f64 product gives it.
    fn reference_dw(x: &[f32], dy: &[f32], rows: usize, cin: usize, cout: usize) -> Vec<f32> {
        let xt = MatRef::new(x, rows, cin).t();
        matmul_reference(xt, MatRef::new(dy, rows, cout))
    }

    /// Every element of `got` within rounding of `want`'s.
    fn assert_close(got: &[f32], want: &[f32], label: &str) {
        assert_eq!(got.len(), want.len(), "{label}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{label} [{i}]: {g} vs {w}"
            );
        }
    }

    /// dX and dW in one pass are bitwise dW alone and dX from its own GEMM
    /// (written, or added into a gradient so far), for row counts below, at
    /// and past a block and either operand the narrower.
    #[test]
    #[cfg_attr(
        not(host_packed_gemm),
        ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
    )]
    fn one_pass_dx_and_dw_are_bitwise_the_separate_ones() {
        let mut rng = Rng::new(6);
        for (n, hw, cin, cout) in [
            (1, 3, 64, 256),
            (2, 16, 64, 270),
            (3, 13, 300, 64),
            (2, 24, 128, 64),
        ] {
            let (p, rows, x, dy) = case(n, hw, cin, cout, &mut rng);
            let w: Vec<f32> = (0..cin * cout).map(|_| rng.normal()).collect();
            let wt = PackedB::pack(MatRef::new(&w, cin, cout).t());
            let so_far: Vec<f32> = (0..rows * cin).map(|_| rng.normal()).collect();
            for accumulate in [false, true] {
                let mut want_dx = so_far.clone();
                let a = RowMajor::new(MatRef::new(&dy, rows, cout)).unwrap();
                packed_gemm::gemm_rows(&a, &wt, &mut want_dx, cin, accumulate);
                let mut dx = so_far.clone();
                let dw_both = dx_and_dw(&x, &dy, &wt, &p, &mut dx, accumulate);
                assert_eq!(dx, want_dx, "{n}x{hw}x{hw}x{cin}->{cout} {accumulate}");
                assert_eq!(
                    dw_both,
                    dw(&x, &dy, &p, false),
                    "{n}x{hw}x{hw}x{cin}->{cout}"
                );
            }
        }
    }

    /// With too few rows to split: against the f64 product, dY read in
    /// place, packed (a width that is not whole panels, or one whose rows are
    /// 4 KiB apart), and blocks of input channels that do not divide C_in;
    /// the same bits twice.
    #[test]
    #[cfg_attr(
        not(host_packed_gemm),
        ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
    )]
    fn few_rows_match_reference() {
        let mut rng = Rng::new(7);
        for (n, hw, cin, cout) in [
            (8, 7, 256, 64),
            (2, 5, 300, 70),
            (1, 9, 1100, 1024),
            (3, 3, 64, 64),
        ] {
            let (p, rows, x, dy) = case(n, hw, cin, cout, &mut rng);
            use crate::ops::conv2d::dispatch::{self, Dw, Gemm};
            let alg = dispatch::dw(&p, Gemm::Packed, None);
            assert_eq!(alg, Dw::PointwiseFewRows, "{n}x{hw}x{hw}x{cin}->{cout}");
            let want = reference_dw(&x, &dy, rows, cin, cout);
            let got = dw_few_rows(&x, &dy, &p, false);
            assert_close(&got, &want, &format!("{n}x{hw}x{hw}x{cin}->{cout}"));
            assert_eq!(got, dw_few_rows(&x, &dy, &p, false));
        }
    }

    /// Against the f64 product for row counts below, at and past a block, and
    /// split over 1-3 parts; the same thread count gives the same bits.
    #[test]
    #[cfg_attr(
        not(host_packed_gemm),
        ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
    )]
    fn matches_reference_and_is_deterministic() {
        let mut rng = Rng::new(5);
        for (n, hw, cin, cout) in [
            (1, 3, 64, 256),
            (2, 16, 64, 270),
            (3, 13, 300, 64),
            (1, 47, 256, 70),
        ] {
            let (p, rows, x, dy) = case(n, hw, cin, cout, &mut rng);
            let want = reference_dw(&x, &dy, rows, cin, cout);
            for parts in [1, 2, 3] {
                let got = dw_split(&x, &dy, &p, parts, false);
                let label = format!("{n}x{hw}x{hw}x{cin}->{cout} parts {parts}");
                assert_close(&got, &want, &label);
                assert_eq!(got, dw_split(&x, &dy, &p, parts, false));
            }
        }
    }
}
