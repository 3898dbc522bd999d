//! One image file to one input sample, with torchvision's usual transforms:
//! decode, then for training a random resized crop, a horizontal flip and
//! colour jitter, for validation and prediction a resize and centre crop;
//! then scale to [0, 1] and normalise per channel.
//!
//! Crops and resizes are one step: the chosen box of the source is resampled
//! straight to the output size with a triangle filter whose support widens
//! with the scale (PIL's antialiased bilinear), so a large photo shrinks
//! without aliasing and nothing is resized twice.

use strata_core::Rng;

/// ImageNet's per-channel mean, for torchvision weights.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A decoded image: 8-bit samples, row-major HWC with 1 or 3 channels.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

/// Decodes PNG or JPEG bytes to `channels` (1: luminance, 3: RGB). Alpha is
/// dropped and 16-bit samples are reduced to 8 bits, as PIL's
/// `convert("RGB")` does.
pub fn decode_image(bytes: &[u8], channels: usize) -> Result<DecodedImage, String> {
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    if width == 0 || height == 0 {
        return Err("the image has no pixels".to_string());
    }
    let pixels = match channels {
        1 => img.into_luma8().into_raw(),
        3 => img.into_rgb8().into_raw(),
        c => return Err(format!("{c} channels asked for: 1 or 3 are decoded")),
    };
    Ok(DecodedImage {
        height,
        width,
        channels,
        pixels,
    })
}

/// torchvision's `RandomResizedCrop`: a box of `scale` of the area and
/// aspect ratio in `ratio` (drawn log-uniformly), resized to the output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomResizedCrop {
    pub scale: (f32, f32),
    pub ratio: (f32, f32),
}

impl Default for RandomResizedCrop {
    /// torchvision's defaults: 8% to 100% of the area, ratio 3/4 to 4/3.
    fn default() -> Self {
        RandomResizedCrop {
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }
}

/// torchvision's `ColorJitter`: factors drawn uniformly from
/// `[max(0, 1 - b), 1 + b]` (hue: a shift in `[-hue, hue]` of a turn),
/// applied in a random order.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ColorJitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    /// At most 0.5.
    pub hue: f32,
}

/// The random part of a training transform.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Augmentation {
    /// Random resized crop; without it the whole image is resized.
    pub crop: Option<RandomResizedCrop>,
    /// Flip left-right with probability 1/2.
    pub flip_horizontal: bool,
    pub jitter: Option<ColorJitter>,
}

impl Augmentation {
    /// torchvision's ImageNet training recipe: random resized crop and flip.
    pub fn standard() -> Self {
        Augmentation {
            crop: Some(RandomResizedCrop::default()),
            flip_horizontal: true,
            jitter: None,
        }
    }
}

