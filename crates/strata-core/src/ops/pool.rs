//! 2-d pooling over NHWC input, Keras semantics: `MaxPooling2D` ('same' pads with
//! -inf, so padding never wins; the gradient goes to the first maximum of each
//! window), `AveragePooling2D` (divides by the number of real input cells in the
//! window, never counting padding) and `GlobalAveragePooling2D`.
//! `Padding::Explicit` gives torchvision's `MaxPool2d(3, 2, padding=1)`.

use crate::autograd;
use crate::error::{fmt_shape, CoreError, Result};
use crate::kernels::{buffers, parallel};
use crate::ops::padding::{nhwc, Geometry2d, Padding};
use crate::tensor::Tensor;

/// Checks the input and resolves the window geometry of a pooling op.
fn pool_geometry(
    op: &str,
    shape: &[usize],
    pool_size: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
) -> Result<(usize, usize, Geometry2d)> {
    let (n, h, w, c) = nhwc(op, shape)?;
    if let Padding::Explicit {
        top,
        bottom,
        left,
        right,
    } = padding
    {
        if top.max(bottom) >= pool_size.0 || left.max(right) >= pool_size.1 {
            return Err(CoreError::arg(
                op,
                "padding",
                format!(
                    "explicit padding (top {top}, bottom {bottom}, left {left}, right {right}) must be smaller than the pool size {pool_size:?}"
                ),
            ));
        }
    }
    let geo = padding.resolve(op, (h, w), pool_size, strides, (1, 1))?;
    Ok((n, c, geo))
}

/// Real (non-padding) cells of the window at output (oh, ow).
fn window_count(g: &Geometry2d, oh: usize, ow: usize) -> usize {
    let rows = (0..g.kh).filter(|&ki| g.in_row(oh, ki).is_some()).count();
    let cols = (0..g.kw).filter(|&kj| g.in_col(ow, kj).is_some()).count();
    rows * cols
}

/// Max pooling without padding: every window lies inside the input, so each output
/// pixel starts from its first tap and the other taps compare-and-select over the
/// channels without branches (vectorised). Same result and tie rule (first maximum,
/// strict `>`) as the general loop. `out`/`arg` are overwritten entirely.
fn max_pool_unpadded(x: &[f32], g: &Geometry2d, c: usize, out: &mut [f32], arg: &mut [u32]) {
    let img = g.in_h * g.in_w * c;
    let row_len = (g.out_w * c).max(1);
    let work = |idx: usize, o: &mut [f32], a: &mut [u32]| {
        let (b, oh) = (idx / g.out_h, idx % g.out_h);
        let xi = &x[b * img..(b + 1) * img];
        for ((o, a), ow) in o.chunks_exact_mut(c).zip(a.chunks_exact_mut(c)).zip(0..) {
            let at = |ki: usize, kj: usize| ((oh * g.sh + ki) * g.in_w + ow * g.sw + kj) * c;
            let b0 = at(0, 0);
            o.copy_from_slice(&xi[b0..b0 + c]);
            indices_from(a, b0 as u32);
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    if ki == 0 && kj == 0 {
                        continue;
                    }
                    let base = at(ki, kj);
                    let xs = &xi[base..base + c];
                    select_greater(o, a, xs, base as u32);
                }
            }
        }
    };
    if out.len() >= parallel::PAR_THRESHOLD && crate::threads::num_threads() > 1 {
        use rayon::prelude::*;
        crate::threads::install(|| {
            out.par_chunks_mut(row_len)
                .zip(arg.par_chunks_mut(row_len))
                .enumerate()
                .for_each(|(i, (o, a))| work(i, o, a))
        });
    } else {
        out.chunks_mut(row_len)
            .zip(arg.chunks_mut(row_len))
            .enumerate()
            .for_each(|(i, (o, a))| work(i, o, a));
    }
}

