//! A convolution's weights as the right-hand side of its GEMMs.
//!
//! On the packed kernel each group's `kg x cout_g` block (or, for a
//! convolution that runs as Winograd, its transformed matrices) is packed
//! once per call, or once for as long as the weights do not change when they
//! take no gradient (inference, a frozen backbone): the packing is cached on
//! the weight tensor and dropped by its next write. On the `gemm` crate the
//! blocks are read in place. On the bfloat16 kernel they are packed in
//! bfloat16 pairs (cached likewise, under the bfloat16 precision's key).

use crate::precision::Precision;
use std::borrow::Cow;
use std::sync::Arc;

use super::algorithms::{winograd, winograd_f4};
use super::dispatch::{Forward, Gemm};
use super::geometry::ConvPlan;
use crate::kernels::buffers;
use crate::kernels::gemm::{gemm, gemm_serial, MatRef};
use crate::kernels::packed_gemm::{self, PackedB};
use crate::kernels::transpose::transpose;
use crate::tensor::Tensor;

/// One group's weights, ready for [`mul`].
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    /// Packed for the packed kernel.
    Packed(&'a PackedB),
    /// In place, for the `gemm` crate.
    Plain(MatRef<'a>),
}

/// The layouts prepared weights come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One packed block per group.
    Groups,
    /// F(2x2, 3x3)'s 16 transformed matrices.
    Winograd2,
    /// F(4x4, 3x3)'s 36 transformed matrices.
    Winograd4,
}

/// `c (+)= a · b` through the kernel `b` is prepared for; `serial` keeps it on
/// the calling thread (a caller that already runs in parallel).
pub fn mul(a: MatRef, b: Weights, c: &mut [f32], ldc: usize, accumulate: bool, serial: bool) {
    match (b, serial) {
        (Weights::Packed(pb), true) => packed_gemm::gemm_packed_serial(a, pb, c, ldc, accumulate),
        (Weights::Packed(pb), false) => packed_gemm::gemm_packed(a, pb, c, ldc, accumulate),
        (Weights::Plain(m), true) => gemm_serial(a, m, c, ldc, accumulate),
        (Weights::Plain(m), false) => gemm(a, m, c, ldc, accumulate),
    }
}

/// Group `gr`'s `kg x cout_g` block of HWIO weights `w`, in place.
pub fn block<'a>(w: &'a [f32], gr: usize, p: &ConvPlan) -> MatRef<'a> {
    MatRef::strided(&w[gr * p.cout_g..], p.kg, p.cout_g, p.cout)
}

/// Every group's block packed (`transposed`: its transpose, `cout_g x kg`, the
/// right-hand side of dX = dY · Wᵀ), in bfloat16 pairs on the bfloat16
/// kernel, or `None` on the crate.
pub fn pack_groups(w: &[f32], p: &ConvPlan, transposed: bool, gemm: Gemm) -> Option<Vec<PackedB>> {
    if gemm == Gemm::Crate {
        return None;
    }
    let pack = |gr: usize| {
        let b = block(w, gr, p);
        let b = if transposed { b.t() } else { b };
        match gemm.is_bf16() {
            true => PackedB::pack_bf16(b),
            false => PackedB::pack(b),
        }
    };
    Some((0..p.groups).map(pack).collect())
}

/// `w` prepared in `layout` for the packed kernel; `None` on the crate.
pub fn prepare(w: &[f32], p: &ConvPlan, layout: Layout, gemm: Gemm) -> Option<Vec<PackedB>> {
    match (gemm, layout) {
        (Gemm::Crate, _) => None,
        (Gemm::Packed, Layout::Winograd4) => Some(winograd_f4::pack_weights(w, p)),
        (Gemm::Packed, Layout::Winograd2) => Some(winograd::pack_weights(w, p)),
        (Gemm::Packed | Gemm::PackedBf16, Layout::Groups) => pack_groups(w, p, false, gemm),
        (Gemm::PackedBf16, _) => unreachable!("dispatch runs bfloat16 on the GEMM layout only"),
    }
}

/// The kernel that convolves dY into dX ([`rotate_kernel`] of `w`) packed
/// straight from `w` as one block (the [`Layout::Groups`] of a one-group
/// plan): its taps' transposes stacked in reverse order, so the rotated
/// kernel is never built. In bfloat16 pairs on the bfloat16 kernel.
pub fn prepare_rotated(w: &[f32], p: &ConvPlan, gemm: Gemm) -> Vec<PackedB> {
    let (ci, co) = (p.c, p.cout);
    let taps = p.geo.kh * p.geo.kw;
    let views: Vec<MatRef> = (0..taps)
        .rev()
        .map(|t| MatRef::new(&w[t * ci * co..(t + 1) * ci * co], ci, co).t())
        .collect();
    match gemm.is_bf16() {
        true => vec![PackedB::pack_stacked_bf16(&views)],
        false => vec![PackedB::pack_stacked(&views)],
    }
}