/// How an image becomes one sample of (height, width, channels).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTransform {
    pub height: usize,
    pub width: usize,
    /// 1 (greyscale) or 3 (RGB).
    pub channels: usize,
    /// Without augmentation: the centre crop's side as a fraction of the
    /// resized image (1.0 resizes the whole image to the output, 0.875 is
    /// torchvision's 224 of 256).
    pub crop_fraction: f32,
    /// Random transforms for training; `None` for validation and prediction.
    pub augment: Option<Augmentation>,
    /// Per-channel mean and standard deviation after scaling to [0, 1]
    /// (one value or one per channel).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl ImageTransform {
    /// Resize the whole image to (height, width), scale to [0, 1], nothing else.
    pub fn resize(height: usize, width: usize, channels: usize) -> Self {
        ImageTransform {
            height,
            width,
            channels,
            crop_fraction: 1.0,
            augment: None,
            mean: vec![0.0],
            std: vec![1.0],
        }
    }

    /// Checks the sizes, fractions and normalisation; says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.height == 0 || self.width == 0 {
            return Err(format!(
                "output size {}x{} is empty",
                self.height, self.width
            ));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(format!("{} channels: 1 or 3 are supported", self.channels));
        }
        if !(self.crop_fraction > 0.0 && self.crop_fraction <= 1.0) {
            return Err(format!(
                "crop fraction {} is not in (0, 1]",
                self.crop_fraction
            ));
        }
        for (what, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != 1 && v.len() != self.channels {
                return Err(format!(
                    "{what} has {} values for {} channels",
                    v.len(),
                    self.channels
                ));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(format!("{what} holds a non-finite value"));
            }
        }
        if self.std.iter().any(|s| *s <= 0.0) {
            return Err("std must be positive".to_string());
        }
        if let Some(a) = &self.augment {
            if let Some(c) = a.crop {
                let (s0, s1) = c.scale;
                let (r0, r1) = c.ratio;
                if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
                    return Err(format!("crop scale ({s0}, {s1}) is not within (0, 1]"));
                }
                if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
                    return Err(format!("crop ratio ({r0}, {r1}) is not a positive range"));
                }
            }
            if let Some(j) = a.jitter {
                let all = [j.brightness, j.contrast, j.saturation, j.hue];
                if all.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
                    return Err("colour jitter amounts must be non-negative".to_string());
                }
                if j.hue > 0.5 {
                    return Err(format!("hue jitter {} is over 0.5", j.hue));
                }
            }
        }
        Ok(())
    }

    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Transforms one decoded image into `out` (`sample_len` values). Every
    /// random choice comes from `rng`, in a fixed order.
    pub fn apply_into(&self, img: &DecodedImage, rng: &mut Rng, out: &mut [f32]) {
        debug_assert_eq!(img.channels, self.channels);
        let (oh, ow, c) = (self.height, self.width, self.channels);
        let crop_box = match self.augment.as_ref().and_then(|a| a.crop) {
            Some(crop) => random_box(img.height, img.width, crop, rng),
            None if self.augment.is_some() => whole(img),
            None => centre_box(img.height, img.width, oh, ow, self.crop_fraction),
        };
        resample(img, crop_box, oh, ow, out);
        if let Some(a) = &self.augment {
            if a.flip_horizontal && rng.uniform(0.0, 1.0) < 0.5 {
                flip_rows(out, ow, c);
            }
            if let Some(j) = a.jitter {
                jitter(out, c, j, rng);
            }
        }
        let pick = |v: &[f32], ch: usize| if v.len() == 1 { v[0] } else { v[ch] };
        let shift: Vec<f32> = (0..c).map(|ch| pick(&self.mean, ch)).collect();
        let inv: Vec<f32> = (0..c).map(|ch| 1.0 / pick(&self.std, ch)).collect();
        if shift.iter().any(|m| *m != 0.0) || inv.iter().any(|s| *s != 1.0) {
            for px in out.chunks_exact_mut(c) {
                for ((v, m), s) in px.iter_mut().zip(&shift).zip(&inv) {
                    *v = (*v - m) * s;
                }
            }
        }
    }

    /// Transforms one image into a new vector.
    pub fn apply(&self, img: &DecodedImage, rng: &mut Rng) -> Vec<f32> {
        let mut out = vec![0.0; self.sample_len()];
        self.apply_into(img, rng, &mut out);
        out
    }
}

/// A box of the source in pixels: top, left, height, width.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CropBox {
    top: f32,
    left: f32,
    height: f32,
    width: f32,
}

fn whole(img: &DecodedImage) -> CropBox {
    CropBox {
        top: 0.0,
        left: 0.0,
        height: img.height as f32,
        width: img.width as f32,
    }
}

