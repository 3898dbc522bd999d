//! The convolution's tests: every algorithm against the reference loops
//! (`reference.rs`) on random and chosen configurations, the dispatch's
//! choices, the fused forms, errors and empty batches.

use super::dispatch::{self, Dw, Dx, Forward, Gemm, WeightUse};
use super::epilogue::EpilogueRef;
use super::geometry::tile_pixels;
use super::reference::conv_reference;
use super::*;
use crate::gradcheck::check_gradients;
use crate::rng::Rng;

fn rand_t(shape: &[usize], rng: &mut Rng) -> Tensor {
    Tensor::rand_normal(shape, 0.0, 1.0, rng)
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

/// `close` judged against the size of the whole result as well as of
/// each value: the error of a sum of many products (and Winograd
/// F(4x4, 3x3)'s, about 2e-5 of them) scales with the sum's terms, not
/// with its value, which may be near zero.
fn close_to_scale(a: &[f32], b: &[f32], tol: f32) -> bool {
    let rms = (b.iter().map(|&y| (y * y) as f64).sum::<f64>() / b.len().max(1) as f64).sqrt();
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs() + rms as f32))
}

#[test]
fn fast_conv_matches_reference_on_random_configs() {
    let mut rng = Rng::new(11);
    let mut pointwise_seen = 0;
    for case in 0..200 {
        let groups = [1, 1, 2, 3][rng.below(4)];
        let cin_g = 1 + rng.below(3);
        let cout_g = 1 + rng.below(3);
        let (kh, kw) = (1 + rng.below(4), 1 + rng.below(4));
        let strided = rng.below(2) == 0;
        let (s, d) = if strided {
            ((1 + rng.below(3), 1 + rng.below(3)), (1, 1))
        } else {
            ((1, 1), (1 + rng.below(3), 1 + rng.below(3)))
        };
        let padding = match rng.below(4) {
            0 => Padding::Valid,
            1 | 2 => Padding::Same,
            // up to more padding than the kernel is wide: windows wholly in it
            _ => Padding::Explicit {
                top: rng.below(6),
                bottom: rng.below(3),
                left: rng.below(6),
                right: rng.below(6),
            },
        };
        let (h, w) = (
            (kh - 1) * d.0 + 1 + rng.below(6),
            (kw - 1) * d.1 + 1 + rng.below(6),
        );
        let n = 1 + rng.below(3);
        let c = cin_g * groups;
        let cout = cout_g * groups;
        let x = rand_t(&[n, h, w, c], &mut rng);
        let k = rand_t(&[kh, kw, cin_g, cout], &mut rng);
        let b = rand_t(&[cout], &mut rng);
        let cfg = Conv2dConfig {
            strides: s,
            padding,
            dilation: d,
            groups,
            ..Default::default()
        };
        let p = plan(x.shape(), k.shape(), Some(b.shape()), &cfg).unwrap();
        pointwise_seen += p.pointwise as usize;
        let got = x.conv2d(&k, Some(&b), cfg).unwrap();
        let want = conv_reference(
            &x.data(),
            (n, h, w, c),
            &k.data(),
            (kh, kw, cin_g, cout),
            Some(&b.data()),
            &p.geo,
            groups,
        );
        assert_eq!(got.shape(), &[n, p.geo.out_h, p.geo.out_w, cout]);
        assert!(close(&got.data(), &want, 1e-4), "case {case}: {cfg:?}");
    }
    // the 1x1 fast path, with and without groups, explicitly
    for groups in [1, 2] {
        let x = rand_t(&[2, 3, 4, 2 * groups], &mut rng);
        let k = rand_t(&[1, 1, 2, 3 * groups], &mut rng);
        let cfg = Conv2dConfig::default().with_groups(groups);
        let p = plan(x.shape(), k.shape(), None, &cfg).unwrap();
        assert!(p.pointwise);
        pointwise_seen += 1;
        let want = conv_reference(
            &x.data(),
            (2, 3, 4, 2 * groups),
            &k.data(),
            (1, 1, 2, 3 * groups),
            None,
            &p.geo,
            groups,
        );
        assert!(close(&x.conv2d(&k, None, cfg).unwrap().data(), &want, 1e-4));
    }
    assert!(pointwise_seen >= 2);
}

