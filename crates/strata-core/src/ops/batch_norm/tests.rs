//! BatchNorm's tests: the plain and fused training ops against the separate ops and each other.

use super::*;
use crate::gradcheck::check_gradients;
use crate::rng::Rng;

/// Oracle: the same normalisation composed from primitive tensor ops.
fn reference_train(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Tensor {
    let axes: Vec<isize> = (0..x.rank() as isize - 1).collect();
    let mean = x.mean(&axes, false).unwrap();
    let d = x.sub(&mean).unwrap();
    let var = d.square().mean(&axes, false).unwrap();
    let inv = var.add_scalar(eps).sqrt();
    d.div(&inv).unwrap().mul(gamma).unwrap().add(beta).unwrap()
}

#[test]
fn train_matches_composed_reference_and_returns_biased_stats() {
    let mut rng = Rng::new(51);
    for shape in [vec![6, 3], vec![2, 3, 4, 5]] {
        let c = *shape.last().unwrap();
        let x = Tensor::rand_normal(&shape, 1.5, 2.0, &mut rng).requires_grad_(true);
        let g = Tensor::rand_normal(&[c], 1.0, 0.3, &mut rng).requires_grad_(true);
        let b = Tensor::rand_normal(&[c], 0.0, 0.3, &mut rng).requires_grad_(true);
        let (y, mean, var) = x.batch_norm_train(Some(&g), Some(&b), 1e-3).unwrap();
        let want = reference_train(&x, &g, &b, 1e-3);
        assert!(y.allclose(&want, 1e-4, 1e-5));
        let m = x.numel() / c;
        let xd = x.to_vec();
        for ch in 0..c {
            let vals: Vec<f64> = (0..m).map(|i| xd[i * c + ch] as f64).collect();
            let mu = vals.iter().sum::<f64>() / m as f64;
            let v = vals.iter().map(|a| (a - mu) * (a - mu)).sum::<f64>() / m as f64;
            assert!((mean[ch] as f64 - mu).abs() < 1e-5);
            assert!((var[ch] as f64 - v).abs() < 1e-4 * (1.0 + v));
        }
        let dy = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        y.mul(&dy).unwrap().sum_all().backward().unwrap();
        let grads: Vec<Tensor> = [&x, &g, &b].iter().map(|t| t.grad().unwrap()).collect();
        [&x, &g, &b].iter().for_each(|t| t.zero_grad());
        want.mul(&dy).unwrap().sum_all().backward().unwrap();
        for (got, t) in grads.iter().zip([&x, &g, &b]) {
            assert!(got.allclose(&t.grad().unwrap(), 1e-3, 1e-4));
        }
    }
}

#[test]
fn gradients_train_and_infer() {
    let mut rng = Rng::new(52);
    for shape in [vec![5, 3], vec![2, 3, 2, 2]] {
        let c = *shape.last().unwrap();
        let x = Tensor::rand_normal(&shape, 0.5, 1.0, &mut rng);
        let g = Tensor::rand_normal(&[c], 1.0, 0.3, &mut rng);
        let b = Tensor::rand_normal(&[c], 0.0, 0.3, &mut rng);
        check_gradients(&[x.clone(), g.clone(), b.clone()], |t| {
            Ok(t[0].batch_norm_train(Some(&t[1]), Some(&t[2]), 1e-3)?.0)
        });
        check_gradients(std::slice::from_ref(&x), |t| {
            Ok(t[0].batch_norm_train(None, None, 1e-3)?.0)
        });
        let mm: Vec<f32> = (0..c).map(|i| 0.1 * i as f32).collect();
        let mv: Vec<f32> = (0..c).map(|i| 0.5 + 0.2 * i as f32).collect();
        check_gradients(&[x, g, b], |t| {
            t[0].batch_norm_infer(&mm, &mv, Some(&t[1]), Some(&t[2]), 1e-3)
        });
    }
}

#[test]
fn parallel_runs_are_bitwise_identical() {
    let run = || {
        let x =
            Tensor::rand_normal(&[8, 32, 32, 16], 0.3, 2.0, &mut Rng::new(1)).requires_grad_(true);
        let g = Tensor::ones(&[16]).requires_grad_(true);
        let (y, mean, var) = x.batch_norm_train(Some(&g), None, 1e-3).unwrap();
        y.square().sum_all().backward().unwrap();
        (
            y.to_vec(),
            mean,
            var,
            x.grad().unwrap().to_vec(),
            g.grad().unwrap().to_vec(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn moving_average_update_follows_keras() {
    let mut mm = vec![0.0, 1.0];
    update_moving(&mut mm, &[1.0, 3.0], 0.99);
    assert!((mm[0] - 0.01).abs() < 1e-7 && (mm[1] - 1.02).abs() < 1e-6);
}

#[test]
fn errors_name_op_and_shapes() {
    let x = Tensor::zeros(&[4, 3]);
    let e = x
        .batch_norm_train(Some(&Tensor::ones(&[2])), None, 1e-3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("batch_norm_train") && e.contains("gamma (3,)") && e.contains("(2,)"),
        "{e}"
    );
    assert!(Tensor::zeros(&[3])
        .batch_norm_train(None, None, 1e-3)
        .is_err());
    assert!(x.batch_norm_train(None, None, -1.0).is_err());
    let e = x
        .batch_norm_infer(&[0.0; 2], &[1.0; 3], None, None, 1e-3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("batch_norm_infer") && e.contains("moving_mean"),
        "{e}"
    );
}

#[test]
fn train_relu_is_bitwise_the_two_ops() {
    let mut rng = Rng::new(53);
    for shape in [vec![7, 5], vec![3, 6, 5, 8]] {
        let c = *shape.last().unwrap();
        let x = Tensor::rand_normal(&shape, 0.2, 1.0, &mut rng).requires_grad_(true);
        let g = Tensor::rand_normal(&[c], 1.0, 0.3, &mut rng).requires_grad_(true);
        let b = Tensor::rand_normal(&[c], 0.1, 0.3, &mut rng).requires_grad_(true);
        let dy = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        let run = |fused: bool| {
            [&x, &g, &b].iter().for_each(|t| t.zero_grad());
            let (y, mean, var) = if fused {
                x.batch_norm_train_relu(Some(&g), Some(&b), 1e-3).unwrap()
            } else {
                let (y, m, v) = x.batch_norm_train(Some(&g), Some(&b), 1e-3).unwrap();
                (y.relu(), m, v)
            };
            y.mul(&dy).unwrap().sum_all().backward().unwrap();
            let grads: Vec<Vec<f32>> = [&x, &g, &b]
                .iter()
                .map(|t| t.grad().unwrap().to_vec())
                .collect();
            (y.to_vec(), mean, var, grads)
        };
        let (fused, plain) = (run(true), run(false));
        assert!(fused.0.contains(&0.0) && fused.0.iter().any(|&v| v > 0.0));
        assert_eq!(fused, plain);
    }
    let x = Tensor::rand_normal(&[6, 4], 0.3, 1.0, &mut rng);
    let g = Tensor::rand_normal(&[4], 1.0, 0.3, &mut rng);
    let b = Tensor::rand_normal(&[4], 0.2, 0.3, &mut rng);
    check_gradients(&[x, g, b], |t| {
        Ok(t[0]
            .batch_norm_train_relu(Some(&t[1]), Some(&t[2]), 1e-3)?
            .0)
    });
}

/// BatchNorm, Add and ReLU as one op give the three ops' outputs and
/// gradients bit for bit: rows of 5 and 100 channels (the parallel sweep's
/// tasks then start mid-row), and of 64 and 128 (the backward masks the
/// gradient in the sweep that sums it), serial and parallel sizes, each
/// input with or without a gradient, the upstream owned or shared; a
/// residual of another shape is refused.
#[test]
fn train_add_relu_is_bitwise_the_three_ops() {
    let mut rng = Rng::new(54);
    let shapes = [
        vec![7, 5],
        vec![3, 6, 5, 8],
        vec![2, 20, 20, 100],
        vec![3, 5, 7, 64],
        vec![2, 16, 16, 128],
        vec![4, 32, 32, 64],
    ];
    for shape in shapes {
        let c = *shape.last().unwrap();
        for (need_x, need_r, shared) in [
            (true, true, false),
            (true, false, false),
            (false, true, false),
            (true, true, true),
        ] {
            let x = Tensor::rand_normal(&shape, 0.2, 1.0, &mut rng).requires_grad_(need_x);
            let r = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng).requires_grad_(need_r);
            let g = Tensor::rand_normal(&[c], 1.0, 0.3, &mut rng).requires_grad_(true);
            let b = Tensor::rand_normal(&[c], 0.1, 0.3, &mut rng).requires_grad_(true);
            let w = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng).requires_grad_(true);
            let dy = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
            let run = |fused: bool| {
                [&x, &r, &g, &b, &w].iter().for_each(|t| t.zero_grad());
                let (y, mean, var) = if fused {
                    x.batch_norm_train_add_relu(&r, None, Some(&g), Some(&b), 1e-3)
                        .unwrap()
                } else {
                    let (y, m, v) = x.batch_norm_train(Some(&g), Some(&b), 1e-3).unwrap();
                    (y.add_relu(&r).unwrap(), m, v)
                };
                // an Add shares its gradient between y and w
                let top = if shared {
                    y.add(&w).unwrap()
                } else {
                    y.clone()
                };
                top.mul(&dy).unwrap().sum_all().backward().unwrap();
                let grads: Vec<Option<Vec<f32>>> = [&x, &r, &g, &b]
                    .iter()
                    .map(|t| t.grad().map(|g| g.to_vec()))
                    .collect();
                (y.to_vec(), mean, var, grads)
            };
            let (fused, plain) = (run(true), run(false));
            assert!(fused.0.contains(&0.0) && fused.0.iter().any(|&v| v > 0.0));
            assert_eq!(fused.3[0].is_some(), need_x);
            assert_eq!(fused.3[1].is_some(), need_r);
            assert_eq!(fused, plain, "{shape:?} {need_x} {need_r} {shared}");
        }
    }
    let x = Tensor::rand_normal(&[6, 4], 0.3, 1.0, &mut rng);
    let r = Tensor::rand_normal(&[6, 4], 0.0, 1.0, &mut rng);
    let g = Tensor::rand_normal(&[4], 1.0, 0.3, &mut rng);
    let b = Tensor::rand_normal(&[4], 0.2, 0.3, &mut rng);
    check_gradients(&[x.clone(), r, g, b], |t| {
        Ok(t[0]
            .batch_norm_train_add_relu(&t[1], None, Some(&t[2]), Some(&t[3]), 1e-3)?
            .0)
    });
    let wrong = Tensor::zeros(&[6, 5]);
    let err = x
        .batch_norm_train_add_relu(&wrong, None, None, None, 1e-3)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("residual") && err.contains("(6, 4)") && err.contains("(6, 5)"),
        "{err}"
    );
}

/// Given moments (as a convolution's epilogue takes them) give the op's
/// own output and gradients up to the statistics' rounding; moments of
/// another shape are refused.
#[test]
fn train_with_given_moments_matches_and_checks_them() {
    use crate::ops::batch_norm::moments::MomentSink;
    let mut rng = Rng::new(8);
    let x = Tensor::rand_normal(&[3, 5, 7, 6], 2.0, 1.5, &mut rng).requires_grad_(true);
    let gamma = Tensor::rand_normal(&[6], 1.0, 0.2, &mut rng).requires_grad_(true);
    let beta = Tensor::rand_normal(&[6], 0.0, 0.2, &mut rng).requires_grad_(true);
    let sink = MomentSink::new(6);
    let xs = x.to_vec();
    // pieces as an epilogue would hand them over, out of order
    for r in [(40usize, 105usize), (0, 40)] {
        sink.add(r.0 * 6, &xs[r.0 * 6..r.1 * 6]);
    }
    let m = sink.finish();
    for relu in [false, true] {
        let run = |given: bool| {
            for t in [&x, &gamma, &beta] {
                t.zero_grad();
            }
            let (y, mean, var) = match (given, relu) {
                (true, _) => x.batch_norm_train_with(&m, Some(&gamma), Some(&beta), 1e-3, relu),
                (false, true) => x.batch_norm_train_relu(Some(&gamma), Some(&beta), 1e-3),
                (false, false) => x.batch_norm_train(Some(&gamma), Some(&beta), 1e-3),
            }
            .unwrap();
            let w = Tensor::rand_normal(y.shape(), 0.0, 1.0, &mut Rng::new(2));
            y.mul(&w).unwrap().sum_all().backward().unwrap();
            let grads = [&x, &gamma, &beta].map(|t| t.grad().unwrap().to_vec());
            (y.to_vec(), mean, var, grads)
        };
        let (a, b) = (run(true), run(false));
        let close = |p: &[f32], q: &[f32]| {
            p.iter()
                .zip(q)
                .all(|(u, v)| (u - v).abs() <= 1e-5 * (1.0 + v.abs()))
        };
        assert!(
            close(&a.0, &b.0) && close(&a.1, &b.1) && close(&a.2, &b.2),
            "relu {relu}"
        );
        for (ga, gb) in a.3.iter().zip(&b.3) {
            assert!(close(ga, gb), "relu {relu}: gradients differ");
        }
    }
    let short = crate::ops::batch_norm::moments::ChannelMoments::of_rows(&xs[..60], 6);
    let err = x
        .batch_norm_train_with(&short, None, None, 1e-3, false)
        .unwrap_err();
    assert!(err.to_string().contains("moments"), "{err}");
}

/// The backward writes dx over dy when it holds dy alone, and into a
/// buffer of its own when dy is shared (a residual Add hands both its
/// inputs one gradient): bitwise the same gradients either way.
#[test]
fn backward_in_place_and_shared_agree_bitwise() {
    let mut rng = Rng::new(12);
    let x0 = Tensor::rand_normal(&[4, 3, 3, 5], 1.0, 2.0, &mut rng);
    let z0 = Tensor::rand_normal(&[4, 3, 3, 5], 0.0, 1.0, &mut rng);
    let w = Tensor::rand_normal(&[4, 3, 3, 5], 0.0, 1.0, &mut rng);
    for relu in [false, true] {
        let run = |shared: bool| {
            let x = x0.detach().requires_grad_(true);
            let z = z0.detach().requires_grad_(shared);
            let (y, _, _) = match relu {
                true => x.batch_norm_train_relu(None, None, 1e-3),
                false => x.batch_norm_train(None, None, 1e-3),
            }
            .unwrap();
            // add_relu shares its gradient between y and z when z takes one
            let out = y.add_relu(&z).unwrap();
            out.mul(&w).unwrap().sum_all().backward().unwrap();
            x.grad().unwrap().to_vec()
        };
        assert_eq!(run(true), run(false), "relu {relu}");
    }
}

/// Values summed over threads standing in for processes: every call of
/// every thread adds its values, then all read the total.
struct Exchange {
    barrier: std::sync::Barrier,
    acc: std::sync::Mutex<Vec<f64>>,
}

impl Exchange {
    fn sum(&self, v: &mut [f64]) {
        if self.barrier.wait().is_leader() {
            *self.acc.lock().unwrap() = vec![0.0; v.len()];
        }
        self.barrier.wait();
        {
            let mut acc = self.acc.lock().unwrap();
            acc.iter_mut().zip(v.iter()).for_each(|(a, b)| *a += b);
        }
        self.barrier.wait();
        v.copy_from_slice(&self.acc.lock().unwrap());
        self.barrier.wait();
    }
}

/// A batch split among 3 "processes" (threads), each normalising its rows
/// with the synchronised op, gives the single op's output, `dx` and (summed
/// over the processes) `dgamma` and `dbeta`; with and without a ReLU, with
/// the moments given or taken. Shifted data (mean 40, std 0.5) checks the
/// variance is not a cancellation of large sums.
#[test]
fn synchronised_batch_norm_over_processes_is_one_batch_norm() {
    use std::sync::Arc;
    let mut rng = Rng::new(77);
    let (rows, c) = (12, 5);
    let x = Tensor::rand_normal(&[rows, 1, 1, c], 40.0, 0.5, &mut rng);
    let g = Tensor::rand_normal(&[c], 1.0, 0.3, &mut rng);
    let b = Tensor::rand_normal(&[c], 0.0, 0.3, &mut rng);
    let w = Tensor::rand_normal(&[rows, 1, 1, c], 0.0, 1.0, &mut rng);
    for (relu, given) in [(false, false), (true, false), (false, true), (true, true)] {
        let (xs, gs, bs) = (
            x.detach().requires_grad_(true),
            g.detach().requires_grad_(true),
            b.detach().requires_grad_(true),
        );
        let (y, mean, var) = xs
            .batch_norm_train_with(
                &moments::ChannelMoments::of_rows(&x.to_vec(), c),
                Some(&gs),
                Some(&bs),
                1e-3,
                relu,
            )
            .unwrap();
        y.mul(&w).unwrap().sum_all().backward().unwrap();
        let ex = Arc::new(Exchange {
            barrier: std::sync::Barrier::new(3),
            acc: std::sync::Mutex::new(Vec::new()),
        });
        let parts: Vec<_> = (0..3)
            .map(|r| {
                let (ex, x, g, b, w) = (ex.clone(), x.clone(), g.clone(), b.clone(), w.clone());
                std::thread::spawn(move || {
                    let sum: ProcessSum = Arc::new(move |v: &mut [f64]| ex.sum(v));
                    let take = |t: &Tensor| {
                        let d = t.to_vec();
                        Tensor::from_vec(d[r * 4 * c..(r + 1) * 4 * c].to_vec(), &[4, 1, 1, c])
                            .unwrap()
                    };
                    let (xr, wr) = (take(&x).requires_grad_(true), take(&w));
                    let (g, b) = (
                        g.detach().requires_grad_(true),
                        b.detach().requires_grad_(true),
                    );
                    let m = given.then(|| moments::ChannelMoments::of_rows(&xr.to_vec(), c));
                    let (y, mean, var) = xr
                        .batch_norm_train_synced(m.as_ref(), Some(&g), Some(&b), 1e-3, relu, &sum)
                        .unwrap();
                    y.mul(&wr).unwrap().sum_all().backward().unwrap();
                    let grads = [&xr, &g, &b].map(|t| t.grad().unwrap().to_vec());
                    (y.to_vec(), mean, var, grads)
                })
            })
            .collect();
        let parts: Vec<_> = parts.into_iter().map(|h| h.join().unwrap()).collect();
        let close = |a: &[f32], b: &[f32], what: &str| {
            for (i, (a, b)) in a.iter().zip(b).enumerate() {
                assert!(
                    (a - b).abs() <= 2e-4 * (1.0 + b.abs()),
                    "{what}[{i}]: {a} vs {b}"
                );
            }
        };
        let joined = |k: usize| -> Vec<f32> {
            parts
                .iter()
                .flat_map(|p| match k {
                    0 => p.0.clone(),
                    _ => p.3[0].clone(),
                })
                .collect()
        };
        close(&joined(0), &y.to_vec(), "y");
        close(&joined(1), &xs.grad().unwrap().to_vec(), "dx");
        for p in &parts {
            close(&p.1, &mean, "mean");
            close(&p.2, &var, "var");
        }
        for (k, t) in [(1, &gs), (2, &bs)] {
            let total: Vec<f32> = (0..c)
                .map(|ch| parts.iter().map(|p| p.3[k][ch]).sum())
                .collect();
            close(&total, &t.grad().unwrap().to_vec(), "dgamma/dbeta");
        }
    }
    let one: ProcessSum = std::sync::Arc::new(|_: &mut [f64]| {});
    let e = x
        .batch_norm_train_synced(
            Some(&moments::ChannelMoments::empty(c)),
            None,
            None,
            1e-3,
            false,
            &one,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("moments") && e.contains("12 rows"), "{e}");
}
