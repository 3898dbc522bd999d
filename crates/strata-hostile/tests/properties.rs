//! Property tests. For random layer configurations, valid or not:
//! - a configuration Keras accepts builds, to the shape Keras's formula gives,
//!   and `forward` on a random batch produces exactly that shape;
//! - one Keras refuses is refused by `build` (before any computation) with an
//!   error, never a panic.
//!
//! And broadcasting: `Tensor::add` gives numpy's broadcast shape, or `Err`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use proptest::prelude::*;
use strata_core::ops::Padding;
use strata_core::{Rng, Tensor};
use strata_nn::layers::{
    AveragePooling2D, Concatenate, Conv2D, Dense, DepthwiseConv2D, MaxPooling2D, Reshape,
};
use strata_nn::{Ctx, Layer};

/// Builds `layer` on `inputs` (per-sample shapes); when `expected` is Some,
/// the build must succeed with that shape and a forward pass on a batch of
/// `batch` random samples must give `[batch] + shape`; when None, the build
/// must fail. Panics anywhere fail the property.
fn check(
    layer: &mut dyn Layer,
    inputs: &[Vec<usize>],
    expected: Option<Vec<usize>>,
    batch: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut rng = Rng::new(seed);
    let built = catch_unwind(AssertUnwindSafe(|| layer.build(inputs, &mut rng)))
        .map_err(|_| TestCaseError::fail(format!("build panicked on {inputs:?}")))?;
    let Some(want) = expected else {
        prop_assert!(
            built.is_err(),
            "build accepted an invalid configuration on {inputs:?}: {built:?}"
        );
        let msg = built.err().map(|e| e.to_string()).unwrap_or_default();
        prop_assert!(!msg.is_empty());
        return Ok(());
    };
    let shape = built.map_err(|e| TestCaseError::fail(format!("build refused {inputs:?}: {e}")))?;
    prop_assert_eq!(&shape, &want, "build's shape for {:?}", inputs);
    let xs: Vec<Tensor> = inputs
        .iter()
        .map(|s| {
            let mut full = vec![batch];
            full.extend_from_slice(s);
            Tensor::rand_uniform(&full, -1.0, 1.0, &mut rng)
        })
        .collect();
    let mut ctx = Ctx {
        training: false,
        rng: &mut rng,
    };
    let y = catch_unwind(AssertUnwindSafe(|| layer.forward(&xs, &mut ctx)))
        .map_err(|_| TestCaseError::fail(format!("forward panicked on {inputs:?}")))?
        .map_err(|e| TestCaseError::fail(format!("forward failed on {inputs:?}: {e}")))?;
    let mut full = vec![batch];
    full.extend_from_slice(&shape);
    prop_assert_eq!(y.shape(), &full[..], "forward's shape for {:?}", inputs);
    Ok(())
}

/// Keras's output length along one axis, or None when Keras refuses.
fn keras_len(n: usize, k: usize, s: usize, d: usize, same: bool) -> Option<usize> {
    if k == 0 || s == 0 || d == 0 {
        return None;
    }
    if same {
        Some(n.div_ceil(s))
    } else {
        let eff = (k - 1) * d + 1;
        (eff <= n).then(|| (n - eff) / s + 1)
    }
}

fn padding(same: bool) -> Padding {
    if same {
        Padding::Same
    } else {
        Padding::Valid
    }
}