/// torchvision's `Resize(shorter side)` then `CenterCrop`, as one box: the
/// shorter side is scaled to `min(oh, ow) / fraction`, and the output's
/// size is cut from the middle.
fn centre_box(h: usize, w: usize, oh: usize, ow: usize, fraction: f32) -> CropBox {
    if fraction >= 1.0 {
        return CropBox {
            top: 0.0,
            left: 0.0,
            height: h as f32,
            width: w as f32,
        };
    }
    let scale = (oh.min(ow) as f32 / fraction) / h.min(w) as f32;
    let bh = (oh as f32 / scale).min(h as f32);
    let bw = (ow as f32 / scale).min(w as f32);
    CropBox {
        top: (h as f32 - bh) / 2.0,
        left: (w as f32 - bw) / 2.0,
        height: bh,
        width: bw,
    }
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a box of
/// random area and aspect ratio that fits, else the centre box of the
/// ratio range nearest the image's own.
fn random_box(h: usize, w: usize, crop: RandomResizedCrop, rng: &mut Rng) -> CropBox {
    let area = (h * w) as f32;
    let (lr0, lr1) = (crop.ratio.0.ln(), crop.ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.uniform(crop.scale.0, crop.scale.1);
        let ratio = rng.uniform(lr0, lr1).exp();
        let bw = (target * ratio).sqrt().round() as usize;
        let bh = (target / ratio).sqrt().round() as usize;
        if bw > 0 && bh > 0 && bw <= w && bh <= h {
            let top = rng.below(h - bh + 1);
            let left = rng.below(w - bw + 1);
            return CropBox {
                top: top as f32,
                left: left as f32,
                height: bh as f32,
                width: bw as f32,
            };
        }
    }
    let in_ratio = w as f32 / h as f32;
    let (bw, bh) = if in_ratio < crop.ratio.0 {
        (w as f32, (w as f32 / crop.ratio.0).round())
    } else if in_ratio > crop.ratio.1 {
        ((h as f32 * crop.ratio.1).round(), h as f32)
    } else {
        (w as f32, h as f32)
    };
    let (bw, bh) = (bw.clamp(1.0, w as f32), bh.clamp(1.0, h as f32));
    CropBox {
        top: ((h as f32 - bh) / 2.0).floor(),
        left: ((w as f32 - bw) / 2.0).floor(),
        height: bh,
        width: bw,
    }
}

/// The source pixels and weights that make each output pixel along one axis.
fn taps(src_len: usize, start: f32, len: f32, out_len: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = len / out_len as f32;
    let support = scale.max(1.0);
    (0..out_len)
        .map(|o| {
            let centre = start + (o as f32 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0) as usize).min(src_len - 1);
            let hi = ((centre + support).ceil().max(0.0) as usize).clamp(lo + 1, src_len);
            let mut w: Vec<f32> = (lo..hi)
                .map(|i| (1.0 - ((i as f32 + 0.5 - centre) / support).abs()).max(0.0))
                .collect();
            let sum: f32 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|x| *x /= sum);
            } else {
                // The box lies past the last pixel: take the nearest.
                w.iter_mut().for_each(|x| *x = 0.0);
                let near = ((centre - 0.5).round().max(0.0) as usize).clamp(lo, hi - 1);
                w[near - lo] = 1.0;
            }
            (lo, w)
        })
        .collect()
}

/// Resamples `b` of `img` to (oh, ow), scaled to [0, 1]: rows first, then
/// columns.
fn resample(img: &DecodedImage, b: CropBox, oh: usize, ow: usize, out: &mut [f32]) {
    let c = img.channels;
    let xs = taps(img.width, b.left, b.width, ow);
    let ys = taps(img.height, b.top, b.height, oh);
    let y_lo = ys.iter().map(|(lo, _)| *lo).min().unwrap_or(0);
    let y_hi = ys.iter().map(|(lo, w)| lo + w.len()).max().unwrap_or(0);
    let row = ow * c;
    let mut tmp = vec![0.0f32; (y_hi - y_lo) * row];
    let mut line = vec![0.0f32; img.width * c];
    for (y, dst) in (y_lo..y_hi).zip(tmp.chunks_exact_mut(row)) {
        let src = &img.pixels[y * img.width * c..(y + 1) * img.width * c];
        for (f, v) in line.iter_mut().zip(src) {
            *f = *v as f32;
        }
        if c == 3 {
            // RGB, the common case: three sums in registers per output pixel
            for ((lo, w), px) in xs.iter().zip(dst.chunks_exact_mut(3)) {
                let taps = &line[lo * 3..(lo + w.len()) * 3];
                let (mut r, mut g, mut b) = (0.0f32, 0.0f32, 0.0f32);
                for (wk, s) in w.iter().zip(taps.chunks_exact(3)) {
                    r += wk * s[0];
                    g += wk * s[1];
                    b += wk * s[2];
                }
                px[0] = r;
                px[1] = g;
                px[2] = b;
            }
        } else {
            for ((lo, w), px) in xs.iter().zip(dst.chunks_exact_mut(c)) {
                for (k, wk) in w.iter().enumerate() {
                    let s = &line[(lo + k) * c..(lo + k + 1) * c];
                    for (p, v) in px.iter_mut().zip(s) {
                        *p += wk * v;
                    }
                }
            }
        }
    }
    for ((lo, w), dst) in ys.iter().zip(out.chunks_exact_mut(row)) {
        dst.iter_mut().for_each(|v| *v = 0.0);
        for (k, wk) in w.iter().enumerate() {
            let src = &tmp[(lo + k - y_lo) * row..(lo + k - y_lo + 1) * row];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += wk * s;
            }
        }
        dst.iter_mut()
            .for_each(|v| *v = (*v * (1.0 / 255.0)).clamp(0.0, 1.0));
    }
}

fn flip_rows(out: &mut [f32], w: usize, c: usize) {
    for row in out.chunks_exact_mut(w * c) {
        for x in 0..w / 2 {
            for ch in 0..c {
                row.swap(x * c + ch, (w - 1 - x) * c + ch);
            }
        }
    }
}