/// Backward against the reference's gradients, computed as finite-free loops:
/// dX and dW of `sum(conv(x, w) * dy)` by differentiating the reference by hand.
#[test]
fn backward_matches_reference_loops_on_random_configs() {
    let mut rng = Rng::new(12);
    for case in 0..40 {
        let groups = [1, 2][rng.below(2)];
        let (cin_g, cout_g) = (1 + rng.below(3), 1 + rng.below(3));
        let (kh, kw) = (1 + rng.below(3), 1 + rng.below(3));
        let s = (1 + rng.below(2), 1 + rng.below(3));
        let explicit = Padding::Explicit {
            top: rng.below(3),
            bottom: rng.below(3),
            left: rng.below(3),
            right: rng.below(3),
        };
        let padding = [
            Padding::Same,
            Padding::Valid,
            Padding::symmetric(1),
            explicit,
        ][rng.below(4)];
        // the last cases are big enough for the tiled paths (forward, and dX of a
        // stride-1 convolution computed as a convolution of dY)
        let big = case >= 36;
        let (h, w) = (
            kh + rng.below(5) + 40 * big as usize,
            kw + rng.below(5) + 30 * big as usize,
        );
        let (n, c, cout) = (1 + rng.below(2), cin_g * groups, cout_g * groups);
        let x = rand_t(&[n, h, w, c], &mut rng).requires_grad_(true);
        let k = rand_t(&[kh, kw, cin_g, cout], &mut rng).requires_grad_(true);
        let cfg = Conv2dConfig::default()
            .with_strides(s.0, s.1)
            .with_padding(padding)
            .with_groups(groups);
        let y = x.conv2d(&k, None, cfg).unwrap();
        let dy = rand_t(y.shape(), &mut rng);
        y.mul(&dy).unwrap().sum_all().backward().unwrap();
        let g = plan(x.shape(), k.shape(), None, &cfg).unwrap().geo;
        let (xd, kd, dyd) = (x.to_vec(), k.to_vec(), dy.to_vec());
        let mut dx = vec![0.0f64; xd.len()];
        let mut dk = vec![0.0f64; kd.len()];
        for b in 0..n {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    for o in 0..cout {
                        let gy = dyd[((b * g.out_h + oh) * g.out_w + ow) * cout + o] as f64;
                        let gr = o / cout_g;
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let (Some(ih), Some(iw)) = (g.in_row(oh, ki), g.in_col(ow, kj))
                                else {
                                    continue;
                                };
                                for ci in 0..cin_g {
                                    let xi = ((b * h + ih) * w + iw) * c + gr * cin_g + ci;
                                    let wi = ((ki * kw + kj) * cin_g + ci) * cout + o;
                                    dx[xi] += gy * kd[wi] as f64;
                                    dk[wi] += gy * xd[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        let f = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect::<Vec<_>>();
        assert!(
            close(&x.grad().unwrap().to_vec(), &f(dx), 1e-4),
            "dx case {case}"
        );
        assert!(
            close(&k.grad().unwrap().to_vec(), &f(dk), 1e-4),
            "dk case {case}"
        );
    }
}

fn gradcheck_conv(xs: &[usize], ks: &[usize], cfg: Conv2dConfig, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = rand_t(xs, &mut rng);
    let k = rand_t(ks, &mut rng);
    let b = rand_t(&[ks[3]], &mut rng);
    check_gradients(&[x, k, b], |t| t[0].conv2d(&t[1], Some(&t[2]), cfg));
}

#[test]
fn gradients_valid_same_stride_even_kernel() {
    let d = Conv2dConfig::default();
    gradcheck_conv(&[2, 5, 4, 2], &[3, 3, 2, 3], d, 1);
    gradcheck_conv(
        &[1, 5, 6, 2],
        &[3, 3, 2, 2],
        d.with_padding(Padding::Same),
        2,
    );
    let s2 = d.with_strides(2, 2).with_padding(Padding::Same);
    gradcheck_conv(&[1, 6, 5, 2], &[3, 3, 2, 2], s2, 3);
    gradcheck_conv(&[1, 7, 5, 1], &[3, 2, 1, 2], d.with_strides(2, 1), 4);
    gradcheck_conv(
        &[1, 5, 5, 2],
        &[4, 4, 2, 2],
        d.with_padding(Padding::Same),
        5,
    );
    gradcheck_conv(
        &[1, 5, 4, 2],
        &[3, 3, 2, 2],
        d.with_padding(Padding::symmetric(1)),
        6,
    );
}

#[test]
fn gradients_dilation_groups_pointwise() {
    let d = Conv2dConfig::default();
    gradcheck_conv(&[1, 6, 6, 2], &[3, 2, 2, 2], d.with_dilation(2, 2), 7);
    let ds = d.with_dilation(2, 1).with_padding(Padding::Same);
    gradcheck_conv(&[1, 5, 5, 1], &[3, 3, 1, 2], ds, 8);
    gradcheck_conv(&[1, 4, 5, 4], &[2, 2, 2, 4], d.with_groups(2), 9);
    gradcheck_conv(&[2, 3, 3, 3], &[1, 1, 3, 2], d, 10);
    gradcheck_conv(&[1, 3, 3, 4], &[1, 1, 2, 4], d.with_groups(2), 11);
}

#[test]
fn chunked_batches_match_one_pass_and_are_deterministic() {
    let mut rng = Rng::new(21);
    let x = rand_t(&[5, 9, 8, 6], &mut rng);
    let k = rand_t(&[3, 3, 3, 4], &mut rng);
    let cfg = Conv2dConfig::default()
        .with_padding(Padding::Same)
        .with_strides(2, 1)
        .with_groups(2);
    let mut p = plan(x.shape(), k.shape(), None, &cfg).unwrap();
    assert_eq!(p.chunk, 5);
    let one = forward(&x.data(), &k.data(), None, &p);
    let dy: Vec<f32> = (0..one.len()).map(|_| rng.normal()).collect();
    let (dx1, dw1) = backward(&x.data(), &k.data(), &dy, &p, (true, true), &mut None);
    for chunk in [1, 2, 3] {
        p.chunk = chunk;
        let o = forward(&x.data(), &k.data(), None, &p);
        assert!(close(&o, &one, 1e-5), "forward, chunk {chunk}");
        let (dx, dw) = backward(&x.data(), &k.data(), &dy, &p, (true, true), &mut None);
        assert!(
            close(&dx.unwrap(), dx1.as_ref().unwrap(), 1e-5),
            "dx, chunk {chunk}"
        );
        assert!(
            close(&dw.unwrap(), dw1.as_ref().unwrap(), 1e-5),
            "dw, chunk {chunk}"
        );
    }
    // a large batch is split by the budget
    let big = plan(&[64, 28, 28, 64], &[3, 3, 32, 64], None, &cfg).unwrap();
    assert!(big.chunk > 1 && big.chunk < 64, "{}", big.chunk);
    assert!(big.chunk * 14 * 28 * 576 * 4 <= COLS_BUDGET_BYTES);
    let huge = plan(&[2, 224, 224, 64], &[3, 3, 32, 64], None, &cfg).unwrap();
    assert_eq!(huge.chunk, 1);
    // repeated runs are bitwise identical
    p.chunk = 5;
    assert_eq!(x.conv2d(&k, None, cfg).unwrap().to_vec(), one);
    let (dx2, dw2) = backward(&x.data(), &k.data(), &dy, &p, (true, true), &mut None);
    assert_eq!(dx2, dx1);
    assert_eq!(dw2, dw1);
}

#[test]
fn errors_name_op_and_shapes() {
    let x = Tensor::zeros(&[1, 5, 5, 4]);
    let e = |r: Result<Tensor>| r.unwrap_err().to_string();
    let m = e(x.conv2d(&Tensor::zeros(&[3, 3, 3, 2]), None, Conv2dConfig::default()));
    assert!(
        m.contains("conv2d") && m.contains("(3, 3, 3, 2)") && m.contains("(1, 5, 5, 4)"),
        "{m}"
    );
    let m = e(x.conv2d(
        &Tensor::zeros(&[3, 3, 2, 3]),
        None,
        Conv2dConfig::default().with_groups(2),
    ));
    assert!(m.contains("divisible by groups 2"), "{m}");
    let m = e(x.conv2d(
        &Tensor::zeros(&[3, 3, 4, 2]),
        Some(&Tensor::zeros(&[3])),
        Conv2dConfig::default(),
    ));
    assert!(m.contains("bias (2,)") && m.contains("(3,)"), "{m}");
    let m = e(x.conv2d(
        &Tensor::zeros(&[3, 3, 4, 2]),
        None,
        Conv2dConfig::default()
            .with_strides(2, 2)
            .with_dilation(2, 2),
    ));
    assert!(m.contains("dilation"), "{m}");
    let m = e(x.conv2d(&Tensor::zeros(&[7, 3, 4, 2]), None, Conv2dConfig::default()));
    assert!(m.contains("conv2d") && m.contains("(5, 5)"), "{m}");
    assert!(Tensor::zeros(&[5, 5, 4])
        .conv2d(&Tensor::zeros(&[3, 3, 4, 2]), None, Conv2dConfig::default())
        .is_err());
    assert!(x
        .conv2d(&Tensor::zeros(&[3, 3, 4]), None, Conv2dConfig::default())
        .is_err());
    assert!(x
        .conv2d(
            &Tensor::zeros(&[3, 3, 4, 2]),
            None,
            Conv2dConfig::default().with_groups(0)
        )
        .is_err());
    assert!(x
        .conv2d(
            &Tensor::zeros(&[3, 3, 4, 2]),
            None,
            Conv2dConfig::default().with_strides(0, 1)
        )
        .is_err());
}

#[test]
fn empty_batches_give_empty_outputs_and_zero_gradients() {
    for (xs, ks) in [([0, 4, 4, 4], [3, 3, 2, 4]), ([2, 0, 3, 4], [1, 1, 2, 2])] {
        let x = Tensor::zeros(&xs).requires_grad_(true);
        let k = Tensor::ones(&ks).requires_grad_(true);
        let b = Tensor::ones(&[ks[3]]);
        let cfg = Conv2dConfig::default()
            .with_groups(2)
            .with_padding(Padding::Same);
        let y = x.conv2d(&k, Some(&b), cfg).unwrap();
        assert_eq!(y.numel(), 0);
        y.sum_all().backward().unwrap();
        assert!(k.grad().unwrap().to_vec().iter().all(|&v| v == 0.0));
    }
}

/// Rough timing of ResNet stage-2 convolutions, forward and each part of the
/// backward; run with `--ignored --nocapture`.
/// conv2d -> batch_norm_infer -> add(residual) -> relu, op by op.
fn unfused(
    x: &Tensor,
    k: &Tensor,
    cfg: Conv2dConfig,
    stats: (&[f32], &[f32], &Tensor, &Tensor),
    residual: Option<&Tensor>,
) -> Tensor {
    let (mm, mv, g, b) = stats;
    let y = x.conv2d(k, None, cfg).unwrap();
    let mut y = y.batch_norm_infer(mm, mv, Some(g), Some(b), 1e-5).unwrap();
    if let Some(r) = residual {
        y = y.add(r).unwrap();
    }
    y.relu()
}

#[test]
fn fused_epilogue_is_bitwise_the_separate_ops() {
    let mut rng = Rng::new(77);
    // 1x1 (one GEMM, no im2col), 3x3 same, and a 3x3 whose im2col goes in
    // several chunks of images (the epilogue then runs per chunk, at an
    // offset); then tiles, each with its own epilogue at its offset: a
    // 1x1 to 70 channels, a 3x3/2 through im2col tiles
    let cases = [
        (vec![2, 9, 9, 8], [1, 1, 8, 12], Padding::Valid, (1, 1)),
        (vec![2, 9, 9, 8], [3, 3, 8, 12], Padding::Same, (2, 2)),
        (vec![3, 64, 64, 32], [3, 3, 32, 16], Padding::Same, (1, 1)),
        (
            vec![8, 32, 32, 256],
            [1, 1, 256, 70],
            Padding::Valid,
            (1, 1),
        ),
        (vec![16, 40, 40, 8], [3, 3, 8, 64], Padding::Same, (2, 2)),
    ];
    for (xs, ks, pad, st) in cases {
        let cfg = Conv2dConfig::default()
            .with_padding(pad)
            .with_strides(st.0, st.1);
        let x = Tensor::rand_normal(&xs, 0.0, 1.0, &mut rng);
        let k = Tensor::rand_normal(&ks, 0.0, 0.2, &mut rng);
        let c = ks[3];
        let mm: Vec<f32> = (0..c).map(|i| 0.05 * i as f32 - 0.2).collect();
        let mv: Vec<f32> = (0..c).map(|i| 0.5 + 0.1 * i as f32).collect();
        let g = Tensor::rand_normal(&[c], 1.0, 0.2, &mut rng);
        let b = Tensor::rand_normal(&[c], 0.0, 0.2, &mut rng);
        let (gv, bv) = (g.to_vec(), b.to_vec());
        let (a, sh) = crate::ops::batch_norm::affine_of(&mm, &mv, Some(&gv), Some(&bv), 1e-5);
        let out = x.conv2d(&k, None, cfg).unwrap().shape().to_vec();
        let r = Tensor::rand_normal(&out, 0.0, 1.0, &mut rng);
        for residual in [None, Some(&r)] {
            let ep = Epilogue {
                scale: Some(&a),
                shift: Some(&sh),
                residual,
                relu: true,
            };
            let fused = x.conv2d_fused(&k, None, cfg, &ep).unwrap();
            let want = unfused(&x, &k, cfg, (&mm, &mv, &g, &b), residual);
            assert_eq!(fused.shape(), want.shape());
            assert_eq!(fused.to_vec(), want.to_vec(), "{xs:?} {ks:?}");
        }
        // no epilogue at all is the plain convolution
        let plain = x.conv2d_fused(&k, None, cfg, &Epilogue::default()).unwrap();
        assert_eq!(plain.to_vec(), x.conv2d(&k, None, cfg).unwrap().to_vec());
        // a bias is the epilogue's first step: the convolution, then `+ bias`
        let biased = x.conv2d(&k, Some(&b), cfg).unwrap();
        assert_eq!(biased.to_vec(), plain.add(&b).unwrap().to_vec());
    }
}

#[test]
fn fused_refuses_what_it_cannot_do() {
    let x = Tensor::zeros(&[1, 4, 4, 2]);
    let k = Tensor::zeros(&[1, 1, 2, 3]);
    let cfg = Conv2dConfig::default();
    let bad_scale = Epilogue {
        scale: Some(&[1.0, 1.0]),
        ..Epilogue::default()
    };
    let e = x
        .conv2d_fused(&k, None, cfg, &bad_scale)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv2d_fused") && e.contains("scale (3,)"),
        "{e}"
    );
    let r = Tensor::zeros(&[1, 4, 4, 2]);
    let bad_res = Epilogue {
        residual: Some(&r),
        ..Epilogue::default()
    };
    let e = x
        .conv2d_fused(&k, None, cfg, &bad_res)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("residual (1, 4, 4, 3)") && e.contains("(1, 4, 4, 2)"),
        "{e}"
    );
    let kg = Tensor::zeros(&[1, 1, 2, 3]).requires_grad_(true);
    let e = x
        .conv2d_fused(&kg, None, cfg, &Epilogue::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("requires grad"), "{e}");
    // under no_grad the same call is fine
    let y = crate::no_grad(|| x.conv2d_fused(&kg, None, cfg, &Epilogue::default()));
    assert_eq!(y.unwrap().shape(), &[1, 4, 4, 3]);
}

/// The backward by the reference paths: col2im dX and chunked im2col dW
/// (or a pointwise convolution's plain GEMMs), on the `gemm` crate.
fn reference_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    p: &ConvPlan,
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (dx, dw) = match p.pointwise {
        true => (Dx::Pointwise, Dw::Pointwise),
        false => (Dx::Col2im, Dw::Chunked),
    };
    let (dx, dw) = (want_dx.then_some(dx), want_dw.then_some(dw));
    run::backward_with(dx, dw, Gemm::Crate, x, w, dy, p, &mut None)
}

/// The backward by the algorithms dispatch picks.
fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    p: &ConvPlan,
    want: (bool, bool),
    so_far: &mut Option<Vec<f32>>,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    run::backward(
        x,
        w,
        dy,
        p,
        want,
        so_far,
        crate::precision::Precision::Float32,
    )
}

