//! How many weights a spec may ask for, checked before any is allocated.

use super::*;

pub(super) fn within_limit(p: &(usize, usize)) -> bool {
    p.0 as u64 <= MAX_SIZE && p.1 as u64 <= MAX_SIZE
}

/// The weight values `layer` will allocate for these input shapes, and the
/// arguments that decide it (for the error message).
pub(super) fn planned_weights(layer: &dyn Layer, inputs: &[Vec<usize>]) -> (u128, &'static str) {
    let any = layer.as_any();
    let last = inputs.first().and_then(|s| s.last()).copied().unwrap_or(0) as u128;
    let prod = |xs: &[u128]| xs.iter().fold(1u128, |a, &x| a.saturating_mul(x));
    if let Some(d) = any.downcast_ref::<Dense>() {
        let u = d.units as u128;
        (prod(&[last, u]).saturating_add(u), "units")
    } else if let Some(c) = any.downcast_ref::<Conv2D>() {
        let (kh, kw) = (c.kernel_size.0 as u128, c.kernel_size.1 as u128);
        let per_group = last / (c.groups.max(1) as u128);
        let f = c.filters as u128;
        (
            prod(&[kh, kw, per_group, f]).saturating_add(f),
            "kernel_size/filters",
        )
    } else if let Some(c) = any.downcast_ref::<DepthwiseConv2D>() {
        let (kh, kw) = (c.kernel_size.0 as u128, c.kernel_size.1 as u128);
        let out = prod(&[last, c.depth_multiplier as u128]);
        (
            prod(&[kh, kw, out]).saturating_add(out),
            "kernel_size/depth_multiplier",
        )
    } else if any.is::<BatchNormalization>() {
        (prod(&[last, 4]), "input channels")
    } else {
        (0, "")
    }
}

/// Adds the weights `layer` will allocate to `total`; an error naming the
/// layer when the model would go over [`MAX_SPEC_WEIGHTS`].
pub(super) fn check_weight_budget(
    m: &Model,
    layer: &dyn Layer,
    inputs: &[Source],
    total: &mut u128,
) -> Result<()> {
    let shapes = inputs
        .iter()
        .map(|s| m.shape_of(*s))
        .collect::<Result<Vec<_>>>()?;
    let (n, field) = planned_weights(layer, &shapes);
    *total = total.saturating_add(n);
    if *total > MAX_SPEC_WEIGHTS {
        return Err(NnError::config(
            layer.name(),
            field,
            format!(
                "the weights would hold {n} values ({} in the model so far), over the limit of {MAX_SPEC_WEIGHTS}",
                *total
            ),
        ));
    }
    Ok(())
}