/// The forward of max pooling without the winners' indices (nothing to
/// backpropagate into): each output is its window's maximum, taken with the
/// same strict `>` as [`select_greater`], so the values are bitwise the same.
fn max_pool_values(x: &[f32], g: &Geometry2d, c: usize, out: &mut [f32]) {
    let img = g.in_h * g.in_w * c;
    if c == 0 {
        return;
    }
    parallel::for_each_chunk_mut(out, (g.out_w * c).max(1), |idx, row| {
        let (b, oh) = (idx / g.out_h, idx % g.out_h);
        let xi = &x[b * img..(b + 1) * img];
        for (o, ow) in row.chunks_exact_mut(c).zip(0..) {
            let mut first = true;
            for ki in 0..g.kh {
                let Some(ih) = g.in_row(oh, ki) else { continue };
                for kj in 0..g.kw {
                    let Some(iw) = g.in_col(ow, kj) else { continue };
                    let xs = &xi[(ih * g.in_w + iw) * c..][..c];
                    if first {
                        o.copy_from_slice(xs);
                        first = false;
                    } else {
                        o.iter_mut()
                            .zip(xs)
                            .for_each(|(o, &v)| *o = if v > *o { v } else { *o });
                    }
                }
            }
            if first {
                o.fill(0.0);
            }
        }
    });
}

/// Where `xs[ch] > o[ch]`, takes the value and its index `base + ch` (strict `>`:
/// the first maximum wins ties). A bitwise select (an all-ones mask where
/// `v > o`) instead of a branch, so the loop vectorises.
/// Indexed over one length rather than zipped with a counter, which keeps
/// the loop vectorised.
#[inline(always)]
fn select_greater(o: &mut [f32], a: &mut [u32], xs: &[f32], base: u32) {
    let n = o.len().min(a.len()).min(xs.len());
    let (o, a, xs) = (&mut o[..n], &mut a[..n], &xs[..n]);
    for ch in 0..n {
        let v = xs[ch];
        let m = 0u32.wrapping_sub((v > o[ch]) as u32);
        a[ch] = (a[ch] & !m) | (base.wrapping_add(ch as u32) & m);
        o[ch] = f32::from_bits((o[ch].to_bits() & !m) | (v.to_bits() & m));
    }
}

/// `a[ch] = base + ch`: the first tap's indices.
#[inline(always)]
fn indices_from(a: &mut [u32], base: u32) {
    for (ch, a) in a.iter_mut().enumerate() {
        *a = base.wrapping_add(ch as u32);
    }
}

/// Max-pool gradient of one image when windows tile the input (unpadded, stride =
/// pool size): each input cell lies in at most one window, so `d` is written in one
/// pass, `0.0 + g` at the window's winner and `0.0` elsewhere (exactly what a
/// scatter-add into zeros gives), and cells outside every window are zeroed.
fn max_pool_tiled_backward(g: &Geometry2d, c: usize, arg: &[u32], gr: &[f32], d: &mut [f32]) {
    let row = g.in_w * c;
    let (cov_h, cov_w) = (g.out_h * g.kh, g.out_w * g.kw);
    for (ih, drow) in d.chunks_exact_mut(row.max(1)).enumerate() {
        if ih >= cov_h || c == 0 {
            drow.fill(0.0);
            continue;
        }
        let (oh, _) = (ih / g.kh, ih % g.kh);
        drow[cov_w * c..].fill(0.0);
        for ow in 0..g.out_w {
            let o0 = (oh * g.out_w + ow) * c;
            let (a, gs) = (&arg[o0..o0 + c], &gr[o0..o0 + c]);
            for kj in 0..g.kw {
                let iw = ow * g.kw + kj;
                let base = ih * row + iw * c;
                let dst = &mut drow[iw * c..(iw + 1) * c];
                for ch in 0..c {
                    let i = (base as u32).wrapping_add(ch as u32);
                    let m = 0u32.wrapping_sub((a[ch] == i) as u32);
                    dst[ch] = 0.0 + f32::from_bits(gs[ch].to_bits() & m);
                }
            }
        }
    }
}