/// The forward by the algorithm dispatch picks for weights used once.
fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, p: &ConvPlan) -> Vec<f32> {
    let gemm = Gemm::of_cpu();
    let alg = dispatch::forward(p, gemm, WeightUse::Once);
    run::forward(alg, gemm, x, w, None, bias, p, &EpilogueRef::NONE)
}

/// An input that also feeds another op (a residual block's input, whose
/// shortcut's gradient arrives first) gets the sum of both gradients,
/// whether the convolution's dX is added into the other in its GEMM (a
/// 1x1 stride-1 one, grouped or not) or by the engine (3x3, strided, or
/// a gradient so far that another input still shares).
#[test]
fn dx_added_into_the_gradient_so_far_is_the_sum() {
    let mut rng = Rng::new(43);
    for (kh, stride, groups, cin, cout) in [
        (1, 1, 1, 64, 96),
        (1, 1, 2, 32, 64),
        (1, 2, 1, 16, 24),
        (3, 1, 1, 8, 16),
    ] {
        for (shared, other_first) in [(false, true), (false, false), (true, true)] {
            let cfg = Conv2dConfig::default()
                .with_strides(stride, stride)
                .with_groups(groups)
                .with_padding(Padding::Same);
            let x = rand_t(&[2, 6, 5, cin], &mut rng).requires_grad_(true);
            let k = rand_t(&[kh, kh, cin / groups, cout], &mut rng).requires_grad_(true);
            let d1 = rand_t(
                &[2, 6usize.div_ceil(stride), 5usize.div_ceil(stride), cout],
                &mut rng,
            );
            let d2 = rand_t(&[2, 6, 5, cin], &mut rng);
            let other = rand_t(&[2, 6, 5, cin], &mut rng).requires_grad_(true);
            // x's other consumer: x * d2, or (x + other) * d2, whose Add
            // shares its gradient between x and `other`
            let second = match shared {
                false => x.mul(&d2).unwrap(),
                true => x.add(&other).unwrap().mul(&d2).unwrap(),
            };
            let y = x.conv2d(&k, None, cfg).unwrap();
            // the other gradient reaches x before the convolution's
            // backward runs, or after it
            let (first, second) = (y.mul(&d1).unwrap().sum_all(), second.sum_all());
            let loss = match other_first {
                true => second.add(&first).unwrap(),
                false => first.add(&second).unwrap(),
            };
            loss.backward().unwrap();
            // a pointwise dX is added into the gradient so far by its GEMM
            let pointwise = kh == 1 && stride == 1;
            let p = plan(x.shape(), k.shape(), None, &cfg).unwrap();
            assert_eq!(
                dispatch::dx(&p, Gemm::of_cpu()).adds_into_gradient_so_far(),
                pointwise,
                "k{kh} s{stride} g{groups}"
            );
            let (dx, _) = reference_backward(&x.data(), &k.data(), &d1.data(), &p, true, false);
            let want: Vec<f32> = dx
                .unwrap()
                .iter()
                .zip(d2.to_vec())
                .map(|(a, b)| a + b)
                .collect();
            let got = x.grad().unwrap().to_vec();
            assert!(
                close(&got, &want, 1e-4),
                "k{kh} s{stride} g{groups} {shared} {other_first}"
            );
            if shared {
                assert_eq!(other.grad().unwrap().to_vec(), d2.to_vec());
            }
        }
    }
}

