//! Matrix products: `a [.., M, K] · b [K, N]` (one GEMM over all leading axes,
//! which is what Dense on any rank needs) and batched `a [B.., M, K] · b [B.., K, N]`.

use std::borrow::Cow;

use crate::error::{fmt_shape, CoreError, Result};
use crate::kernels::buffers;
use crate::kernels::gemm::{gemm, matmul as mm, MatRef};
use crate::kernels::packed_gemm::{self, PackedB};
use crate::kernels::transpose::transpose;
use crate::precision::{rounded_bf16, Precision};
use crate::shape::numel;
use crate::tensor::Tensor;

impl Tensor {
    /// Matrix product over the last two axes; a 2-d right operand is shared by
    /// every leading index of the left one.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_in(other, Precision::Float32)
    }

    /// [`Tensor::matmul`] whose products are taken in `precision`: under
    /// bfloat16 both operands (and, in the backward, the output gradient) are
    /// rounded to bfloat16 and the sums kept in float32 (Dense under Keras's
    /// `mixed_bfloat16`). Batched products (a right operand of rank > 2) are
    /// float32 only.
    pub fn matmul_in(&self, other: &Tensor, precision: Precision) -> Result<Tensor> {
        let (sa, sb) = (self.shape(), other.shape());
        if sa.len() < 2 || sb.len() < 2 {
            return Err(CoreError::shape(
                "matmul",
                "operands of rank >= 2",
                format!("{} and {}", fmt_shape(sa), fmt_shape(sb)),
            ));
        }
        let k = sa[sa.len() - 1];
        let m = sa[sa.len() - 2];
        let (kb, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if k != kb {
            return Err(CoreError::shape(
                "matmul",
                format!("right operand with {k} rows to match {}", fmt_shape(sa)),
                fmt_shape(sb),
            ));
        }
        let batch_a = &sa[..sa.len() - 2];
        let batch_b = &sb[..sb.len() - 2];
        let mut out_shape = sa[..sa.len() - 1].to_vec();
        out_shape.push(n);
        let a = self.clone();
        let b = other.clone();
        if batch_b.is_empty() {
            // (B*M, K) · (K, N): one GEMM
            let rows = numel(batch_a) * m;
            if on_bf16_kernel(precision) {
                return Ok(matmul_bf16(self, other, (rows, k, n), out_shape));
            }
            let data = {
                let (ad, bd) = (self.data(), other.data());
                let (ad, bd) = (in_precision(&ad, precision), in_precision(&bd, precision));
                mm(MatRef::new(&ad, rows, k), MatRef::new(&bd, k, n))
            };
            return Ok(Tensor::from_op(
                data,
                out_shape,
                "matmul",
                &[self, other],
                move |g| {
                    let g = in_precision(g, precision);
                    let ga = a
                        .requires_grad()
                        .then(|| grad_lhs(&g, &in_precision(&b.data(), precision), rows, k, n));
                    let gb = b.requires_grad().then(|| {
                        let ad = a.data();
                        let ad = in_precision(&ad, precision);
                        mm(MatRef::new(&ad, rows, k).t(), MatRef::new(&g, rows, n))
                    });
                    vec![ga, gb]
                },
            ));
        }
        if precision != Precision::Float32 {
            return Err(CoreError::arg(
                "matmul",
                "precision",
                format!(
                    "{precision} covers a 2-d right operand (Dense); batched products \
                     {} · {} are float32 only",
                    fmt_shape(sa),
                    fmt_shape(sb)
                ),
            ));
        }
        if batch_a != batch_b {
            return Err(CoreError::shape(
                "matmul",
                format!("equal batch axes {}", fmt_shape(batch_a)),
                fmt_shape(batch_b),
            ));
        }
        let batches = numel(batch_a);
        // each batch's non-accumulating GEMM writes its whole block
        let mut data = buffers::dirty(batches * m * n);
        {
            let (ad, bd) = (self.data(), other.data());
            for i in 0..batches {
                gemm(
                    MatRef::new(&ad[i * m * k..(i + 1) * m * k], m, k),
                    MatRef::new(&bd[i * k * n..(i + 1) * k * n], k, n),
                    &mut data[i * m * n..(i + 1) * m * n],
                    n,
                    false,
                );
            }
        }
        Ok(Tensor::from_op(
            data,
            out_shape,
            "batched_matmul",
            &[self, other],
            move |g| {
                let (ad, bd) = (a.data(), b.data());
                // each batch's non-accumulating product writes its whole block
                let ga = a.requires_grad().then(|| {
                    let mut ga = buffers::dirty(batches * m * k);
                    for i in 0..batches {
                        grad_lhs_into(
                            &g[i * m * n..(i + 1) * m * n],
                            &bd[i * k * n..(i + 1) * k * n],
                            m,
                            k,
                            n,
                            &mut ga[i * m * k..(i + 1) * m * k],
                        );
                    }
                    ga
                });
                let gb = b.requires_grad().then(|| {
                    let mut gb = buffers::dirty(batches * k * n);
                    for i in 0..batches {
                        gemm(
                            MatRef::new(&ad[i * m * k..(i + 1) * m * k], m, k).t(),
                            MatRef::new(&g[i * m * n..(i + 1) * m * n], m, n),
                            &mut gb[i * k * n..(i + 1) * k * n],
                            n,
                            false,
                        );
                    }
                    gb
                });
                vec![ga, gb]
            },
        ))
    }
}

