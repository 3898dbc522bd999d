//! A Grad-CAM map, resized to the image, laid over it.

use super::*;

/// `map` (mh x mw) resized to h x w bilinearly, pixel centres aligned (as
/// PyTorch's `align_corners=False` and OpenCV's resize), edges clamped.
pub(super) fn bilinear(map: &[f32], (mh, mw): (usize, usize), (h, w): (usize, usize)) -> Vec<f32> {
    let axis = |n: usize, m: usize| {
        move |i: usize| {
            let s = ((i as f64 + 0.5) * m as f64 / n as f64 - 0.5).clamp(0.0, (m - 1) as f64);
            let lo = s.floor() as usize;
            (lo, (lo + 1).min(m - 1), (s - lo as f64) as f32)
        }
    };
    let (ys, xs) = (axis(h, mh), axis(w, mw));
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        let (y0, y1, fy) = ys(y);
        for x in 0..w {
            let (x0, x1, fx) = xs(x);
            let top = map[y0 * mw + x0] * (1.0 - fx) + map[y0 * mw + x1] * fx;
            let bottom = map[y1 * mw + x0] * (1.0 - fx) + map[y1 * mw + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// How much of the heat map's colour the overlay shows over the grey image.
pub(super) const OVERLAY_ALPHA: f32 = 0.5;

/// The image beside a Grad-CAM overlay, sized as [`saliency_png`]. `cam` is
/// the map at the layer's resolution (ch x cw), non-negative (negative
/// values, NaN and ±inf count as 0); it is resized bilinearly to the image's
/// h x w, divided by its maximum (an all-zero map stays zero), coloured
/// with [`sequential`] and blended at alpha 0.5 over the image's grey
/// levels. The colour bar runs from 0 to the map's maximum. `image` as in
/// [`saliency_png`]; the path must end in `.png`. Returns (width, height).
pub fn cam_overlay_png(
    path: &Path,
    image: &[f32],
    (h, w, c): (usize, usize, usize),
    cam: &[f32],
    (ch, cw): (usize, usize),
    title: &str,
) -> Result<(u32, u32)> {
    check_png(path)?;
    check_image(path, image, (h, w, c))?;
    let what = format!("Grad-CAM map for {}", path.display());
    let n = element_count(&what, (ch, cw, 1))?;
    if cam.len() != n {
        return Err(DataError::shape(
            what,
            format!("{n} values of a {ch}x{cw} map"),
            format!("{} values", cam.len()),
        ));
    }
    let cam: Vec<f32> = cam.iter().map(|&v| finite(v).max(0.0)).collect();
    let peak = cam.iter().fold(0f32, |m, &v| m.max(v));
    let scale = if peak > 0.0 { 1.0 / peak } else { 0.0 };
    let heat = bilinear(&cam, (ch, cw), (h, w));
    let grey = image_grey(image, (h, w, c));
    let overlay = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let p = y as usize * w + x as usize;
        let colour = sequential(heat[p] * scale);
        let g = grey[p] * 255.0;
        Rgb(colour.map(|k| {
            (OVERLAY_ALPHA * k as f32 + (1.0 - OVERLAY_ALPHA) * g)
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    });
    let ticks = if peak > 0.0 {
        let peak = peak as f64;
        vec![
            (0.0, "0".into()),
            (0.5, tick_label(peak / 2.0)),
            (1.0, tick_label(peak)),
        ]
    } else {
        vec![(0.0, "0".into())]
    };
    let bar = ColourBar {
        colour: sequential,
        ticks,
    };
    let input = image_rgb(image, (h, w, c));
    two_panels(
        path,
        title,
        [(&input, "image"), (&overlay, "Grad-CAM")],
        &bar,
    )
}
