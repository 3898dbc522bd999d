//! dW of a one-group 1x1 convolution on the packed kernel: `dW = Xᵀ · dY`.
//!
//! With M = batch * H * W rows, X `(M, C_in)` and dY `(M, C_out)`, the sum runs
//! over M: tens of thousands of rows for a 56x56 layer, while dW itself is
//! small (`C_in x C_out`). Read in place, Xᵀ is column-major, and a
//! micro-kernel broadcasting from it would touch a new cache line for every
//! value of k. So each thread takes a contiguous part of the rows and walks it
//! in blocks of [`KC`] rows: the block of the narrower of X and dY is
//! transposed into a thread-private matrix (rows the kernel reads with a unit
//! step), the other's block is read in place as B (its width a whole number
//! of panels; packed otherwise), and the kernel accumulates the block's
//! product into the thread's partial result (dW, or dWᵀ when dY is the
//! narrower, transposed at the end). Packing that block was a plain copy of
//! the wider operand, 2.6% of the ResNet-50 training step's profile; without
//! it the step at batch 8 went 956.3 -> 948.4 ms (median of 12 steps each,
//! alternated in one process). The partials are added in part order, so
//! the result depends only on the thread count.

use super::ConvPlan;
use crate::kernels::gemm::MatRef;
use crate::kernels::packed_gemm::{self, gemm_rows_serial, PackedB, Panels, RowMajor};
use crate::kernels::transpose::transpose;
use crate::kernels::{buffers, parallel};

/// Rows of X and dY per block: the transposed block (`C_in x KC`) and the
/// other (`KC x C_out`) stay in L2 for C_in and C_out up to 512, and
/// each product adds KC terms to every element of the thread's partial dW.
const KC: usize = 256;

/// Whether [`dw`] computes this convolution's dW: a one-group 1x1 stride-1
/// convolution with at least [`MIN_ROWS`] rows, 64 channels on each side and
/// 256 on one, on a CPU that runs the packed kernel.
///
/// Measured on ResNet-50's 1x1 convolutions at batch 8 (forward + backward,
/// against the `gemm` crate): 28x28 512->128 146 -> 194 GFLOP/s, 56x56
/// 256->64 141 -> 154, 64->256 and 256->128 level; 56x56 64->64 fell 145 ->
/// 120 (copies outweigh its narrow products), and 7x7 2048->512 (392 rows)
/// 180 -> 145 (each thread's 4 MiB partial dW outweighs its few rows). Once
/// the transposes ran in vector blocks, the 14x14 layers (1568 rows) gained
/// too: forward + backward 256->1024 9.8-10.4 -> 9.4-9.5 ms, 1024->512
/// 17.2-18.2 -> 16.4-16.9 ms; the 7x7 ones still lost 0-0.7 ms.
pub(super) fn applies(p: &ConvPlan) -> bool {
    p.pointwise
        && p.groups == 1
        && p.n * p.out_pixels() >= MIN_ROWS
        && p.c.min(p.cout) >= 64
        && p.c.max(p.cout) >= 256
        && packed_gemm::available()
}

/// Fewest rows (pixels of the batch) for [`applies`]: four blocks.
const MIN_ROWS: usize = 4 * KC;

/// `dW = Xᵀ · dY` for a convolution that [`applies`], as a `C_in x C_out`
/// row-major matrix (HWIO with a 1x1 window).
pub(super) fn dw(x: &[f32], dy: &[f32], p: &ConvPlan) -> Vec<f32> {
    dw_split(x, dy, p, crate::threads::num_threads())
}

/// [`dw`] with the rows split into at most `parts` parts, one per task.
fn dw_split(x: &[f32], dy: &[f32], p: &ConvPlan, parts: usize) -> Vec<f32> {
    let (cin, cout) = (p.c, p.cout);
    let rows = p.n * p.out_pixels();
    // transposing the narrower operand costs the fewest copies: with fewer
    // output channels than input ones, dWᵀ = dYᵀ · X, transposed at the end
    if cout < cin {
        let dwt = product_split(dy, x, rows, cout, cin, parts);
        let mut dw = buffers::dirty(cin * cout);
        transpose(&dwt, cout, cin, cin, &mut dw, cout);
        buffers::recycle(dwt);
        return dw;
    }
    product_split(x, dy, rows, cin, cout, parts)
}

/// `Aᵀ · B` (`ca x cb`) for row-major `a` (`rows x ca`) and `b` (`rows x cb`),
/// the rows split into at most `parts` parts, one per task.
fn product_split(
    a: &[f32],
    b: &[f32],
    rows: usize,
    ca: usize,
    cb: usize,
    parts: usize,
) -> Vec<f32> {
    let parts = parts.clamp(1, rows.div_ceil(KC).max(1));
    let part = |std::ops::Range { start: r0, end: r1 }: std::ops::Range<usize>| -> Vec<f32> {
        // the first block's product overwrites every element
        let mut c = buffers::dirty(ca * cb);
        let mut at = buffers::dirty(ca * KC);
        for k0 in (r0..r1).step_by(KC) {
            let kc = KC.min(r1 - k0);
            let at = &mut at[..ca * kc];
            transpose(&a[k0 * ca..(k0 + kc) * ca], kc, ca, ca, at, kc);
            let at = RowMajor::new(MatRef::new(at, ca, kc)).expect("a whole matrix is row-major");
            let block = MatRef::new(&b[k0 * cb..(k0 + kc) * cb], kc, cb);
            match Panels::in_place(block) {
                Some(panels) => gemm_rows_serial(&at, panels, &mut c, cb, k0 > r0),
                None => gemm_rows_serial(&at, &PackedB::pack_serial(block), &mut c, cb, k0 > r0),
            }
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

    /// Against the f64 product for row counts below, at and past a block, and
    /// split over 1-3 parts; the same thread count gives the same bits.
    #[test]
    fn matches_reference_and_is_deterministic() {
        if crate::kernels::packed_gemm::skip_without_avx512() {
            return;
        }
        let mut rng = Rng::new(5);
        for (n, hw, cin, cout) in [
            (1, 3, 64, 256),
            (2, 16, 64, 270),
            (3, 13, 300, 64),
            (1, 47, 256, 70),
        ] {
            let p = plan(
                &[n, hw, hw, cin],
                &[1, 1, cin, cout],
                None,
                &Conv2dConfig::default(),
            )
            .unwrap();
            let rows = n * hw * hw;
            let x: Vec<f32> = (0..rows * cin).map(|_| rng.normal()).collect();
            let dy: Vec<f32> = (0..rows * cout).map(|_| rng.normal()).collect();
            let xt = MatRef::new(&x, rows, cin).t();
            let want = matmul_reference(xt, MatRef::new(&dy, rows, cout));
            for parts in [1, 2, 3] {
                let got = dw_split(&x, &dy, &p, parts);
                for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{n}x{hw}x{hw}x{cin}->{cout} parts {parts} [{i}]: {g} vs {w}"
                    );
                }
                assert_eq!(got, dw_split(&x, &dy, &p, parts));
            }
        }
    }
}