fn luma(px: &[f32]) -> f32 {
    if px.len() == 3 {
        0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]
    } else {
        px[0]
    }
}

fn factor(amount: f32, rng: &mut Rng) -> Option<f32> {
    (amount > 0.0).then(|| rng.uniform((1.0 - amount).max(0.0), 1.0 + amount))
}

/// torchvision's `ColorJitter` on [0, 1] values: the four factors drawn in
/// a random order, each applied as a blend and clamped.
fn jitter(out: &mut [f32], c: usize, j: ColorJitter, rng: &mut Rng) {
    let mut order = [0usize, 1, 2, 3];
    rng.shuffle(&mut order);
    let b = factor(j.brightness, rng);
    let k = factor(j.contrast, rng);
    let s = factor(j.saturation, rng);
    let h = (j.hue > 0.0).then(|| rng.uniform(-j.hue, j.hue));
    for step in order {
        match step {
            0 => {
                if let Some(f) = b {
                    out.iter_mut().for_each(|v| *v = (*v * f).clamp(0.0, 1.0));
                }
            }
            1 => {
                if let Some(f) = k {
                    let n = (out.len() / c).max(1);
                    let mean = out.chunks_exact(c).map(luma).sum::<f32>() / n as f32;
                    out.iter_mut()
                        .for_each(|v| *v = (f * *v + (1.0 - f) * mean).clamp(0.0, 1.0));
                }
            }
            2 => {
                if let (Some(f), 3) = (s, c) {
                    for px in out.chunks_exact_mut(3) {
                        let g = luma(px);
                        px.iter_mut()
                            .for_each(|v| *v = (f * *v + (1.0 - f) * g).clamp(0.0, 1.0));
                    }
                }
            }
            _ => {
                if let (Some(shift), 3) = (h, c) {
                    for px in out.chunks_exact_mut(3) {
                        shift_hue(px, shift);
                    }
                }
            }
        }
    }
}

