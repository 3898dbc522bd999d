//! A saliency map beside its image.

use super::*;

/// The image and its attribution map side by side, each scaled up to about
/// 320 px (a whole factor, nearest neighbour; larger than 512 px, scaled
/// down), with the title above and a colour bar right of the map. `image`
/// is (h, w, c) channels last, values in 0..1 (clamped; NaN is 0), 1 or 3
/// channels. `attribution` is either the same shape, summed over channels
/// per pixel, or already one value per pixel (h * w). The map is diverging
/// and symmetric around 0: white at 0, red positive, blue negative, full
/// colour at the largest |value| `m`, the bar labelled -m, 0, +m; an
/// all-zero map is white. Non-finite attributions (NaN, ±inf) count as 0.
/// The path must end in `.png`. Returns (width, height).
pub fn saliency_png(
    path: &Path,
    image: &[f32],
    (h, w, c): (usize, usize, usize),
    attribution: &[f32],
    title: &str,
) -> Result<(u32, u32)> {
    check_png(path)?;
    check_image(path, image, (h, w, c))?;
    let pixels = h * w;
    let per_pixel = if attribution.len() == pixels * c {
        c
    } else if attribution.len() == pixels {
        1
    } else {
        return Err(DataError::shape(
            format!("attribution for {}", path.display()),
            format!("{} values (h, w, c) or {pixels} (h, w)", pixels * c),
            format!("{} values", attribution.len()),
        ));
    };
    let map: Vec<f64> = attribution
        .chunks_exact(per_pixel)
        .map(|px| px.iter().map(|&v| finite(v) as f64).sum())
        .collect();
    let m = map.iter().fold(0f64, |m, v| m.max(v.abs()));
    let scale = if m > 0.0 { 1.0 / m } else { 0.0 };
    let shown = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        Rgb(diverging((map[y as usize * w + x as usize] * scale) as f32))
    });
    let ticks = if m > 0.0 {
        vec![
            (0.0, tick_label(-m)),
            (0.5, "0".into()),
            (1.0, format!("+{}", tick_label(m))),
        ]
    } else {
        vec![(0.5, "0".into())]
    };
    let bar = ColourBar {
        colour: |t| diverging(2.0 * t - 1.0),
        ticks,
    };
    let input = image_rgb(image, (h, w, c));
    two_panels(
        path,
        title,
        [(&input, "image"), (&shown, "attribution")],
        &bar,
    )
}
