//! Seeded augmentation of NHWC batches: random horizontal flip, random crop
//! after zero padding, per-channel normalisation. Every random choice comes
//! from the given `Rng`, in sample order, so the same generator state gives
//! the same batch.

use strata_core::{fmt_shape, Rng, Tensor};

use crate::error::{DataError, Result};

fn nhwc(t: &Tensor, what: &str) -> Result<(usize, usize, usize, usize)> {
    match *t.shape() {
        [n, h, w, c] => Ok((n, h, w, c)),
        _ => Err(DataError::shape(
            what,
            "an NHWC batch (N, H, W, C)",
            fmt_shape(t.shape()),
        )),
    }
}

/// Flips each image left-right with probability 1/2.
pub fn random_flip_horizontal(batch: &Tensor, rng: &mut Rng) -> Result<Tensor> {
    let (n, h, w, c) = nhwc(batch, "random_flip_horizontal")?;
    let src = batch.data();
    let mut out = src.clone();
    let img = h * w * c;
    for i in 0..n {
        if rng.uniform(0.0, 1.0) < 0.5 {
            for y in 0..h {
                let row = i * img + y * w * c;
                for x in 0..w {
                    let s = row + (w - 1 - x) * c;
                    let d = row + x * c;
                    out[d..d + c].copy_from_slice(&src[s..s + c]);
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, batch.shape())?)
}

/// Pads each image with `pad` zeros on every side, then crops an H×W window
/// at a random offset in `0..=2*pad` per axis (the CIFAR-style random crop).
pub fn random_crop_with_padding(batch: &Tensor, pad: usize, rng: &mut Rng) -> Result<Tensor> {
    let (n, h, w, c) = nhwc(batch, "random_crop_with_padding")?;
    if pad == 0 {
        return Ok(Tensor::from_vec(batch.to_vec(), batch.shape())?);
    }
    let src = batch.data();
    let img = h * w * c;
    let mut out = vec![0.0f32; src.len()];
    for i in 0..n {
        // Offsets into the padded image; the source pixel is (y + dy - pad).
        let dy = rng.below(2 * pad + 1);
        let dx = rng.below(2 * pad + 1);
        for y in 0..h {
            let sy = y + dy;
            if sy < pad || sy - pad >= h {
                continue;
            }
            let sy = sy - pad;
            for x in 0..w {
                let sx = x + dx;
                if sx < pad || sx - pad >= w {
                    continue;
                }
                let sx = sx - pad;
                let s = i * img + (sy * w + sx) * c;
                let d = i * img + (y * w + x) * c;
                out[d..d + c].copy_from_slice(&src[s..s + c]);
            }
        }
    }
    Ok(Tensor::from_vec(out, batch.shape())?)
}

/// `(x - mean[c]) / std[c]` per channel; `mean` and `std` have C entries
/// (or one entry, broadcast), and every std must be positive.
pub fn normalize(batch: &Tensor, mean: &[f32], std: &[f32]) -> Result<Tensor> {
    let (_, _, _, c) = nhwc(batch, "normalize")?;
    let what = "normalize";
    for (field, v) in [("mean", mean), ("std", std)] {
        if v.len() != c && v.len() != 1 {
            return Err(DataError::shape(
                format!("{what} {field}"),
                format!("{c} values (one per channel) or 1"),
                format!("{} values", v.len()),
            ));
        }
    }
    if let Some(s) = std
        .iter()
        .find(|s| s.is_nan() || **s <= 0.0 || s.is_infinite())
    {
        return Err(DataError::arg(what, "std", format!("{s} is not positive")));
    }
    let pick = |v: &[f32], ch: usize| if v.len() == 1 { v[0] } else { v[ch] };
    let inv: Vec<f32> = (0..c).map(|ch| 1.0 / pick(std, ch)).collect();
    let m: Vec<f32> = (0..c).map(|ch| pick(mean, ch)).collect();
    let out: Vec<f32> = batch
        .data()
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let ch = i % c;
            (x - m[ch]) * inv[ch]
        })
        .collect();
    Ok(Tensor::from_vec(out, batch.shape())?)
}

/// A composed augmentation: crop, then flip, then normalise (each optional).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Augment {
    /// Randomly flip left-right.
    pub flip_horizontal: bool,
    /// Zero padding before the random crop (0 = no crop).
    pub crop_padding: usize,
    /// Per-channel (mean, std) normalisation.
    pub normalize: Option<(Vec<f32>, Vec<f32>)>,
}