/// Whether a Dense product in `precision` runs on the bfloat16 kernel: under
/// bfloat16 where the CPU has AVX512-BF16 (else the portable definition,
/// rounded operands through the float32 GEMM).
fn on_bf16_kernel(precision: Precision) -> bool {
    precision.is_bf16() && packed_gemm::bf16_available()
}

/// `a (rows x k) · b (k x n)` and its gradients on the bfloat16 kernel: the
/// right operand of each product (B, Bᵀ, dC) packed in bfloat16 pairs, the
/// left (A, dC, Aᵀ) rounded as the kernel stages it; sums in float32.
fn matmul_bf16(
    a: &Tensor,
    b: &Tensor,
    (rows, k, n): (usize, usize, usize),
    out_shape: Vec<usize>,
) -> Tensor {
    // every element is written by the non-accumulating products
    let mut data = buffers::dirty(rows * n);
    {
        let (ad, bd) = (a.data(), b.data());
        let pb = PackedB::pack_bf16(MatRef::new(&bd, k, n));
        packed_gemm::gemm_packed(MatRef::new(&ad, rows, k), &pb, &mut data, n, false);
    }
    let (ta, tb) = (a.clone(), b.clone());
    Tensor::from_op(data, out_shape, "matmul", &[a, b], move |g| {
        let ga = ta.requires_grad().then(|| {
            let mut ga = buffers::dirty(rows * k);
            let bt = PackedB::pack_bf16(MatRef::new(&tb.data(), k, n).t());
            packed_gemm::gemm_packed(MatRef::new(g, rows, n), &bt, &mut ga, k, false);
            ga
        });
        let gb = tb.requires_grad().then(|| {
            let mut gb = buffers::dirty(k * n);
            let at = transpose2(&ta.data(), rows, k);
            let pg = PackedB::pack_bf16(MatRef::new(g, rows, n));
            packed_gemm::gemm_packed(MatRef::new(&at, k, rows), &pg, &mut gb, n, false);
            buffers::recycle(at);
            gb
        });
        vec![ga, gb]
    })
}

/// `v` as the products see it: itself in float32, rounded under bfloat16.
fn in_precision(v: &[f32], precision: Precision) -> Cow<'_, [f32]> {
    match precision {
        Precision::Float32 => Cow::Borrowed(v),
        Precision::MixedBfloat16 => Cow::Owned(rounded_bf16(v)),
    }
}

/// `dA = dC · Bᵀ` (`rows x k`) for `dC` (`rows x n`) and `B` (`k x n`).
fn grad_lhs(g: &[f32], b: &[f32], rows: usize, k: usize, n: usize) -> Vec<f32> {
    // every element is written by `grad_lhs_into`
    let mut ga = buffers::dirty(rows * k);
    grad_lhs_into(g, b, rows, k, n, &mut ga);
    ga
}