/// Convolutions that read their input in place (one group, undilated, a
/// kernel row of at least 64 values): every stride and padding, windows
/// wholly in the padding, tiled and untiled, against the reference loops;
/// and a stride-1 backward, whose dX is such a convolution, against the
/// reference paths.
#[test]
#[cfg_attr(
    not(host_packed_gemm),
    ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
)]
fn implicit_gemm_matches_reference() {
    let mut rng = Rng::new(41);
    let cases = [
        // (n, h, w, c, kh, kw, cout, stride, padding)
        (2, 9, 11, 24, 3, 3, 7, 1, Padding::Same),
        (1, 10, 9, 22, 3, 3, 5, 2, Padding::Same),
        (2, 8, 8, 30, 3, 3, 9, 3, Padding::Valid),
        (
            1,
            6,
            7,
            32,
            2,
            2,
            4,
            1,
            Padding::Explicit {
                top: 4,
                bottom: 1,
                left: 3,
                right: 5,
            },
        ),
        (2, 7, 7, 64, 1, 1, 6, 2, Padding::Valid),
        (1, 12, 12, 96, 1, 1, 8, 2, Padding::Same),
        (2, 32, 32, 24, 3, 3, 70, 1, Padding::Same), // tiled
    ];
    for (case, &(n, h, w, c, kh, kw, cout, s, padding)) in cases.iter().enumerate() {
        let x = rand_t(&[n, h, w, c], &mut rng);
        let k = rand_t(&[kh, kw, c, cout], &mut rng);
        let b = rand_t(&[cout], &mut rng);
        let cfg = Conv2dConfig::default()
            .with_strides(s, s)
            .with_padding(padding);
        let p = plan(x.shape(), k.shape(), Some(b.shape()), &cfg).unwrap();
        assert!(
            dispatch::forward(&p, Gemm::Packed, WeightUse::Kept) == Forward::Implicit,
            "case {case}"
        );
        let want = conv_reference(
            &x.data(),
            (n, h, w, c),
            &k.data(),
            (kh, kw, c, cout),
            Some(&b.data()),
            &p.geo,
            1,
        );
        let got = x.conv2d(&k, Some(&b), cfg).unwrap().to_vec();
        assert!(close(&got, &want, 1e-4), "case {case}");
        if s == 1 {
            assert_dx_matches_reference(&x, &k, &p, case, &mut rng);
        }
    }
}

/// dX of a random dY through the fast paths against the reference paths.
fn assert_dx_matches_reference(x: &Tensor, k: &Tensor, p: &ConvPlan, case: usize, rng: &mut Rng) {
    let dy = rand_t(&[p.n, p.geo.out_h, p.geo.out_w, p.cout], rng);
    let (xd, kd, dyd) = (x.data(), k.data(), dy.data());
    let (dx, _) = backward(&xd, &kd, &dyd, p, (true, false), &mut None);
    let (dx_ref, _) = reference_backward(&xd, &kd, &dyd, p, true, false);
    assert!(
        close_to_scale(&dx.unwrap(), &dx_ref.unwrap(), 1e-4),
        "case {case} dX"
    );
}

/// Stride-1 3x3 convolutions that run as Winograd F(4x4, 3x3) or
/// F(2x2, 3x3): paddings, output sides off the 4x4 tiles,
/// channel counts off the 16-lane and 64-column blocks, one and several
/// blocks of tiles, against the reference loops; the inference path with
/// cached transformed weights gives the same; a backward whose dX runs
/// as Winograd, and its dW by Winograd's transforms (one and several
/// blocks of tiles per thread), against the reference paths.
#[test]
#[cfg_attr(
    not(host_packed_gemm),
    ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
)]
fn winograd_matches_reference() {
    let mut rng = Rng::new(43);
    let cases = [
        // (n, h, w, c, cout, padding)
        (2, 8, 10, 64, 72, Padding::Same),
        (1, 10, 8, 80, 64, Padding::Valid),
        (
            1,
            6,
            6,
            65,
            70,
            Padding::Explicit {
                top: 2,
                bottom: 0,
                left: 1,
                right: 1,
            },
        ),
        // 112 bands of tiles: several blocks per thread for dW up to 5 threads
        (8, 28, 28, 64, 64, Padding::Same),
        // too many channels for F(4x4, 3x3): F(2x2, 3x3)
        (2, 6, 10, 192, 96, Padding::Same),
    ];
    for (case, &shape) in cases.iter().enumerate() {
        let p = assert_3x3_matches_reference(shape, case, &mut rng);
        assert!(
            matches!(
                dispatch::dw(&p, Gemm::Packed, None),
                Dw::Winograd2 | Dw::Winograd4
            ),
            "case {case}"
        );
        // F(4x4, 3x3), with tiles past the output's edge in cases 0-2
        assert_eq!(
            (dispatch::forward(&p, Gemm::Packed, WeightUse::Kept) == Forward::Winograd4Blocked),
            case < 4,
            "case {case}"
        );
        assert_eq!(
            matches!(
                dispatch::forward(&p, Gemm::Packed, WeightUse::Kept),
                Forward::Winograd4Blocked | Forward::Winograd4Whole
            ),
            case < 4,
            "case {case}"
        );
    }
}

