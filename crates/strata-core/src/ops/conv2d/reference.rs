//! The slow, obvious convolution: nested loops summing in f64, with explicit
//! padding checks. Every algorithm is tested against it.

use crate::ops::padding::Geometry2d;

/// The obviously-correct oracle: seven nested loops, f64 sums, explicit padding checks.
pub fn conv_reference(
    x: &[f32],
    xs: (usize, usize, usize, usize),
    w: &[f32],
    ks: (usize, usize, usize, usize),
    bias: Option<&[f32]>,
    g: &Geometry2d,
    groups: usize,
) -> Vec<f32> {
    let (n, h, wd, c) = xs;
    let (kh, kw, cin_g, cout) = ks;
    let cout_g = cout / groups;
    let mut out = vec![0.0; n * g.out_h * g.out_w * cout];
    for b in 0..n {
        for oh in 0..g.out_h {
            for ow in 0..g.out_w {
                for o in 0..cout {
                    let gr = o / cout_g;
                    let mut s = bias.map_or(0.0, |b| b[o] as f64);
                    for ki in 0..kh {
                        for kj in 0..kw {
                            let ih = (oh * g.sh + ki * g.dh) as isize - g.pad_top as isize;
                            let iw = (ow * g.sw + kj * g.dw) as isize - g.pad_left as isize;
                            if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                continue;
                            }
                            for ci in 0..cin_g {
                                let xc = gr * cin_g + ci;
                                let xv = x[((b * h + ih as usize) * wd + iw as usize) * c + xc];
                                let wv = w[((ki * kw + kj) * cin_g + ci) * cout + o];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out[((b * g.out_h + oh) * g.out_w + ow) * cout + o] = s as f32;
                }
            }
        }
    }
    out
}