/// Rotates one RGB pixel's hue by `shift` of a turn (through HSV).
fn shift_hue(px: &mut [f32], shift: f32) {
    let (r, g, b) = (px[0], px[1], px[2]);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    if delta <= 0.0 {
        return;
    }
    let mut hue = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    } / 6.0;
    hue = (hue + shift).rem_euclid(1.0);
    let (v, s) = (max, delta / max);
    let h6 = hue * 6.0;
    let sector = (h6.floor() as usize) % 6;
    let f = h6 - h6.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let (nr, ng, nb) = match sector {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    px[0] = nr;
    px[1] = ng;
    px[2] = nb;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(h: usize, w: usize) -> DecodedImage {
        let mut pixels = Vec::new();
        for y in 0..h {
            for x in 0..w {
                pixels.extend([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 77]);
            }
        }
        DecodedImage {
            height: h,
            width: w,
            channels: 3,
            pixels,
        }
    }

    #[test]
    fn resize_whole_image_keeps_constant_and_linear_content() {
        let img = DecodedImage {
            height: 3,
            width: 5,
            channels: 1,
            pixels: vec![51; 15],
        };
        let t = ImageTransform::resize(7, 4, 1);
        let out = t.apply(&img, &mut Rng::new(0));
        assert!(out.iter().all(|v| (v - 0.2).abs() < 1e-6), "{out:?}");
        // Downscaling 4 -> 2 averages pairs (triangle of support 2).
        let img = DecodedImage {
            height: 1,
            width: 4,
            channels: 1,
            pixels: vec![0, 255, 0, 255],
        };
        let out = ImageTransform::resize(1, 2, 1).apply(&img, &mut Rng::new(0));
        assert!(out.iter().all(|v| (v - 0.5).abs() < 0.2), "{out:?}");
        // Same size is the identity.
        let img = gradient(6, 9);
        let out = ImageTransform::resize(6, 9, 3).apply(&img, &mut Rng::new(0));
        for (o, p) in out.iter().zip(&img.pixels) {
            assert!((o - *p as f32 / 255.0).abs() < 1e-6);
        }
    }

    #[test]
    fn centre_crop_takes_the_middle() {
        // A 10x20 image whose middle 8x8 is white: a 0.8 centre crop of the
        // shorter side sees only white.
        let mut pixels = vec![0u8; 10 * 20];
        for y in 1..9 {
            for x in 6..14 {
                pixels[y * 20 + x] = 255;
            }
        }
        let img = DecodedImage {
            height: 10,
            width: 20,
            channels: 1,
            pixels,
        };
        // 8 / 0.8 = 10: the shorter side keeps its size, and the 8x8 box
        // in the middle is the output, pixel for pixel.
        let t = ImageTransform {
            crop_fraction: 0.8,
            ..ImageTransform::resize(8, 8, 1)
        };
        let out = t.apply(&img, &mut Rng::new(0));
        assert!(out.iter().all(|v| *v > 0.99), "{out:?}");
        assert!(t.validate().is_ok());
    }

    #[test]
    fn augmentation_keeps_shape_and_range_and_is_seeded() {
        let img = gradient(37, 53);
        let t = ImageTransform {
            augment: Some(Augmentation {
                crop: Some(RandomResizedCrop::default()),
                flip_horizontal: true,
                jitter: Some(ColorJitter {
                    brightness: 0.4,
                    contrast: 0.4,
                    saturation: 0.4,
                    hue: 0.1,
                }),
            }),
            ..ImageTransform::resize(16, 12, 3)
        };
        assert!(t.validate().is_ok());
        for seed in 0..50 {
            let a = t.apply(&img, &mut Rng::new(seed));
            let b = t.apply(&img, &mut Rng::new(seed));
            assert_eq!(a.len(), 16 * 12 * 3);
            assert!(a.iter().all(|v| (0.0..=1.0).contains(v)), "seed {seed}");
            assert_eq!(a, b, "seed {seed}");
        }
        let a = t.apply(&img, &mut Rng::new(1));
        let b = t.apply(&img, &mut Rng::new(2));
        assert_ne!(a, b);
    }

    #[test]
    fn flip_mirrors_and_normalise_shifts() {
        let img = gradient(4, 6);
        let plain = ImageTransform::resize(4, 6, 3);
        let base = plain.apply(&img, &mut Rng::new(0));
        let flip = ImageTransform {
            augment: Some(Augmentation {
                crop: None,
                flip_horizontal: true,
                jitter: None,
            }),
            ..plain.clone()
        };
        // Some seed flips, some does not; a flipped row reads backwards.
        let mut flipped = 0;
        for seed in 0..20 {
            let out = flip.apply(&img, &mut Rng::new(seed));
            if out != base {
                flipped += 1;
                for y in 0..4 {
                    for x in 0..6 {
                        for ch in 0..3 {
                            let o = out[(y * 6 + x) * 3 + ch];
                            let b = base[(y * 6 + 5 - x) * 3 + ch];
                            assert_eq!(o, b);
                        }
                    }
                }
            }
        }
        assert!((3..=17).contains(&flipped), "{flipped}");
        let norm = ImageTransform {
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
            ..plain
        };
        let out = norm.apply(&img, &mut Rng::new(0));
        let want = (base[2] - IMAGENET_MEAN[2]) / IMAGENET_STD[2];
        assert!((out[2] - want).abs() < 1e-5);
    }

    #[test]
    fn hue_shift_turns_red_to_green() {
        let mut px = [1.0, 0.0, 0.0];
        shift_hue(&mut px, 1.0 / 3.0);
        assert!((px[0]).abs() < 1e-5 && (px[1] - 1.0).abs() < 1e-5 && px[2].abs() < 1e-5);
        let mut grey = [0.5, 0.5, 0.5];
        shift_hue(&mut grey, 0.3);
        assert_eq!(grey, [0.5, 0.5, 0.5]);
    }

    #[test]
    fn random_box_fits_and_validate_refuses_nonsense() {
        let mut rng = Rng::new(3);
        for (h, w) in [(1, 1), (2, 300), (300, 2), (50, 70)] {
            for _ in 0..20 {
                let b = random_box(h, w, RandomResizedCrop::default(), &mut rng);
                assert!(b.height >= 1.0 && b.width >= 1.0);
                assert!(b.top + b.height <= h as f32 && b.left + b.width <= w as f32);
            }
        }
        let bad = [
            ImageTransform {
                crop_fraction: 0.0,
                ..ImageTransform::resize(2, 2, 3)
            },
            ImageTransform {
                std: vec![0.0],
                ..ImageTransform::resize(2, 2, 3)
            },
            ImageTransform {
                mean: vec![0.1, 0.2],
                ..ImageTransform::resize(2, 2, 3)
            },
            ImageTransform::resize(0, 2, 3),
            ImageTransform::resize(2, 2, 4),
        ];
        for t in bad {
            assert!(t.validate().is_err(), "{t:?}");
        }
        assert!(decode_image(b"not an image", 3).is_err());
    }
}