/// A stride-1 3x3 convolution of shape `(n, h, w, c, cout, padding)`
/// through the fast paths against the reference loops: the forward
/// (packed, then twice under no_grad: cached, the same values), dX, and
/// dW (the same bits twice). Returns its plan, for the caller to check
/// which path ran.
fn assert_3x3_matches_reference(
    (n, h, w, c, cout, padding): (usize, usize, usize, usize, usize, Padding),
    case: usize,
    rng: &mut Rng,
) -> ConvPlan {
    let x = rand_t(&[n, h, w, c], rng);
    let k = rand_t(&[3, 3, c, cout], rng);
    let b = rand_t(&[cout], rng);
    let cfg = Conv2dConfig::default().with_padding(padding);
    let p = plan(x.shape(), k.shape(), Some(b.shape()), &cfg).unwrap();
    let want = conv_reference(
        &x.data(),
        (n, h, w, c),
        &k.data(),
        (3, 3, c, cout),
        Some(&b.data()),
        &p.geo,
        1,
    );
    let got = x.conv2d(&k, Some(&b), cfg).unwrap().to_vec();
    assert!(close_to_scale(&got, &want, 1e-4), "case {case}");
    for _ in 0..2 {
        let again = crate::autograd::no_grad(|| x.conv2d(&k, Some(&b), cfg));
        assert_eq!(again.unwrap().to_vec(), got, "case {case}");
    }
    assert_dx_matches_reference(&x, &k, &p, case, rng);
    let dy = rand_t(&[n, p.geo.out_h, p.geo.out_w, cout], rng);
    let (xd, kd, dyd) = (x.data(), k.data(), dy.data());
    let (_, dw) = backward(&xd, &kd, &dyd, &p, (false, true), &mut None);
    let (_, dw_ref) = reference_backward(&xd, &kd, &dyd, &p, false, true);
    let dw = dw.unwrap();
    // sums of thousands of products in another order: f32 rounding
    // only, at most 3.4e-5 of the gradient's root mean square with
    // F(4x4, 3x3) (2.6e-3 off in a gradient of rms 77), 1.9e-6 with F(2x2)
    assert!(
        close_to_scale(&dw, &dw_ref.unwrap(), 1e-4),
        "case {case} dW"
    );
    let (_, again) = backward(&xd, &kd, &dyd, &p, (false, true), &mut None);
    assert_eq!(again.unwrap(), dw, "case {case} dW again");
    p
}

/// Wider stride-1 3x3 convolutions that run as Winograd F(4x4, 3x3) over
/// the whole batch: odd and even output sides, paddings, against the
/// reference loops, forward (packed, then cached), dX and dW (by F(4x4)'s
/// positions where a side is odd).
#[test]
#[cfg_attr(
    not(host_packed_gemm),
    ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
)]
fn winograd_f4_over_the_whole_batch_matches_reference() {
    let mut rng = Rng::new(44);
    let cases = [
        // (n, h, w, c, cout, padding): 32, 32 and 48 tiles
        (8, 7, 7, 160, 144, Padding::Same),
        (8, 10, 9, 144, 160, Padding::Valid),
        (4, 12, 16, 160, 144, Padding::Same),
    ];
    for (case, &shape) in cases.iter().enumerate() {
        let p = assert_3x3_matches_reference(shape, case, &mut rng);
        assert!(
            matches!(
                dispatch::forward(&p, Gemm::Packed, WeightUse::Kept),
                Forward::Winograd4Blocked | Forward::Winograd4Whole
            ),
            "case {case}"
        );
        assert!(
            !(dispatch::forward(&p, Gemm::Packed, WeightUse::Kept) == Forward::Winograd4Blocked),
            "case {case}"
        );
        // dW by F(4x4)'s positions where a side is odd, else by F(2x2)
        let odd = p.geo.out_h % 2 == 1 || p.geo.out_w % 2 == 1;
        assert_eq!(
            (dispatch::dw(&p, Gemm::Packed, None) == Dw::Winograd4ByPositions),
            odd,
            "case {case}"
        );
    }
}

/// Convolutions with too few output pixels for [`dw_tiled`]'s tiles: dW by
/// blocks of kernel rows against the reference loops (dY read in place,
/// or packed where its width is not whole panels), the same bits twice.
#[test]
#[cfg_attr(
    not(host_packed_gemm),
    ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
)]
fn dw_by_kernel_rows_matches_reference() {
    let mut rng = Rng::new(45);
    let cases = [
        // (n, h, w, c, cout, stride, padding)
        (2, 14, 14, 64, 64, 2, Padding::symmetric(1)),
        (1, 9, 7, 96, 70, 2, Padding::Same),
        (3, 6, 5, 80, 128, 1, Padding::Valid),
        (2, 8, 8, 512, 128, 2, Padding::symmetric(1)),
    ];
    for (case, &(n, h, w, c, cout, st, padding)) in cases.iter().enumerate() {
        let x = rand_t(&[n, h, w, c], &mut rng);
        let k = rand_t(&[3, 3, c, cout], &mut rng);
        let cfg = Conv2dConfig::default()
            .with_padding(padding)
            .with_strides(st, st);
        let p = plan(x.shape(), k.shape(), None, &cfg).unwrap();
        assert!(
            (dispatch::dw(&p, Gemm::Packed, None) == Dw::ByKernelRows),
            "case {case}"
        );
        let dy = rand_t(&[n, p.geo.out_h, p.geo.out_w, cout], &mut rng);
        let (xd, kd, dyd) = (x.data(), k.data(), dy.data());
        let (_, dw) = backward(&xd, &kd, &dyd, &p, (false, true), &mut None);
        let (_, want) = reference_backward(&xd, &kd, &dyd, &p, false, true);
        let dw = dw.unwrap();
        assert!(close_to_scale(&dw, &want.unwrap(), 1e-5), "case {case}");
        let (_, again) = backward(&xd, &kd, &dyd, &p, (false, true), &mut None);
        assert_eq!(again.unwrap(), dw, "case {case}");
    }
}

/// 1x1 convolutions with strides above 1: dX written tile by tile among
/// zeros against col2im, with windows past the last row and column, rows
/// of the input no window reads, and windows wholly in the padding.
#[test]
#[cfg_attr(
    not(host_packed_gemm),
    ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
)]
fn strided_pointwise_dx_matches_col2im() {
    let mut rng = Rng::new(44);
    let pad = |bottom, right| Padding::Explicit {
        top: 0,
        bottom,
        left: 0,
        right,
    };
    let cases = [
        // (n, h, w, c, cout, strides, padding)
        (2, 8, 8, 16, 24, (2, 2), Padding::Valid),
        (1, 7, 9, 20, 70, (2, 3), Padding::Valid),
        (3, 5, 5, 8, 8, (3, 3), Padding::Same),
        (1, 6, 6, 64, 130, (2, 2), pad(3, 2)),
        (2, 28, 28, 32, 64, (2, 2), Padding::Valid),
    ];
    for (case, &(n, h, w, c, cout, (sh, sw), padding)) in cases.iter().enumerate() {
        let x = rand_t(&[n, h, w, c], &mut rng);
        let k = rand_t(&[1, 1, c, cout], &mut rng);
        let cfg = Conv2dConfig::default()
            .with_strides(sh, sw)
            .with_padding(padding);
        let p = plan(x.shape(), k.shape(), None, &cfg).unwrap();
        assert!(
            matches!(dispatch::dx(&p, Gemm::Packed), Dx::StridedPointwise),
            "case {case}"
        );
        assert_dx_matches_reference(&x, &k, &p, case, &mut rng);
    }
}

