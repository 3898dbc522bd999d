//! Pictures of what a network looks at: a saliency map beside its image, a
//! Grad-CAM map over its image, and every channel of a layer's output as a
//! grid. They take plain slices (channels last, as strata stores images), so
//! they need nothing from the nn crate; files are written as in [`crate::pictures`].

use std::path::Path;

use image::{Rgb, RgbImage};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{DataError, Result};
use crate::pictures::{font_ready, image_err, save_atomic, DrawResult};

mod cam_overlay;
mod colour_maps;
mod feature_maps;
mod panels;
mod saliency;

pub use cam_overlay::*;
pub use colour_maps::*;
pub use feature_maps::*;
use panels::*;
pub use saliency::*;

/// White space around the picture.
const MARGIN: u32 = 16;
/// The band above the panels that holds the title.
const TITLE_BAND: u32 = 44;
/// The band below the panels that holds their captions.
const CAPTION_BAND: u32 = 28;
/// Between the two panels.
const PANEL_GAP: u32 = 24;
/// An image whose larger side is at most this is scaled up by a whole factor towards it.
const READABLE: u64 = 320;
/// An image whose larger side is over this is scaled down to it.
const LARGEST: u64 = 512;
/// The panels' row is at least this high, so the colour bar reads.
const MIN_ROW: u32 = 160;
/// The colour bar: its gap from the map, width, tick length and the room for labels.
const BAR_GAP: u32 = 14;
const BAR_WIDTH: u32 = 18;
const TICK: u32 = 5;
const BAR_LABELS: u32 = 84;
/// Frames around panels, tiles and the bar.
const FRAME: RGBColor = RGBColor(150, 150, 150);
const TEXT: RGBColor = RGBColor(30, 30, 30);

/// Refuses any output name but `*.png` (the pictures are always PNG).
fn check_png(path: &Path) -> Result<()> {
    let png = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if png {
        Ok(())
    } else {
        Err(DataError::arg(
            path.display(),
            "file name",
            "pictures are written as PNG, so the path must end in .png",
        ))
    }
}

/// h * w * c of nonzero sizes, or an error naming `what`.
fn element_count(what: &str, (h, w, c): (usize, usize, usize)) -> Result<usize> {
    let count = h.checked_mul(w).and_then(|n| n.checked_mul(c));
    match count {
        Some(n) if n > 0 => Ok(n),
        _ => Err(DataError::shape(
            what,
            "nonzero (height, width, channels) whose product fits in memory",
            format!("({h}, {w}, {c})"),
        )),
    }
}

/// Checks an image of 1 or 3 channels against its size.
fn check_image(path: &Path, image: &[f32], (h, w, c): (usize, usize, usize)) -> Result<()> {
    let what = format!("image for {}", path.display());
    let n = element_count(&what, (h, w, c))?;
    if c != 1 && c != 3 {
        return Err(DataError::arg(
            what,
            "channels",
            format!("{c}: an image has 1 (grey) or 3 (RGB) channels"),
        ));
    }
    if image.len() != n {
        return Err(DataError::shape(
            what,
            format!("{n} values of a ({h}, {w}, {c}) image"),
            format!("{} values", image.len()),
        ));
    }
    Ok(())
}

/// An image value in 0..1 as a byte: clamped, NaN as 0.
fn level(v: f32) -> u8 {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    (v * 255.0).round() as u8
}

/// A value that is not finite counts as 0.
fn finite(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// The image as RGB pixels (a grey image in all three channels).
fn image_rgb(image: &[f32], (h, w, c): (usize, usize, usize)) -> RgbImage {
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let p = (y as usize * w + x as usize) * c;
        if c == 3 {
            Rgb([level(image[p]), level(image[p + 1]), level(image[p + 2])])
        } else {
            Rgb([level(image[p]); 3])
        }
    })
}

/// The image's grey level in 0..1 per pixel (ITU-R 601 luma of an RGB image).
fn image_grey(image: &[f32], (h, w, c): (usize, usize, usize)) -> Vec<f32> {
    let v = |i: usize| level(image[i]) as f32 / 255.0;
    (0..h * w)
        .map(|p| {
            if c == 3 {
                0.299 * v(3 * p) + 0.587 * v(3 * p + 1) + 0.114 * v(3 * p + 2)
            } else {
                v(p)
            }
        })
        .collect()
}

/// The size an h x w image is shown at: scaled up by a whole factor so its
/// larger side nears [`READABLE`], kept between that and [`LARGEST`], scaled
/// down to [`LARGEST`] above it.
fn display_size(h: usize, w: usize) -> (u32, u32) {
    let (h, w) = (h as u64, w as u64);
    let side = h.max(w);
    let (dw, dh) = if side <= READABLE {
        let s = READABLE / side;
        (w * s, h * s)
    } else if side <= LARGEST {
        (w, h)
    } else {
        (
            (w * LARGEST).div_ceil(side).max(1),
            (h * LARGEST).div_ceil(side).max(1),
        )
    };
    (dw as u32, dh as u32)
}

/// Copies `src` into the RGB buffer (`width` pixels a row) at `(x0, y0)`,
/// scaled to `(dw, dh)` by nearest neighbour.
fn blit(buf: &mut [u8], width: u32, src: &RgbImage, (x0, y0): (u32, u32), (dw, dh): (u32, u32)) {
    let (sw, sh) = (src.width() as u64, src.height() as u64);
    for y in 0..dh {
        let sy = (y as u64 * sh / dh as u64) as u32;
        for x in 0..dw {
            let sx = (x as u64 * sw / dw as u64) as u32;
            let at = ((y0 + y) as usize * width as usize + (x0 + x) as usize) * 3;
            buf[at..at + 3].copy_from_slice(&src.get_pixel(sx, sy).0);
        }
    }
}

/// The largest font size from `start` down to 10 at which `text` is at most `room` wide.
fn fitted_font<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    text: &str,
    start: u32,
    room: u32,
) -> u32 {
    (10..=start)
        .rev()
        .find(|&size| {
            area.estimate_text_size(text, &("sans-serif", size).into_font().into())
                .is_ok_and(|(w, _)| w <= room)
        })
        .unwrap_or(10)
}

#[cfg(test)]
mod tests;