fn cfg() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn conv2d_build_matches_forward(
        (h, w, cin_groups, groups) in (1usize..9, 1usize..9, 1usize..4, 0usize..4),
        (filters_per_group, kh, kw) in (0usize..4, 0usize..5, 1usize..5),
        (sh, sw, dh, dw, same) in (1usize..4, 0usize..3, 1usize..3, 1usize..3, any::<bool>()),
        bad_groups in any::<bool>(),
        batch in 1usize..3,
        seed in any::<u64>(),
    ) {
        let g = groups.max(1);
        let cin = cin_groups * g + usize::from(bad_groups && g > 1);
        let filters = filters_per_group * g;
        let mut c = Conv2D::new(filters, (kh, kw)).padding(padding(same));
        c.strides = (sh, sw);
        c.dilation_rate = (dh, dw);
        c.groups = groups;
        let keras_ok = filters > 0
            && groups > 0
            && cin.is_multiple_of(groups)
            && filters.is_multiple_of(groups)
            && !((sh > 1 || sw > 1) && (dh > 1 || dw > 1));
        let expected = match (keras_len(h, kh, sh, dh, same), keras_len(w, kw, sw, dw, same)) {
            (Some(oh), Some(ow)) if keras_ok => Some(vec![oh, ow, filters]),
            _ => None,
        };
        check(&mut c, &[vec![h, w, cin]], expected, batch, seed)?;
    }

    #[test]
    fn depthwise_conv2d_build_matches_forward(
        (h, w, c) in (1usize..9, 1usize..9, 1usize..4),
        (k, multiplier, s, d, same) in (0usize..5, 0usize..3, 1usize..3, 1usize..3, any::<bool>()),
        batch in 1usize..3,
        seed in any::<u64>(),
    ) {
        let mut l = DepthwiseConv2D::new((k, k)).depth_multiplier(multiplier);
        l.strides = (s, s);
        l.dilation_rate = (d, d);
        l.padding = padding(same);
        let keras_ok = multiplier > 0 && !(s > 1 && d > 1);
        let expected = match (keras_len(h, k, s, d, same), keras_len(w, k, s, d, same)) {
            (Some(oh), Some(ow)) if keras_ok => Some(vec![oh, ow, c * multiplier]),
            _ => None,
        };
        check(&mut l, &[vec![h, w, c]], expected, batch, seed)?;
    }

    #[test]
    fn pooling_build_matches_forward(
        (h, w, c) in (1usize..9, 1usize..9, 1usize..4),
        (ph, pw) in (0usize..4, 1usize..4),
        strides in proptest::option::of((0usize..3, 1usize..3)),
        (same, max) in (any::<bool>(), any::<bool>()),
        batch in 1usize..3,
        seed in any::<u64>(),
    ) {
        let (sh, sw) = strides.unwrap_or((ph, pw));
        let pad = if same { "same" } else { "valid" };
        let expected = match (keras_len(h, ph, sh, 1, same), keras_len(w, pw, sw, 1, same)) {
            (Some(oh), Some(ow)) => Some(vec![oh, ow, c]),
            _ => None,
        };
        let input = [vec![h, w, c]];
        if max {
            check(&mut MaxPooling2D::new((ph, pw), strides, pad), &input, expected, batch, seed)?;
        } else {
            check(&mut AveragePooling2D::new((ph, pw), strides, pad), &input, expected, batch, seed)?;
        }
    }

    #[test]
    fn dense_applies_to_the_last_axis_of_any_rank(
        shape in proptest::collection::vec(1usize..5, 0..4),
        units in 0usize..5,
        batch in 1usize..3,
        seed in any::<u64>(),
    ) {
        // rank 0 per sample (a bare batch axis) has no feature axis: refused
        let expected = (!shape.is_empty() && units > 0).then(|| {
            let mut s = shape.clone();
            *s.last_mut().expect("non-empty") = units;
            s
        });
        check(&mut Dense::new(units), &[shape], expected, batch, seed)?;
    }

    #[test]
    fn reshape_keeps_the_element_count(
        shape in proptest::collection::vec(1usize..5, 1..4),
        target in proptest::collection::vec(-2isize..7, 1..4),
        batch in 1usize..3,
        seed in any::<u64>(),
    ) {
        let n: usize = shape.iter().product();
        let unknown = target.iter().filter(|&&d| d == -1).count();
        let bad = target.iter().any(|&d| d == 0 || d < -1) || unknown > 1;
        let known: usize = target.iter().filter(|&&d| d > 0).map(|&d| d as usize).product();
        let expected = if bad {
            None
        } else if unknown == 1 {
            n.is_multiple_of(known).then(|| {
                target
                    .iter()
                    .map(|&d| if d == -1 { n / known } else { d as usize })
                    .collect()
            })
        } else {
            (known == n).then(|| target.iter().map(|&d| d as usize).collect())
        };
        check(&mut Reshape::new(&target), &[shape], expected, batch, seed)?;
    }

    #[test]
    fn concatenate_joins_on_a_feature_axis(
        shape in proptest::collection::vec(1usize..4, 1..4),
        extra in proptest::collection::vec(1usize..4, 1..3),
        axis in -5isize..5,
        mismatch in any::<bool>(),
        batch in 1usize..3,
        seed in any::<u64>(),
    ) {
        let rank = shape.len() as isize + 1; // with the batch axis
        let a = if axis < 0 { axis + rank } else { axis };
        let valid_axis = a >= 1 && a < rank;
        // inputs equal to `shape` except on the joined axis
        let ax = (a.clamp(1, rank - 1) - 1) as usize;
        let mut inputs = vec![shape.clone()];
        for &e in &extra {
            let mut s = shape.clone();
            s[ax] = e;
            inputs.push(s);
        }
        // a mismatch on another axis, where there is one
        let other = (0..shape.len()).find(|&i| i != ax);
        if mismatch {
            if let Some(i) = other {
                inputs[1][i] += 1;
            }
        }
        let fits = !(mismatch && other.is_some());
        let expected = (valid_axis && fits).then(|| {
            let mut s = shape.clone();
            s[ax] = inputs.iter().map(|s| s[ax]).sum();
            s
        });
        check(&mut Concatenate::new(axis), &inputs, expected, batch, seed)?;
    }

    #[test]
    fn add_broadcasts_like_numpy(
        full in proptest::collection::vec(1usize..4, 0..5),
        ones_a in proptest::collection::vec(any::<bool>(), 5),
        ones_b in proptest::collection::vec(any::<bool>(), 5),
        (drop_a, drop_b) in (0usize..5, 0usize..5),
    ) {
        // two shapes derived from `full`: leading axes dropped, some set to 1
        let derive = |ones: &[bool], drop: usize| -> Vec<usize> {
            let drop = drop.min(full.len());
            full[drop..]
                .iter()
                .zip(&ones[drop..])
                .map(|(&d, &one)| if one { 1 } else { d })
                .collect()
        };
        let (a, b) = (derive(&ones_a, drop_a), derive(&ones_b, drop_b));
        let expected = numpy_broadcast(&a, &b).expect("derived shapes broadcast");
        let ta = Tensor::full(&a, 1.5);
        let tb = Tensor::full(&b, 2.0);
        let y = catch_unwind(AssertUnwindSafe(|| ta.add(&tb)))
            .map_err(|_| TestCaseError::fail("add panicked"))?
            .map_err(|e| TestCaseError::fail(format!("{a:?} + {b:?}: {e}")))?;
        prop_assert_eq!(y.shape(), &expected[..]);
        prop_assert!(y.data().iter().all(|&v| v == 3.5));
    }

    #[test]
    fn add_refuses_shapes_that_do_not_broadcast(
        a in proptest::collection::vec(1usize..5, 1..4),
        b in proptest::collection::vec(1usize..5, 1..4),
    ) {
        let ta = Tensor::zeros(&a);
        let tb = Tensor::zeros(&b);
        let got = catch_unwind(AssertUnwindSafe(|| ta.add(&tb)))
            .map_err(|_| TestCaseError::fail("add panicked"))?;
        match numpy_broadcast(&a, &b) {
            Some(s) => {
                let y = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(y.shape(), &s[..]);
            }
            None => prop_assert!(got.is_err(), "{:?} + {:?} was accepted", a, b),
        }
    }
}

/// numpy's rule: align on the right; each pair equal, or one of them 1.
fn numpy_broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    pad(a)
        .into_iter()
        .zip(pad(b))
        .map(|(x, y)| match (x, y) {
            _ if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}