#[test]
fn tiled_dw_matches_one_matrix_and_is_deterministic() {
    let mut rng = Rng::new(37);
    let cases = [
        ([6, 64, 64, 5], [3, 3, 5, 7], Conv2dConfig::default()),
        (
            [6, 90, 80, 4],
            [5, 3, 2, 6],
            Conv2dConfig::default()
                .with_padding(Padding::Same)
                .with_strides(2, 1)
                .with_groups(2),
        ),
        (
            [4, 100, 100, 3],
            [3, 3, 3, 4],
            Conv2dConfig::default().with_dilation(2, 2),
        ),
        // a dW of 72 x 70 (on the packed kernel where the CPU has it),
        // with column tails in both panels and a partial row block
        (
            [8, 48, 48, 8],
            [3, 3, 8, 70],
            Conv2dConfig::default().with_padding(Padding::Same),
        ),
        // image rows of 14 pixels: colsᵀ turned in partial blocks
        (
            [40, 14, 14, 16],
            [3, 3, 16, 64],
            Conv2dConfig::default().with_padding(Padding::Same),
        ),
        // stride 2 on the packed kernel: input runs 2 * C apart, padding
        // on one side only
        (
            [24, 29, 29, 16],
            [3, 3, 16, 64],
            Conv2dConfig::default()
                .with_padding(Padding::Same)
                .with_strides(2, 2),
        ),
    ];
    for (i, (xs, ks, cfg)) in cases.into_iter().enumerate() {
        let p = plan(&xs, &ks, None, &cfg).unwrap();
        assert!(
            tile_pixels(&p).is_some(),
            "case {i} must take the tiled path"
        );
        let x = rand_t(&xs, &mut rng).to_vec();
        let w = rand_t(&ks, &mut rng).to_vec();
        let dy = rand_t(&[xs[0], p.geo.out_h, p.geo.out_w, ks[3]], &mut rng).to_vec();
        let tiled = backward(&x, &w, &dy, &p, (false, true), &mut None)
            .1
            .unwrap();
        assert_eq!(
            backward(&x, &w, &dy, &p, (false, true), &mut None)
                .1
                .unwrap(),
            tiled
        );
        let whole = reference_backward(&x, &w, &dy, &p, false, true).1.unwrap();
        // sums of thousands of products in another order: f32 rounding only
        assert!(close(&tiled, &whole, 1e-3), "case {i}");
    }
}

/// A 1x1 convolution big enough for [`pointwise_dw`], with more output
/// channels than input ones and fewer (dWᵀ, transposed at the end): the
/// backward's dW equals the crate path's, and repeats bitwise.
#[test]
fn pointwise_dw_matches_the_crate_path() {
    let mut rng = Rng::new(41);
    for (cin, cout) in [(64, 256), (300, 70)] {
        let xs = [2, 33, 32, cin];
        let ks = [1, 1, cin, cout];
        let p = plan(&xs, &ks, None, &Conv2dConfig::default()).unwrap();
        assert_eq!(
            (dispatch::dw(&p, Gemm::of_cpu(), None) == Dw::PointwiseTransposed),
            crate::kernels::packed_gemm::available()
        );
        let x = rand_t(&xs, &mut rng).to_vec();
        let w = rand_t(&ks, &mut rng).to_vec();
        let dy = rand_t(&[2, 33, 32, cout], &mut rng).to_vec();
        let got = backward(&x, &w, &dy, &p, (false, true), &mut None)
            .1
            .unwrap();
        assert_eq!(
            backward(&x, &w, &dy, &p, (false, true), &mut None)
                .1
                .unwrap(),
            got
        );
        let want = reference_backward(&x, &w, &dy, &p, false, true).1.unwrap();
        assert!(close(&got, &want, 1e-3), "{cin} -> {cout}");
    }
}

#[test]
fn direct_dx_matches_col2im() {
    let mut rng = Rng::new(31);
    let pads = [
        Padding::Same,
        Padding::Valid,
        Padding::Explicit {
            top: 2,
            bottom: 0,
            left: 1,
            right: 2,
        },
    ];
    let small = Padding::Explicit {
        top: 1,
        bottom: 0,
        left: 0,
        right: 1,
    };
    let cases = [
        (3, pads[0]),
        (4, pads[0]),
        (3, pads[1]),
        (5, pads[2]),
        (2, small),
    ];
    for (i, (k, pad)) in cases.into_iter().enumerate() {
        let (xs, ks) = ([2, 37, 29, 6], [k, k, 6, 11]);
        let cfg = Conv2dConfig::default().with_padding(pad);
        let p = plan(&xs, &ks, None, &cfg).unwrap();
        assert!(dispatch::transposed_plan(&p).is_some(), "case {i}");
        let x = rand_t(&xs, &mut rng).to_vec();
        let w = rand_t(&ks, &mut rng).to_vec();
        let dy = rand_t(&[2, p.geo.out_h, p.geo.out_w, 11], &mut rng).to_vec();
        let direct = backward(&x, &w, &dy, &p, (true, false), &mut None)
            .0
            .unwrap();
        let col2im = reference_backward(&x, &w, &dy, &p, true, false).0.unwrap();
        // sums of up to 5*5*11 products in another order: f32 rounding only
        assert!(close(&direct, &col2im, 1e-4), "case {i}");
    }
}

#[test]
fn conv2d_relu_is_bitwise_conv2d_then_relu() {
    let mut rng = Rng::new(41);
    let cases = [
        ([2, 9, 9, 3], [3, 3, 3, 5], Padding::Valid),
        ([2, 40, 36, 4], [3, 3, 4, 8], Padding::Same),
        ([1, 7, 7, 6], [1, 1, 6, 4], Padding::Valid),
    ];
    for (xs, ks, pad) in cases {
        let cfg = Conv2dConfig::default().with_padding(pad);
        let x = rand_t(&xs, &mut rng).requires_grad_(true);
        let k = rand_t(&ks, &mut rng).requires_grad_(true);
        let b = rand_t(&[ks[3]], &mut rng).requires_grad_(true);
        let run = |fused: bool| {
            [&x, &k, &b].iter().for_each(|t| t.zero_grad());
            let y = if fused {
                x.conv2d_relu(&k, Some(&b), cfg).unwrap()
            } else {
                x.conv2d(&k, Some(&b), cfg).unwrap().relu()
            };
            let dy = Tensor::rand_normal(y.shape(), 0.0, 1.0, &mut Rng::new(42));
            y.mul(&dy).unwrap().sum_all().backward().unwrap();
            let grads: Vec<Vec<f32>> = [&x, &k, &b]
                .iter()
                .map(|t| t.grad().unwrap().to_vec())
                .collect();
            (y.to_vec(), grads)
        };
        let (fused, plain) = (run(true), run(false));
        assert!(fused.0.contains(&0.0) && fused.0.iter().any(|&v| v > 0.0));
        assert_eq!(fused, plain, "{xs:?} {ks:?}");
        // no graph: the same values, no mask kept
        let y = crate::no_grad(|| x.conv2d_relu(&k, Some(&b), cfg)).unwrap();
        assert_eq!(y.to_vec(), fused.0);
    }
    let x = rand_t(&[1, 5, 5, 2], &mut rng);
    let k = rand_t(&[3, 3, 2, 3], &mut rng);
    let b = rand_t(&[3], &mut rng);
    check_gradients(&[x, k, b], |t| {
        t[0].conv2d_relu(&t[1], Some(&t[2]), Conv2dConfig::default())
    });
}