/// [`grad_lhs`] written to `out` (`rows x k`, row-major). The crate is slow
/// on a transposed right-hand side, so the smaller of `B` and `dC` is
/// transposed first: with fewer rows than columns (a classifier head at a
/// small batch: 8 rows against ResNet-50's 2048 x 1000 weights)
/// `dAᵀ = B · dCᵀ` and its transpose move far less than `Bᵀ` would.
fn grad_lhs_into(g: &[f32], b: &[f32], rows: usize, k: usize, n: usize, out: &mut [f32]) {
    if rows < n {
        let gt = transpose2(g, rows, n);
        let gat = mm(MatRef::new(b, k, n), MatRef::new(&gt, n, rows));
        buffers::recycle(gt);
        transpose(&gat, k, rows, rows, out, k);
        buffers::recycle(gat);
        return;
    }
    let bt = transpose2(b, k, n);
    gemm(
        MatRef::new(g, rows, n),
        MatRef::new(&bt, n, k),
        out,
        k,
        false,
    );
    buffers::recycle(bt);
}

/// Row-major transpose of an `r x c` matrix.
pub(crate) fn transpose2(x: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut out = buffers::dirty(r * c);
    transpose(x, r, c, c, &mut out, r);
    out
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::check_gradients;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    #[test]
    fn values_and_shapes() {
        let a = Tensor::from_vec(vec![1., 2., 3., 4., 5., 6.], &[2, 3]).unwrap();
        let b = Tensor::from_vec(vec![1., 0., 0., 1., 1., 1.], &[3, 2]).unwrap();
        assert_eq!(a.matmul(&b).unwrap().to_vec(), vec![4., 5., 10., 11.]);
        let e = a.matmul(&a).unwrap_err().to_string();
        assert!(e.contains("matmul") && e.contains("(2, 3)"), "{e}");
        let x = Tensor::zeros(&[4, 5, 3]);
        assert_eq!(x.matmul(&b).unwrap().shape(), &[4, 5, 2]);
    }

    /// Under bfloat16 the product is the float32 one of the rounded operands,
    /// and each gradient the float32 one of rounded operands and gradient.
    #[test]
    fn bfloat16_is_the_product_of_rounded_operands() {
        use crate::precision::{rounded_bf16, Precision};
        let mut r = Rng::new(9);
        let a = Tensor::rand_normal(&[5, 7], 0.0, 1.0, &mut r).requires_grad_(true);
        let b = Tensor::rand_normal(&[7, 3], 0.0, 1.0, &mut r).requires_grad_(true);
        let y = a.matmul_in(&b, Precision::MixedBfloat16).unwrap();
        let round = |t: &Tensor| Tensor::from_vec(rounded_bf16(&t.to_vec()), t.shape()).unwrap();
        let (ar, br) = (round(&a), round(&b));
        // (the bfloat16 kernel sums in another order: see bf16_kernel_matches_the_portable_path)
        assert!(y.allclose(&ar.matmul(&br).unwrap(), 1e-6, 1e-6));
        let dy = Tensor::rand_normal(&[5, 3], 0.0, 1.0, &mut r);
        y.mul(&dy).unwrap().sum_all().backward().unwrap();
        let dyr = round(&dy);
        let want_da = dyr.matmul(&br.transpose(0, 1).unwrap()).unwrap();
        let want_db = ar.transpose(0, 1).unwrap().matmul(&dyr).unwrap();
        assert!(a.grad().unwrap().allclose(&want_da, 1e-6, 1e-6));
        assert!(b.grad().unwrap().allclose(&want_db, 1e-6, 1e-6));
        assert_ne!(y.to_vec(), a.matmul(&b).unwrap().to_vec());
        let e = Tensor::zeros(&[2, 2, 3])
            .matmul_in(&Tensor::zeros(&[2, 3, 2]), Precision::MixedBfloat16)
            .unwrap_err()
            .to_string();
        assert!(e.contains("float32 only"), "{e}");
    }

    /// Dense under bfloat16 on this CPU's kernel (the bfloat16 one where it
    /// has AVX512-BF16): the product, dA and dB against the portable
    /// definition (rounded operands and gradient through float32), within
    /// [`crate::precision::bf16_tolerance`] of each value's sum of |products|,
    /// on odd depths, column tails, rank 3 and a classifier head's shape.
    #[test]
    #[cfg_attr(not(host_avx512bf16), ignore = "needs a CPU with AVX512-BF16")]
    fn bf16_kernel_matches_the_portable_path() {
        use crate::precision::{bf16_tolerance, rounded_bf16, Precision};
        let mut r = Rng::new(31);
        for (sa, n) in [
            (vec![5, 7], 3),
            (vec![2, 9, 33], 70),
            (vec![8, 2048], 1000),
            (vec![130, 301], 129),
        ] {
            let k = sa[sa.len() - 1];
            let rows: usize = sa[..sa.len() - 1].iter().product();
            let a = Tensor::rand_normal(&sa, 0.0, 1.0, &mut r).to_vec();
            let b = Tensor::rand_normal(&[k, n], 0.0, 1.0, &mut r).to_vec();
            let g = Tensor::rand_normal(&[rows * n], 0.0, 1.0, &mut r).to_vec();
            let run = |a: &[f32], b: &[f32], g: &[f32], p: Precision| -> [Vec<f32>; 3] {
                let a = Tensor::from_vec(a.to_vec(), &sa)
                    .unwrap()
                    .requires_grad_(true);
                let b = Tensor::from_vec(b.to_vec(), &[k, n])
                    .unwrap()
                    .requires_grad_(true);
                let y = a.matmul_in(&b, p).unwrap();
                let g = Tensor::from_vec(g.to_vec(), y.shape()).unwrap();
                y.mul(&g).unwrap().sum_all().backward().unwrap();
                [
                    y.to_vec(),
                    a.grad().unwrap().to_vec(),
                    b.grad().unwrap().to_vec(),
                ]
            };
            let fast = run(&a, &b, &g, Precision::MixedBfloat16);
            let (ar, br, gr) = (rounded_bf16(&a), rounded_bf16(&b), rounded_bf16(&g));
            let portable = run(&ar, &br, &gr, Precision::Float32);
            let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
            let mag = run(&abs(&ar), &abs(&br), &abs(&gr), Precision::Float32);
            for (d, depth) in [k, n, rows].into_iter().enumerate() {
                for (i, ((f, w), m)) in fast[d].iter().zip(&portable[d]).zip(&mag[d]).enumerate() {
                    let bound = bf16_tolerance(depth, *m as f64 * 1.0001);
                    assert!(
                        ((f - w) as f64).abs() <= bound,
                        "{sa:?}x{n} part {d}[{i}]: {f} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn gradients_2d_rank3_and_batched() {
        let mut r = Rng::new(5);
        // 4 rows against 5 columns: dA as (B · dCᵀ)ᵀ; 8 rows below: dC · Bᵀ
        let a = Tensor::rand_normal(&[4, 3], 0.0, 1.0, &mut r);
        let b = Tensor::rand_normal(&[3, 5], 0.0, 1.0, &mut r);
        check_gradients(&[a, b.clone()], |t| t[0].matmul(&t[1]));
        let a3 = Tensor::rand_normal(&[2, 4, 3], 0.0, 1.0, &mut r);
        check_gradients(&[a3.clone(), b], |t| t[0].matmul(&t[1]));
        let b3 = Tensor::rand_normal(&[2, 3, 2], 0.0, 1.0, &mut r);
        check_gradients(&[a3.clone(), b3], |t| t[0].matmul(&t[1]));
        // batched with fewer rows (4) than columns (6): dA as (B · dCᵀ)ᵀ per batch
        let b6 = Tensor::rand_normal(&[2, 3, 6], 0.0, 1.0, &mut r);
        check_gradients(&[a3, b6], |t| t[0].matmul(&t[1]));
    }
}