/// `W_rot[ki, kj, o, i] = W[kh-1-ki, kw-1-kj, i, o]`: the kernel that convolves dY
/// into dX (spatially flipped, input and output channels swapped), a
/// transpose per tap, the taps in parallel.
pub fn rotate_kernel(w: &[f32], p: &ConvPlan) -> Vec<f32> {
    use rayon::prelude::*;
    let (kh, kw, ci, co) = (p.geo.kh, p.geo.kw, p.c, p.cout);
    let mut wr = buffers::dirty(w.len());
    if ci * co == 0 {
        return wr;
    }
    let tap = |(t, dst): (usize, &mut [f32])| {
        let (ki, kj) = (t / kw, t % kw);
        let src = &w[((kh - 1 - ki) * kw + (kw - 1 - kj)) * ci * co..][..ci * co];
        transpose(src, ci, co, co, dst, ci);
    };
    crate::threads::install(|| wr.par_chunks_mut(co * ci).enumerate().for_each(tap));
    wr
}

/// The cache key of a layout: the group count, or 0 and `usize::MAX` (never
/// group counts) for Winograd's F(2x2, 3x3) and F(4x4, 3x3).
fn layout_key(layout: Layout, p: &ConvPlan) -> usize {
    match layout {
        Layout::Winograd4 => usize::MAX,
        Layout::Winograd2 => 0,
        Layout::Groups => p.groups,
    }
}

/// `kernel` prepared for a forward by `alg` ([`prepare`]) from the values
/// `w` gives (its own, or under the portable bfloat16 path their rounded
/// copy, made only when they are packed; the caller holds the kernel's read
/// lock, so no write can slip between packing and caching); `None` on the
/// crate, which reads the weights in place. A kernel that takes a gradient
/// is packed for this call only: its values change every step, and a cached
/// copy would add their size to the training step's peak memory; any copy
/// cached by an earlier inference goes. [`Forward::Winograd4Packing`] gets nothing here
/// (`None`): it transforms the weights as it goes.
pub fn packed_kernel<'w>(
    kernel: &Tensor,
    w: impl FnOnce() -> Cow<'w, [f32]>,
    p: &ConvPlan,
    alg: Forward,
    gemm: Gemm,
    precision: Precision,
) -> Option<Arc<Vec<PackedB>>> {
    let mut cache = kernel.packed_cache();
    if crate::autograd::should_record(&[kernel]) {
        cache.take();
        drop(cache);
        if alg == Forward::Winograd4Packing || gemm == Gemm::Crate {
            return None;
        }
        let w = w();
        let packed = prepare(&w, p, alg.layout(), gemm).map(Arc::new);
        recycle(w);
        return packed;
    }
    if gemm == Gemm::Crate {
        return None;
    }
    let key = (layout_key(alg.layout(), p), precision);
    if let Some((cached, packed)) = cache.as_ref() {
        // (the same kernel and precision could take the other packed kernel
        // under another plan: Winograd's float32 one, or the bfloat16 one)
        let same_kernel = packed.first().is_none_or(|b| b.is_bf16() == gemm.is_bf16());
        if *cached == key && same_kernel {
            return Some(Arc::clone(packed));
        }
    }
    let w = w();
    let packed = prepare(&w, p, alg.layout(), gemm);
    recycle(w);
    let packed = Arc::new(packed?);
    *cache = Some((key, Arc::clone(&packed)));
    Some(packed)
}

/// Hands a copy made for packing back to the buffer pool.
fn recycle(w: Cow<[f32]>) {
    if let Cow::Owned(v) = w {
        buffers::recycle(v);
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::no_grad;
    use crate::ops::conv2d::Conv2dConfig;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    /// Packed weights are kept while the kernel takes no gradient, dropped by a
    /// write (so the next call sees the new values, not a stale packing), and
    /// never kept for a kernel that trains.
    #[test]
    #[cfg_attr(
        not(host_packed_gemm),
        ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
    )]
    fn packing_is_cached_only_while_the_weights_stay_put() {
        let mut rng = Rng::new(5);
        let x = Tensor::rand_normal(&[2, 9, 9, 5], 0.0, 1.0, &mut rng);
        let k = Tensor::rand_normal(&[3, 3, 5, 7], 0.0, 1.0, &mut rng);
        let cfg = Conv2dConfig::default();
        let first = no_grad(|| x.conv2d(&k, None, cfg)).unwrap().to_vec();
        assert!(k.packed_cache().is_some(), "inference keeps the packing");
        let again = no_grad(|| x.conv2d(&k, None, cfg)).unwrap().to_vec();
        assert_eq!(first, again);

        k.data_mut().iter_mut().for_each(|v| *v *= 2.0);
        assert!(k.packed_cache().is_none(), "a write drops the packing");
        let doubled = no_grad(|| x.conv2d(&k, None, cfg)).unwrap().to_vec();
        for (d, f) in doubled.iter().zip(&first) {
            assert!(
                (d - 2.0 * f).abs() <= 1e-4 * (1.0 + f.abs()),
                "{d} vs 2 * {f}"
            );
        }

        k.set_requires_grad(true);
        let y = x.conv2d(&k, None, cfg).unwrap();
        assert!(
            k.packed_cache().is_none(),
            "a training kernel is not cached"
        );
        assert_eq!(y.to_vec(), doubled);
        // a frozen kernel inside a graph (the input takes the gradient) is cached
        k.set_requires_grad(false);
        x.set_requires_grad(true);
        x.conv2d(&k, None, cfg).unwrap();
        assert!(k.packed_cache().is_some());
    }
}