impl Tensor {
    /// Keras `MaxPooling2D` on NHWC input: the largest value of each window.
    pub fn max_pool2d(
        &self,
        pool_size: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<Tensor> {
        const OP: &str = "max_pool2d";
        let (n, c, g) = pool_geometry(OP, self.shape(), pool_size, strides, padding)?;
        let img = g.in_h * g.in_w * c;
        if img > u32::MAX as usize {
            return Err(CoreError::shape(
                OP,
                "an image of fewer than 2^32 elements",
                fmt_shape(self.shape()),
            ));
        }
        let olen = n * g.out_h * g.out_w * c;
        let shape = vec![n, g.out_h, g.out_w, c];
        // with no backward to record, the winners' indices are not needed
        if !autograd::should_record(&[self]) {
            // every element is written below
            let mut out = buffers::dirty(olen);
            max_pool_values(&self.data(), &g, c, &mut out);
            return Ok(Tensor::from_parts(out, shape));
        }
        // index of the winner inside its image, per output element; both
        // written for every element below
        let (mut out, mut arg) = (buffers::dirty(olen), buffers::dirty_u32(olen));
        if g.unpadded() && c > 0 {
            max_pool_unpadded(&self.data(), &g, c, &mut out, &mut arg);
        } else {
            let x = self.data();
            let row_len = (g.out_w * c).max(1);
            let mut pairs: Vec<(&mut [f32], &mut [u32])> = out
                .chunks_mut(row_len)
                .zip(arg.chunks_mut(row_len))
                .collect();
            let work = |idx: usize, (o, a): &mut (&mut [f32], &mut [u32])| {
                let (b, oh) = (idx / g.out_h, idx % g.out_h);
                let xi = &x[b * img..(b + 1) * img];
                for ow in 0..g.out_w {
                    let (o, a) = (&mut o[ow * c..(ow + 1) * c], &mut a[ow * c..(ow + 1) * c]);
                    let mut first = true;
                    for ki in 0..g.kh {
                        let Some(ih) = g.in_row(oh, ki) else { continue };
                        for kj in 0..g.kw {
                            let Some(iw) = g.in_col(ow, kj) else { continue };
                            let base = (ih * g.in_w + iw) * c;
                            let xs = &xi[base..base + c];
                            if first {
                                o.copy_from_slice(xs);
                                indices_from(a, base as u32);
                                first = false;
                            } else {
                                select_greater(o, a, xs, base as u32);
                            }
                        }
                    }
                    // (a window wholly in the padding, which Keras' 'same'
                    // never makes, would be 0 with its gradient at 0)
                    if first {
                        o.fill(0.0);
                        a.fill(0);
                    }
                }
            };
            if pairs.len() > 1 && olen >= parallel::PAR_THRESHOLD {
                use rayon::prelude::*;
                crate::threads::install(|| {
                    pairs
                        .par_iter_mut()
                        .enumerate()
                        .for_each(|(i, p)| work(i, p))
                });
            } else {
                pairs.iter_mut().enumerate().for_each(|(i, p)| work(i, p));
            }
        }
        let per_out_img = g.out_h * g.out_w * c;
        let tiled = g.unpadded() && g.sh == g.kh && g.sw == g.kw;
        Ok(Tensor::from_op(out, shape, OP, &[self], move |gr| {
            if tiled {
                // every element is written by `max_pool_tiled_backward`
                let mut dx = buffers::dirty(n * img);
                parallel::for_each_chunk_mut(&mut dx, img.max(1), |b, d| {
                    let r = b * per_out_img..(b + 1) * per_out_img;
                    max_pool_tiled_backward(&g, c, &arg[r.clone()], &gr[r], d);
                });
                buffers::recycle_u32(arg);
                return vec![Some(dx)];
            }
            let mut dx = buffers::zeroed(n * img);
            parallel::for_each_chunk_mut(&mut dx, img.max(1), |b, d| {
                let r = b * per_out_img..(b + 1) * per_out_img;
                for (&i, &gv) in arg[r.clone()].iter().zip(&gr[r]) {
                    d[i as usize] += gv;
                }
            });
            buffers::recycle_u32(arg);
            vec![Some(dx)]
        }))
    }

    /// Keras `AveragePooling2D` on NHWC input: the mean of the real cells of each window.
    pub fn avg_pool2d(
        &self,
        pool_size: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<Tensor> {
        const OP: &str = "avg_pool2d";
        let (n, c, g) = pool_geometry(OP, self.shape(), pool_size, strides, padding)?;
        let img = g.in_h * g.in_w * c;
        let mut out = buffers::zeroed(n * g.out_h * g.out_w * c);
        {
            let x = self.data();
            parallel::for_each_chunk_mut(&mut out, (g.out_w * c).max(1), |idx, row| {
                let (b, oh) = (idx / g.out_h, idx % g.out_h);
                let xi = &x[b * img..(b + 1) * img];
                for ow in 0..g.out_w {
                    let o = &mut row[ow * c..(ow + 1) * c];
                    for ki in 0..g.kh {
                        let Some(ih) = g.in_row(oh, ki) else { continue };
                        for kj in 0..g.kw {
                            let Some(iw) = g.in_col(ow, kj) else { continue };
                            let xs = &xi[(ih * g.in_w + iw) * c..][..c];
                            o.iter_mut().zip(xs).for_each(|(o, v)| *o += v);
                        }
                    }
                    let inv = 1.0 / window_count(&g, oh, ow).max(1) as f32;
                    o.iter_mut().for_each(|v| *v *= inv);
                }
            });
        }
        let shape = vec![n, g.out_h, g.out_w, c];
        Ok(Tensor::from_op(out, shape, OP, &[self], move |gr| {
            let mut dx = buffers::zeroed(n * img);
            parallel::for_each_chunk_mut(&mut dx, (g.in_w * c).max(1), |idx, row| {
                let (b, ih) = (idx / g.in_h, idx % g.in_h);
                for ki in 0..g.kh {
                    let Some(oh) = g.out_row(ih, ki) else {
                        continue;
                    };
                    for iw in 0..g.in_w {
                        let d = &mut row[iw * c..(iw + 1) * c];
                        for kj in 0..g.kw {
                            let Some(ow) = g.out_col(iw, kj) else {
                                continue;
                            };
                            let inv = 1.0 / window_count(&g, oh, ow).max(1) as f32;
                            let gs = &gr[((b * g.out_h + oh) * g.out_w + ow) * c..][..c];
                            d.iter_mut().zip(gs).for_each(|(d, gv)| *d += gv * inv);
                        }
                    }
                }
            });
            vec![Some(dx)]
        }))
    }

    /// Keras `GlobalAveragePooling2D`: the mean over height and width,
    /// (N, H, W, C) -> (N, C), or (N, 1, 1, C) with `keepdims`.
    pub fn global_avg_pool2d(&self, keepdims: bool) -> Result<Tensor> {
        const OP: &str = "global_avg_pool2d";
        let (n, h, w, c) = nhwc(OP, self.shape())?;
        let hw = h * w;
        if hw == 0 {
            return Err(CoreError::shape(
                OP,
                "a non-empty spatial extent",
                fmt_shape(self.shape()),
            ));
        }
        let inv = 1.0 / hw as f32;
        let mut out = buffers::zeroed(n * c);
        {
            let x = self.data();
            parallel::for_each_chunk_mut(&mut out, c.max(1), |b, o| {
                for px in x[b * hw * c..(b + 1) * hw * c].chunks(c.max(1)) {
                    o.iter_mut().zip(px).for_each(|(o, v)| *o += v);
                }
                o.iter_mut().for_each(|v| *v *= inv);
            });
        }
        let shape = if keepdims {
            vec![n, 1, 1, c]
        } else {
            vec![n, c]
        };
        Ok(Tensor::from_op(out, shape, OP, &[self], move |gr| {
            let mut dx = buffers::zeroed(n * hw * c);
            parallel::for_each_chunk_mut(&mut dx, (hw * c).max(1), |b, d| {
                let gs = &gr[b * c..(b + 1) * c];
                for px in d.chunks_mut(c.max(1)) {
                    px.iter_mut().zip(gs).for_each(|(d, g)| *d = g * inv);
                }
            });
            vec![Some(dx)]
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::rng::Rng;

    /// With nothing to backpropagate into, max pooling skips the winners'
    /// indices: the values are bitwise those of the recorded path, ties, NaN
    /// and infinities included, padded or not, tiled or overlapping.
    #[test]
    fn untracked_max_pool_is_bitwise_the_tracked_one() {
        let mut rng = Rng::new(9);
        let mut v: Vec<f32> = (0..2 * 9 * 10 * 5).map(|_| rng.normal().round()).collect();
        v[7] = f32::NAN;
        v[40] = f32::INFINITY;
        v[41] = f32::NEG_INFINITY;
        let x = Tensor::from_vec(v, &[2, 9, 10, 5]).unwrap();
        for (pool, strides, padding) in [
            ((3, 3), (2, 2), Padding::Same),
            ((2, 2), (2, 2), Padding::Valid),
            ((3, 2), (1, 2), Padding::Valid),
            ((2, 3), (3, 1), Padding::Same),
        ] {
            let tracked = x.clone().requires_grad_(true);
            let want = tracked.max_pool2d(pool, strides, padding).unwrap();
            let got = crate::no_grad(|| x.max_pool2d(pool, strides, padding)).unwrap();
            assert!(!got.requires_grad());
            let bits = |t: &Tensor| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{pool:?} {strides:?} {padding:?}");
            assert_eq!(got.shape(), want.shape());
        }
    }

    /// Distinct values spaced 0.1 apart, shuffled: no ties, and gradcheck's ±0.01
    /// perturbation never changes a window's winner.
    fn spaced(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - n as f32 * 0.05).collect();
        Rng::new(seed).shuffle(&mut v);
        Tensor::from_vec(v, shape).unwrap()
    }

    /// Oracle: windows enumerated with signed indices; `None` cells are padding.
    fn pool_reference(x: &Tensor, g: &Geometry2d, max: bool) -> Vec<f32> {
        let (n, h, w, c) = nhwc("t", x.shape()).unwrap();
        let d = x.data();
        let mut out = Vec::new();
        for b in 0..n {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    for ch in 0..c {
                        let mut vals = Vec::new();
                        for ki in 0..g.kh {
                            for kj in 0..g.kw {
                                let ih = (oh * g.sh + ki) as isize - g.pad_top as isize;
                                let iw = (ow * g.sw + kj) as isize - g.pad_left as isize;
                                if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < w {
                                    vals.push(
                                        d[((b * h + ih as usize) * w + iw as usize) * c + ch],
                                    );
                                }
                            }
                        }
                        out.push(if max {
                            vals.iter().cloned().fold(f32::NEG_INFINITY, f32::max)
                        } else {
                            vals.iter().sum::<f32>() / vals.len() as f32
                        });
                    }
                }
            }
        }
        out
    }

    #[test]
    fn match_reference_on_random_configs() {
        let mut rng = Rng::new(41);
        for case in 0..60 {
            let k = (1 + rng.below(3), 1 + rng.below(3));
            let s = (1 + rng.below(3), 1 + rng.below(3));
            let padding = match rng.below(3) {
                0 => Padding::Valid,
                1 => Padding::Same,
                _ => Padding::Explicit {
                    top: rng.below(k.0),
                    bottom: rng.below(k.0),
                    left: rng.below(k.1),
                    right: rng.below(k.1),
                },
            };
            let shape = [
                1 + rng.below(2),
                k.0 + rng.below(5),
                k.1 + rng.below(5),
                1 + rng.below(3),
            ];
            let x = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
            let (_, _, g) = pool_geometry("t", &shape, k, s, padding).unwrap();
            let mp = x.max_pool2d(k, s, padding).unwrap();
            assert_eq!(mp.shape(), &[shape[0], g.out_h, g.out_w, shape[3]]);
            assert_eq!(mp.to_vec(), pool_reference(&x, &g, true), "max case {case}");
            let ap = x.avg_pool2d(k, s, padding).unwrap();
            assert!(
                ap.allclose(
                    &Tensor::from_vec(pool_reference(&x, &g, false), ap.shape()).unwrap(),
                    1e-5,
                    1e-6
                ),
                "avg case {case}"
            );
        }
    }

    /// The max-pool gradient (fast tiled and general paths) against a loop oracle:
    /// each window's first maximum gets the window's output gradient. Small integer
    /// inputs make ties common.
    #[test]
    fn max_gradient_matches_oracle_with_ties() {
        let mut rng = Rng::new(77);
        for case in 0..40 {
            let k = (1 + rng.below(3), 1 + rng.below(3));
            let s = if case % 2 == 0 {
                k
            } else {
                (1 + rng.below(3), 1 + rng.below(3))
            };
            let shape = [
                1 + rng.below(3),
                k.0 + rng.below(6),
                k.1 + rng.below(6),
                1 + rng.below(9),
            ];
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.below(4) as f32).collect();
            let x = Tensor::from_vec(v.clone(), &shape)
                .unwrap()
                .requires_grad_(true);
            let y = x.max_pool2d(k, s, Padding::Valid).unwrap();
            let dy: Vec<f32> = (0..y.numel()).map(|_| rng.normal()).collect();
            let dyt = Tensor::from_vec(dy.clone(), y.shape()).unwrap();
            y.mul(&dyt).unwrap().sum_all().backward().unwrap();
            let (_, _, g) = pool_geometry("t", &shape, k, s, Padding::Valid).unwrap();
            let (h, w, c) = (shape[1], shape[2], shape[3]);
            let mut want = vec![0.0f32; n];
            for b in 0..shape[0] {
                for oh in 0..g.out_h {
                    for ow in 0..g.out_w {
                        for ch in 0..c {
                            let mut best: Option<(usize, f32)> = None;
                            for ki in 0..k.0 {
                                for kj in 0..k.1 {
                                    let i = ((b * h + oh * s.0 + ki) * w + ow * s.1 + kj) * c + ch;
                                    if best.is_none_or(|(_, bv)| v[i] > bv) {
                                        best = Some((i, v[i]));
                                    }
                                }
                            }
                            let o = ((b * g.out_h + oh) * g.out_w + ow) * c + ch;
                            want[best.unwrap().0] += dy[o];
                        }
                    }
                }
            }
            assert_eq!(x.grad().unwrap().to_vec(), want, "case {case}");
        }
    }

    #[test]
    fn same_padding_never_wins_and_divides_by_real_cells() {
        let x = Tensor::from_vec(vec![-5.0, -6.0, -7.0, -8.0], &[1, 2, 2, 1]).unwrap();
        // 3x3 'same' stride 1: every window sees padding; max stays a real value
        assert_eq!(
            x.max_pool2d((3, 3), (1, 1), Padding::Same)
                .unwrap()
                .to_vec(),
            vec![-5.0; 4]
        );
        // 2x2 'same' stride 1 on 2x2: bottom-right window holds one real cell
        let a = x
            .avg_pool2d((2, 2), (1, 1), Padding::Same)
            .unwrap()
            .to_vec();
        assert_eq!(a, vec![-6.5, -7.0, -7.5, -8.0]);
    }

    #[test]
    fn max_gradient_goes_to_first_maximum_on_ties() {
        let x = Tensor::from_vec(vec![1.0, 3.0, 3.0, 0.0], &[1, 2, 2, 1])
            .unwrap()
            .requires_grad_(true);
        x.max_pool2d((2, 2), (2, 2), Padding::Valid)
            .unwrap()
            .sum_all()
            .backward()
            .unwrap();
        assert_eq!(x.grad().unwrap().to_vec(), vec![0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn gradients_max_and_avg_same_valid_explicit() {
        let x = spaced(&[2, 5, 4, 2], 1);
        let configs = [
            ((2, 2), (2, 2), Padding::Valid),
            ((3, 3), (2, 2), Padding::Same),
            ((2, 3), (1, 2), Padding::Same),
            ((3, 3), (2, 2), Padding::symmetric(1)),
        ];
        for (k, s, p) in configs {
            check_gradients(std::slice::from_ref(&x), |t| t[0].max_pool2d(k, s, p));
            check_gradients(std::slice::from_ref(&x), |t| t[0].avg_pool2d(k, s, p));
        }
        check_gradients(std::slice::from_ref(&x), |t| t[0].global_avg_pool2d(false));
        check_gradients(std::slice::from_ref(&x), |t| t[0].global_avg_pool2d(true));
    }

    #[test]
    fn global_average_shapes_and_values() {
        let x = Tensor::arange(12).reshape(&[1, 2, 3, 2]).unwrap();
        let y = x.global_avg_pool2d(false).unwrap();
        assert_eq!(y.shape(), &[1, 2]);
        assert_eq!(y.to_vec(), vec![5.0, 6.0]);
        assert_eq!(x.global_avg_pool2d(true).unwrap().shape(), &[1, 1, 1, 2]);
        assert!(Tensor::zeros(&[2, 3]).global_avg_pool2d(false).is_err());
    }

    #[test]
    fn torchvision_stem_pool_and_errors() {
        let x = Tensor::zeros(&[1, 112, 112, 2]);
        let y = x.max_pool2d((3, 3), (2, 2), Padding::symmetric(1)).unwrap();
        assert_eq!(y.shape(), &[1, 56, 56, 2]);
        let e = x
            .max_pool2d((3, 3), (2, 2), Padding::symmetric(3))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_pool2d") && e.contains("padding"), "{e}");
        let e = Tensor::zeros(&[1, 2, 2, 1])
            .avg_pool2d((3, 3), (1, 1), Padding::Valid)
            .unwrap_err()
            .to_string();
        assert!(e.contains("avg_pool2d") && e.contains("(2, 2)"), "{e}");
        assert!(Tensor::zeros(&[2, 2, 1])
            .max_pool2d((1, 1), (1, 1), Padding::Valid)
            .is_err());
        assert!(x.max_pool2d((2, 2), (0, 2), Padding::Valid).is_err());
        let empty = Tensor::zeros(&[0, 4, 4, 2]).requires_grad_(true);
        let y = empty.max_pool2d((2, 2), (2, 2), Padding::Same).unwrap();
        assert_eq!(y.shape(), &[0, 2, 2, 2]);
        let z = empty.avg_pool2d((2, 2), (2, 2), Padding::Same).unwrap();
        y.sum_all().add(&z.sum_all()).unwrap().backward().unwrap();
    }
}