/// `conv2d_moments` on every forward path (Winograd, in place, tiled,
/// 1x1, im2col chunks, groups, strides, dilation, a bias): the output is
/// bitwise `conv2d`'s, and the moments are the output's two-pass f64
/// mean and biased variance up to f32 rounding of the partial sums.
#[test]
fn conv2d_moments_are_the_outputs_statistics() {
    let mut rng = Rng::new(41);
    // (n, hw, cin, cout, k, stride, dilation, groups)
    let cases: [[usize; 8]; 9] = [
        [2, 8, 64, 64, 3, 1, 1, 1],
        // Winograd F(4x4, 3x3) over the whole batch (32 tiles)
        [8, 7, 160, 144, 3, 1, 1, 1],
        [2, 9, 16, 24, 3, 1, 1, 1],
        [8, 14, 32, 40, 1, 1, 1, 1],
        [1, 5, 8, 12, 1, 1, 1, 1],
        [2, 11, 8, 16, 3, 2, 1, 1],
        [1, 9, 8, 8, 3, 1, 2, 1],
        [2, 7, 8, 12, 3, 1, 1, 4],
        [3, 30, 6, 20, 5, 1, 1, 1],
    ];
    for (case, &[n, hw, cin, cout, k, s, d, g]) in cases.iter().enumerate() {
        let x = Tensor::rand_normal(&[n, hw, hw, cin], 0.5, 1.0, &mut rng);
        let w = Tensor::rand_normal(&[k, k, cin / g, cout], 0.0, 0.2, &mut rng);
        let b = Tensor::rand_normal(&[cout], 3.0, 1.0, &mut rng);
        let cfg = Conv2dConfig {
            strides: (s, s),
            padding: Padding::Same,
            dilation: (d, d),
            groups: g,
            ..Default::default()
        };
        let y = x.conv2d(&w, Some(&b), cfg).unwrap();
        let (y2, m) = x.conv2d_moments(&w, Some(&b), cfg).unwrap();
        assert_eq!(y.to_vec(), y2.to_vec(), "case {case}");
        let v = y.to_vec();
        let rows = v.len() / cout;
        assert_eq!(m.count, rows, "case {case}");
        for (ch, var) in m.variance().into_iter().enumerate() {
            let col = || v.iter().skip(ch).step_by(cout).map(|&t| t as f64);
            let mean = col().sum::<f64>() / rows as f64;
            let want = col().map(|t| (t - mean).powi(2)).sum::<f64>() / rows as f64;
            assert!(
                (m.mean[ch] - mean).abs() <= 1e-6 * (1.0 + mean.abs()),
                "case {case}"
            );
            assert!(
                (var - want).abs() <= 1e-5 * want + 1e-9,
                "case {case} ch {ch}: {var} vs {want}"
            );
        }
    }
}

/// `conv2d_relu`'s backward masks the gradient in place when it holds it
/// alone, into a buffer of its own when it is shared (a residual Add's
/// two inputs share one): bitwise `conv2d` then `relu` either way.
#[test]
fn conv2d_relu_masks_an_owned_or_shared_gradient_alike() {
    let mut rng = Rng::new(44);
    let x0 = Tensor::rand_normal(&[2, 6, 6, 3], 0.0, 1.0, &mut rng);
    let w0 = Tensor::rand_normal(&[3, 3, 3, 4], 0.0, 0.5, &mut rng);
    let z0 = Tensor::rand_normal(&[2, 6, 6, 4], 0.0, 1.0, &mut rng);
    let g = Tensor::rand_normal(&[2, 6, 6, 4], 0.0, 1.0, &mut rng);
    let cfg = Conv2dConfig::default().with_padding(Padding::Same);
    for shared in [false, true] {
        let run = |fused: bool| {
            let x = x0.detach().requires_grad_(true);
            let w = w0.detach().requires_grad_(true);
            let z = z0.detach().requires_grad_(shared);
            let y = match fused {
                true => x.conv2d_relu(&w, None, cfg).unwrap(),
                false => x.conv2d(&w, None, cfg).unwrap().relu(),
            };
            let out = y.add_relu(&z).unwrap();
            out.mul(&g).unwrap().sum_all().backward().unwrap();
            (x.grad().unwrap().to_vec(), w.grad().unwrap().to_vec())
        };
        assert_eq!(run(true), run(false), "shared {shared}");
    }
}

/// Forward, dX and dW of `x` convolved with `k` under `cfg`, the output's
/// gradient being `dy`.
fn conv_and_grads(
    x: &[f32],
    k: &[f32],
    dy: &[f32],
    shapes: (&[usize], &[usize]),
    cfg: Conv2dConfig,
) -> [Vec<f32>; 3] {
    let x = Tensor::from_vec(x.to_vec(), shapes.0)
        .unwrap()
        .requires_grad_(true);
    let k = Tensor::from_vec(k.to_vec(), shapes.1)
        .unwrap()
        .requires_grad_(true);
    let y = x.conv2d(&k, None, cfg).unwrap();
    let dy = Tensor::from_vec(dy.to_vec(), y.shape()).unwrap();
    y.mul(&dy).unwrap().sum_all().backward().unwrap();
    [
        y.to_vec(),
        x.grad().unwrap().to_vec(),
        k.grad().unwrap().to_vec(),
    ]
}

/// Under bfloat16, on this CPU's kernel (the bfloat16 one where it has
/// AVX512-BF16), the forward, dX and dW of `cfg` against the portable
/// definition (rounded operands and output gradient through float32),
/// within [`crate::precision::bf16_tolerance`] of each value's sum of
/// |products| (the same convolution of the operands' magnitudes). Returns
/// whether each direction ran on the bfloat16 kernel.
fn bf16_against_portable(xs: &[usize], ks: &[usize], cfg: Conv2dConfig, seed: u64) -> [bool; 3] {
    use crate::precision::{bf16_tolerance, rounded_bf16};
    let mut rng = Rng::new(seed);
    let p = plan(xs, ks, None, &cfg).unwrap();
    let x = rand_t(xs, &mut rng).to_vec();
    let k = rand_t(ks, &mut rng).to_vec();
    let dy = rand_t(&[p.n, p.geo.out_h, p.geo.out_w, p.cout], &mut rng).to_vec();
    let bf16 = cfg.with_precision(Precision::MixedBfloat16);
    let f32_ = cfg.with_precision(Precision::Float32);
    let fast = conv_and_grads(&x, &k, &dy, (xs, ks), bf16);
    let (xr, kr, dyr) = (rounded_bf16(&x), rounded_bf16(&k), rounded_bf16(&dy));
    let portable = conv_and_grads(&xr, &kr, &dyr, (xs, ks), f32_);
    let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<f32>>();
    let mag = conv_and_grads(&abs(&xr), &abs(&kr), &abs(&dyr), (xs, ks), f32_);
    let g = &p.geo;
    let depths = [p.kg, g.kh * g.kw * p.cout_g, p.n * p.out_pixels()];
    for (d, name) in ["forward", "dX", "dW"].iter().enumerate() {
        assert_eq!(fast[d].len(), portable[d].len());
        for (i, ((f, w), m)) in fast[d].iter().zip(&portable[d]).zip(&mag[d]).enumerate() {
            let bound = bf16_tolerance(depths[d], *m as f64 * 1.0001);
            assert!(
                ((f - w) as f64).abs() <= bound,
                "{xs:?} * {ks:?} {cfg:?} {name}[{i}]: {f} vs {w} (bound {bound:e})"
            );
        }
    }
    let b = Precision::MixedBfloat16;
    [
        dispatch::forward_gemm(&p, b).is_bf16(),
        dispatch::dx_gemm(&p, b).is_bf16(),
        dispatch::dw_gemm(&p, b).is_bf16(),
    ]
}