impl Augment {
    /// Applies the configured steps to an NHWC batch.
    pub fn apply(&self, batch: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let mut x = batch.clone();
        if self.crop_padding > 0 {
            x = random_crop_with_padding(&x, self.crop_padding, rng)?;
        }
        if self.flip_horizontal {
            x = random_flip_horizontal(&x, rng)?;
        }
        if let Some((mean, std)) = &self.normalize {
            x = normalize(&x, mean, std)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize, h: usize, w: usize, c: usize) -> Tensor {
        let v = (0..n * h * w * c).map(|i| i as f32 + 1.0).collect();
        Tensor::from_vec(v, &[n, h, w, c]).unwrap()
    }

    #[test]
    fn flip_is_seeded_and_mirrors() {
        let x = batch(16, 2, 3, 2);
        let a = random_flip_horizontal(&x, &mut Rng::new(1)).unwrap();
        let b = random_flip_horizontal(&x, &mut Rng::new(1)).unwrap();
        assert_eq!(a.to_vec(), b.to_vec());
        let (xa, av) = (x.to_vec(), a.to_vec());
        let img = 12;
        let mut flipped = 0;
        for i in 0..16 {
            let s = &xa[i * img..(i + 1) * img];
            let o = &av[i * img..(i + 1) * img];
            if s != o {
                flipped += 1;
                // Row 0: pixels (x=0,1,2) → (2,1,0), channels kept in order.
                assert_eq!(&o[0..2], &s[4..6]);
                assert_eq!(&o[4..6], &s[0..2]);
            }
        }
        assert!(flipped > 0 && flipped < 16);
        // Flipping twice with the same choices is the identity.
        let mut r1 = Rng::new(5);
        let mut r2 = Rng::new(5);
        let once = random_flip_horizontal(&x, &mut r1).unwrap();
        let twice = random_flip_horizontal(&once, &mut r2).unwrap();
        assert_eq!(twice.to_vec(), x.to_vec());
    }

    #[test]
    fn crop_keeps_shape_and_shifts() {
        let x = batch(8, 4, 4, 1);
        let a = random_crop_with_padding(&x, 2, &mut Rng::new(3)).unwrap();
        assert_eq!(a.shape(), x.shape());
        let b = random_crop_with_padding(&x, 2, &mut Rng::new(3)).unwrap();
        assert_eq!(a.to_vec(), b.to_vec());
        // Every output value is 0 (padding) or a value of the same image.
        let (xv, av) = (x.to_vec(), a.to_vec());
        for i in 0..8 {
            let src = &xv[i * 16..(i + 1) * 16];
            for v in &av[i * 16..(i + 1) * 16] {
                assert!(*v == 0.0 || src.contains(v));
            }
        }
        assert_eq!(
            random_crop_with_padding(&x, 0, &mut Rng::new(0))
                .unwrap()
                .to_vec(),
            xv
        );
    }

    #[test]
    fn normalize_per_channel() {
        let x = Tensor::from_vec(vec![1.0, 10.0, 3.0, 30.0], &[1, 1, 2, 2]).unwrap();
        let y = normalize(&x, &[1.0, 10.0], &[2.0, 10.0]).unwrap();
        assert_eq!(y.to_vec(), vec![0.0, 0.0, 1.0, 2.0]);
        assert!(normalize(&x, &[0.0; 3], &[1.0; 3]).is_err());
        assert!(normalize(&x, &[0.0], &[0.0]).is_err());
        assert!(normalize(&Tensor::zeros(&[2, 2]), &[0.0], &[1.0]).is_err());
    }

    #[test]
    fn composed_is_deterministic() {
        let aug = Augment {
            flip_horizontal: true,
            crop_padding: 1,
            normalize: Some((vec![0.5], vec![0.25])),
        };
        let x = batch(4, 3, 3, 3);
        let a = aug.apply(&x, &mut Rng::new(9)).unwrap();
        let b = aug.apply(&x, &mut Rng::new(9)).unwrap();
        assert_eq!(a.to_vec(), b.to_vec());
        assert_eq!(a.shape(), &[4, 3, 3, 3]);
    }
}
