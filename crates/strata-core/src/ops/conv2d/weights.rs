//! A convolution's weights as the right-hand side of its GEMMs.
//!
//! Where the CPU runs the packed kernel ([`packed_gemm`]), each group's
//! `kg x cout_g` block (or, for a convolution that runs as [`winograd`], its
//! 16 transformed matrices) is packed once per call, or once for as long as
//! the weights do not change when they take no gradient (inference, a frozen
//! backbone): the packing is cached on the weight tensor and dropped by its
//! next write. Elsewhere the blocks go to the `gemm` crate in place.

use std::sync::Arc;

use super::{fast_paths_allowed, winograd, winograd_f4, ConvPlan};
use crate::kernels::gemm::{gemm, gemm_serial, MatRef};
use crate::kernels::packed_gemm::{self, PackedB};
use crate::tensor::Tensor;

/// One group's weights, ready for [`mul`].
#[derive(Clone, Copy)]
pub(super) enum Weights<'a> {
    /// Packed for the packed kernel.
    Packed(&'a PackedB),
    /// In place, for the `gemm` crate.
    Plain(MatRef<'a>),
}

/// `c (+)= a · b` through the kernel `b` is prepared for; `serial` keeps it on
/// the calling thread (a caller that already runs in parallel).
pub(super) fn mul(
    a: MatRef,
    b: Weights,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    serial: bool,
) {
    match (b, serial) {
        (Weights::Packed(pb), true) => packed_gemm::gemm_packed_serial(a, pb, c, ldc, accumulate),
        (Weights::Packed(pb), false) => packed_gemm::gemm_packed(a, pb, c, ldc, accumulate),
        (Weights::Plain(m), true) => gemm_serial(a, m, c, ldc, accumulate),
        (Weights::Plain(m), false) => gemm(a, m, c, ldc, accumulate),
    }
}

/// Group `gr`'s `kg x cout_g` block of HWIO weights `w`, in place.
pub(super) fn block<'a>(w: &'a [f32], gr: usize, p: &ConvPlan) -> MatRef<'a> {
    MatRef::strided(&w[gr * p.cout_g..], p.kg, p.cout_g, p.cout)
}

/// Every group's block packed (`transposed`: its transpose, `cout_g x kg`, the
/// right-hand side of dX = dY · Wᵀ), or `None` where the packed kernel does
/// not run (no AVX-512, or a test comparing with the crate's paths).
pub(super) fn pack_groups(w: &[f32], p: &ConvPlan, transposed: bool) -> Option<Vec<PackedB>> {
    if !packed_gemm::available() || !fast_paths_allowed() {
        return None;
    }
    let pack = |gr: usize| {
        let b = block(w, gr, p);
        PackedB::pack(if transposed { b.t() } else { b })
    };
    Some((0..p.groups).map(pack).collect())
}

/// `w` prepared for the forward's packed kernel: Winograd's 36 transformed
/// matrices where [`winograd_f4::applies`], its 16 (F(2x2, 3x3)) where
/// [`winograd::applies`], else every group's block; `None` where the
/// packed kernel does not run.
pub(super) fn prepare(w: &[f32], p: &ConvPlan) -> Option<Vec<PackedB>> {
    if packed_gemm::available() && fast_paths_allowed() {
        if winograd_f4::applies(p) {
            return Some(winograd_f4::pack_weights(w, p));
        }
        if winograd::applies(p) {
            return Some(winograd::pack_weights(w, p));
        }
    }
    pack_groups(w, p, false)
}

/// The kernel that convolves dY into dX ([`super::rotate_kernel`] of `w`,
/// for `tp`, the [`super::transposed_plan`] of `p`) packed straight from `w`:
/// its taps' transposes stacked in reverse order, so the rotated kernel is
/// never built. `None` where [`prepare`] would not give one packed block
/// (Winograd's layout, or no packed kernel).
pub(super) fn prepare_rotated(w: &[f32], p: &ConvPlan, tp: &ConvPlan) -> Option<Vec<PackedB>> {
    let packed = packed_gemm::available() && fast_paths_allowed();
    if winograd::applies(tp) || winograd_f4::applies(tp) || tp.groups != 1 || !packed {
        return None;
    }
    let (ci, co) = (p.c, p.cout);
    let taps = p.geo.kh * p.geo.kw;
    let views: Vec<MatRef> = (0..taps)
        .rev()
        .map(|t| MatRef::new(&w[t * ci * co..(t + 1) * ci * co], ci, co).t())
        .collect();
    Some(vec![PackedB::pack_stacked(&views)])
}

/// The cache key of the layout [`prepare`] gives: the group count, or 0 and
/// `usize::MAX` (never group counts) for Winograd's F(2x2, 3x3) and F(4x4, 3x3).
fn layout_key(p: &ConvPlan) -> usize {
    if winograd_f4::applies(p) {
        usize::MAX
    } else if winograd::applies(p) {
        0
    } else {
        p.groups
    }
}

/// `kernel` prepared for a forward ([`prepare`]), `w` being its values (the caller
/// holds their read lock, so no write can slip between packing and caching).
/// A kernel that takes a gradient is packed for this call only: its values
/// change every step, and a cached copy would add their size to the training
/// step's peak memory; any copy cached by an earlier inference goes. For a
/// convolution that [`winograd_f4::packs_as_it_goes`], nothing is packed
/// here (`None`): the forward packs a share at a time.
pub(super) fn packed_kernel(kernel: &Tensor, w: &[f32], p: &ConvPlan) -> Option<Arc<Vec<PackedB>>> {
    let mut cache = kernel.packed_cache();
    if crate::autograd::should_record(&[kernel]) {
        cache.take();
        drop(cache);
        // the forward packs these a share at a time
        if winograd_f4::packs_as_it_goes(p) {
            return None;
        }
        return prepare(w, p).map(Arc::new);
    }
    if let Some((key, packed)) = cache.as_ref() {
        if *key == layout_key(p) && fast_paths_allowed() {
            return Some(Arc::clone(packed));
        }
    }
    let packed = Arc::new(prepare(w, p)?);
    *cache = Some((layout_key(p), Arc::clone(&packed)));
    Some(packed)
}

#[cfg(test)]
mod tests {
    use super::super::Conv2dConfig;
    use crate::autograd::no_grad;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    /// Packed weights are kept while the kernel takes no gradient, dropped by a
    /// write (so the next call sees the new values, not a stale packing), and
    /// never kept for a kernel that trains.
    #[test]
    fn packing_is_cached_only_while_the_weights_stay_put() {
        if crate::kernels::packed_gemm::skip_without_avx512() {
            return;
        }
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