/// bfloat16 against the portable definition on strides, padding, dilation,
/// groups, 1x1, 3x3, 7x7 stride 2, odd runs, batch 1 and more; every
/// direction of every GEMM-shaped algorithm among them runs on the
/// bfloat16 kernel.
#[test]
#[cfg_attr(not(host_avx512bf16), ignore = "needs a CPU with AVX512-BF16")]
fn bf16_kernel_matches_the_portable_definition() {
    let same = Conv2dConfig::default().with_padding(Padding::Same);
    // input, kernel, configuration, which directions run on the bfloat16 kernel
    type Case = (&'static [usize], &'static [usize], Conv2dConfig, [bool; 3]);
    let cases: Vec<Case> = vec![
        // pointwise: dX and dW in one pass (1024 rows)
        (
            &[4, 16, 16, 64],
            &[1, 1, 64, 256],
            Conv2dConfig::default(),
            [true; 3],
        ),
        // pointwise, few rows: dW split by input channels
        (
            &[1, 7, 7, 512],
            &[1, 1, 512, 128],
            Conv2dConfig::default(),
            [true; 3],
        ),
        // pointwise, few rows, more output channels than input ones (ResNet's
        // 7x7 expansions): dW split by input channels all the same
        (
            &[2, 7, 7, 64],
            &[1, 1, 64, 96],
            Conv2dConfig::default(),
            [true; 3],
        ),
        // pointwise, 64 -> 64 (ResNet's first): dW by transposed blocks
        (
            &[4, 16, 16, 64],
            &[1, 1, 64, 64],
            Conv2dConfig::default(),
            [true; 3],
        ),
        // pointwise to fewer than 64 channels: dW on the crate, so portable
        (
            &[2, 7, 7, 64],
            &[1, 1, 64, 32],
            Conv2dConfig::default(),
            [true, true, false],
        ),
        // strided 1x1 (ResNet's downsampling shortcut)
        (
            &[2, 14, 14, 64],
            &[1, 1, 64, 128],
            Conv2dConfig::default().with_strides(2, 2),
            [true; 3],
        ),
        // 3x3 stride 1 below Winograd's channels: implicit, dX transposed
        (&[2, 9, 9, 32], &[3, 3, 32, 64], same, [true; 3]),
        // 3x3 stride 2 (ResNet's): implicit, col2im, dW by kernel rows or tiles
        (
            &[2, 15, 15, 64],
            &[3, 3, 64, 128],
            same.with_strides(2, 2),
            [true; 3],
        ),
        // 7x7 stride 2 stem over RGB: im2col
        (
            &[2, 32, 32, 3],
            &[7, 7, 3, 64],
            same.with_strides(2, 2),
            [true; 3],
        ),
        // batch 1, stride (2, 1), valid, a 3x2 window
        (
            &[1, 10, 11, 64],
            &[3, 2, 64, 64],
            Conv2dConfig::default().with_strides(2, 1),
            [true; 3],
        ),
        // odd runs (3 * 65 values): im2col instead of in place
        (
            &[1, 9, 9, 65],
            &[3, 3, 65, 64],
            Conv2dConfig::default(),
            [true; 3],
        ),
        // dilation
        (
            &[1, 12, 12, 16],
            &[3, 3, 16, 64],
            same.with_dilation(2, 2),
            [true, true, true],
        ),
        // groups: dW on the crate, so portable
        (
            &[2, 8, 8, 32],
            &[3, 3, 16, 64],
            same.with_groups(2),
            [true, true, false],
        ),
        // Winograd's: float32 on rounded operands (`winograd_keeps_bf16`)
        (&[2, 8, 8, 64], &[3, 3, 64, 64], same, [false; 3]),
    ];
    for (i, (xs, ks, cfg, want)) in cases.into_iter().enumerate() {
        let on = bf16_against_portable(xs, ks, cfg, 40 + i as u64);
        assert_eq!(
            on, want,
            "case {i}: which directions run on the bfloat16 kernel"
        );
    }
}

/// Inference caches the bfloat16 packing under the bfloat16 key: a second
/// call gives bitwise the first, and a float32 call after it is float32's.
#[test]
#[cfg_attr(not(host_avx512bf16), ignore = "needs a CPU with AVX512-BF16")]
fn bf16_packing_is_cached_apart_from_float32() {
    use crate::autograd::no_grad;
    let mut rng = Rng::new(8);
    let x = rand_t(&[2, 9, 9, 64], &mut rng);
    let k = rand_t(&[3, 3, 64, 96], &mut rng);
    let f32_ = Conv2dConfig::default().with_strides(2, 2);
    let bf16 = f32_.with_precision(Precision::MixedBfloat16);
    let plain = no_grad(|| x.conv2d(&k, None, f32_)).unwrap().to_vec();
    let first = no_grad(|| x.conv2d(&k, None, bf16)).unwrap().to_vec();
    assert!(k.packed_cache().is_some());
    assert_eq!(
        no_grad(|| x.conv2d(&k, None, bf16)).unwrap().to_vec(),
        first
    );
    assert_eq!(
        no_grad(|| x.conv2d(&k, None, f32_)).unwrap().to_vec(),
        plain
    );
    assert_ne!(first, plain);
}

/// Inference under bfloat16 through float32 Winograd: the kernel is rounded
/// when its transform is cached, not at every call, and every call gives
/// bitwise the float32 convolution of the rounded operands.
#[test]
#[cfg_attr(
    not(host_packed_gemm),
    ignore = "needs a CPU with AVX-512 or AVX2 + FMA"
)]
fn bf16_winograd_inference_is_the_rounded_float32_one() {
    use crate::autograd::no_grad;
    use crate::precision::rounded_bf16;
    let mut rng = Rng::new(9);
    let (xs, ks) = ([2, 8, 8, 64], [3, 3, 64, 64]);
    let x = rand_t(&xs, &mut rng);
    let k = rand_t(&ks, &mut rng);
    let same = Conv2dConfig::default().with_padding(Padding::Same);
    let p = plan(&xs, &ks, None, &same).unwrap();
    assert!(dispatch::winograd_keeps_bf16(&p));
    let bf16 = same.with_precision(Precision::MixedBfloat16);
    let xr = Tensor::from_vec(rounded_bf16(&x.to_vec()), &xs).unwrap();
    let kr = Tensor::from_vec(rounded_bf16(&k.to_vec()), &ks).unwrap();
    let want = no_grad(|| xr.conv2d(&kr, None, same)).unwrap().to_vec();
    for call in 0..2 {
        let got = no_grad(|| x.conv2d(&k, None, bf16)).unwrap().to_vec();
        assert_eq!(got, want, "call {call}");
        assert!(k.packed_cache().is_some());
    }
}
