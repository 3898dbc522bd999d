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

/// Diverging control points, -1..1: ColorBrewer's RdBu, exactly white at 0.
const DIVERGING: [(f32, [u8; 3]); 7] = [
    (-1.0, [5, 48, 97]),
    (-2.0 / 3.0, [33, 102, 172]),
    (-1.0 / 3.0, [146, 197, 222]),
    (0.0, [255, 255, 255]),
    (1.0 / 3.0, [244, 165, 130]),
    (2.0 / 3.0, [178, 24, 43]),
    (1.0, [103, 0, 31]),
];

/// Sequential control points, 0..1: the classic "jet" (dark blue, blue,
/// cyan, yellow, red, dark red), the usual colours of a Grad-CAM heat map.
const SEQUENTIAL: [(f32, [u8; 3]); 6] = [
    (0.0, [0, 0, 128]),
    (0.125, [0, 0, 255]),
    (0.375, [0, 255, 255]),
    (0.625, [255, 255, 0]),
    (0.875, [255, 0, 0]),
    (1.0, [128, 0, 0]),
];

/// Linear interpolation between control points sorted by position; `t` is
/// clamped to their range, NaN reads as 0.
fn ramp(points: &[(f32, [u8; 3])], t: f32) -> [u8; 3] {
    let (first, last) = (points[0], points[points.len() - 1]);
    let t = if t.is_nan() { 0.0 } else { t }.clamp(first.0, last.0);
    let i = points
        .windows(2)
        .position(|p| t <= p[1].0)
        .unwrap_or(points.len() - 2);
    let ((a, ca), (b, cb)) = (points[i], points[i + 1]);
    let f = if b > a { (t - a) / (b - a) } else { 0.0 };
    std::array::from_fn(|k| (ca[k] as f32 + f * (cb[k] as f32 - ca[k] as f32)).round() as u8)
}

/// The diverging colour of `t` in -1..1: blue (-1), white (0), red (+1).
/// Values outside are clamped, NaN is white.
pub fn diverging(t: f32) -> [u8; 3] {
    ramp(&DIVERGING, t)
}

/// The sequential colour of `t` in 0..1: jet, dark blue (0) through cyan,
/// yellow and red to dark red (1). Values outside are clamped, NaN is 0.
pub fn sequential(t: f32) -> [u8; 3] {
    ramp(&SEQUENTIAL, t)
}

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

/// A colour bar: its colour at `t` in 0 (bottom) ..1 (top), and labels at positions in 0..1.
struct ColourBar {
    colour: fn(f32) -> [u8; 3],
    ticks: Vec<(f32, String)>,
}

/// Where the two panels and the bar go.
#[derive(Clone, Copy, Debug)]
struct PanelsLayout {
    /// Each panel's size on screen.
    panel: (u32, u32),
    /// Top-left pixel of each panel.
    origins: [(u32, u32); 2],
    /// The bar's top-left pixel and height.
    bar: (u32, u32, u32),
    size: (u32, u32),
}

impl PanelsLayout {
    fn new(h: usize, w: usize) -> Self {
        let (dw, dh) = display_size(h, w);
        let row = dh.max(MIN_ROW);
        let top = TITLE_BAND + (row - dh) / 2;
        let second = MARGIN + dw + PANEL_GAP;
        let bar_x = second + dw + BAR_GAP;
        PanelsLayout {
            panel: (dw, dh),
            origins: [(MARGIN, top), (second, top)],
            bar: (bar_x, TITLE_BAND, row),
            size: (
                bar_x + BAR_WIDTH + TICK + BAR_LABELS + MARGIN,
                TITLE_BAND + row + CAPTION_BAND + MARGIN / 2,
            ),
        }
    }
}

/// Two images of the same size side by side, each under a caption, a title
/// above and a colour bar right of the second; written to `path`.
fn two_panels(
    path: &Path,
    title: &str,
    panels: [(&RgbImage, &str); 2],
    bar: &ColourBar,
) -> Result<(u32, u32)> {
    font_ready().map_err(|e| image_err(path, e))?;
    let (w, h) = panels[0].0.dimensions();
    let layout = PanelsLayout::new(h as usize, w as usize);
    let (width, height) = layout.size;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    for ((img, _), origin) in panels.iter().zip(layout.origins) {
        blit(&mut buf, width, img, origin, layout.panel);
    }
    let (bx, by, bh) = layout.bar;
    for y in 0..bh {
        let t = 1.0 - y as f32 / (bh - 1).max(1) as f32;
        let c = (bar.colour)(t);
        for x in bx..bx + BAR_WIDTH {
            let at = ((by + y) as usize * width as usize + x as usize) * 3;
            buf[at..at + 3].copy_from_slice(&c);
        }
    }
    draw_panel_text(&mut buf, &layout, title, panels.map(|p| p.1), bar)
        .map_err(|e| image_err(path, e))?;
    let img = RgbImage::from_raw(width, height, buf)
        .ok_or_else(|| image_err(path, "the picture buffer does not match its size"))?;
    save_atomic(path, |p| img.save_with_format(p, image::ImageFormat::Png))?;
    Ok((width, height))
}

/// The title, captions, frames and the bar's ticks and labels of [`two_panels`].
fn draw_panel_text(
    buf: &mut [u8],
    layout: &PanelsLayout,
    title: &str,
    captions: [&str; 2],
    bar: &ColourBar,
) -> DrawResult {
    let (width, _) = layout.size;
    let root = BitMapBackend::with_buffer(buf, layout.size).into_drawing_area();
    let size = fitted_font(&root, title, 20, width - 2 * MARGIN);
    let centred = Pos::new(HPos::Center, VPos::Center);
    let style = ("sans-serif", size).into_font().color(&TEXT).pos(centred);
    root.draw_text(title, &style, ((width / 2) as i32, (TITLE_BAND / 2) as i32))?;
    let (dw, dh) = layout.panel;
    for ((x, y), caption) in layout.origins.into_iter().zip(captions) {
        let (x, y) = (x as i32, y as i32);
        root.draw(&Rectangle::new(
            [(x - 1, y - 1), (x + dw as i32, y + dh as i32)],
            FRAME,
        ))?;
        let style = ("sans-serif", 15).into_font().color(&TEXT).pos(centred);
        let below = (layout.bar.1 + layout.bar.2 + CAPTION_BAND / 2) as i32;
        root.draw_text(caption, &style, (x + dw as i32 / 2, below))?;
    }
    let (bx, by, bh) = layout.bar;
    let (bx, by, bh) = (bx as i32, by as i32, bh as i32);
    root.draw(&Rectangle::new(
        [(bx - 1, by - 1), (bx + BAR_WIDTH as i32, by + bh)],
        FRAME,
    ))?;
    let label = ("sans-serif", 13)
        .into_font()
        .color(&TEXT)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let right = bx + BAR_WIDTH as i32;
    for (t, text) in &bar.ticks {
        let y = by + ((1.0 - t.clamp(0.0, 1.0)) * (bh - 1) as f32).round() as i32;
        root.draw(&PathElement::new(
            vec![(right, y), (right + TICK as i32, y)],
            TEXT,
        ))?;
        root.draw_text(text, &label, (right + TICK as i32 + 3, y))?;
    }
    root.present()?;
    Ok(())
}

/// A tick label with 3 significant digits (all of an integer part), powers of ten when very large or small.
fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').into()
    } else {
        s
    }
}

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

/// `map` (mh x mw) resized to h x w bilinearly, pixel centres aligned (as
/// PyTorch's `align_corners=False` and OpenCV's resize), edges clamped.
fn bilinear(map: &[f32], (mh, mw): (usize, usize), (h, w): (usize, usize)) -> Vec<f32> {
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
const OVERLAY_ALPHA: f32 = 0.5;

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

/// A feature map's tiles are scaled up by a whole factor to at least this (larger side).
const MIN_TILE: u64 = 48;
/// Neither side of a feature-map picture is over this: the tiles shrink to fit.
const MAX_SIDE: u64 = 4000;
/// Tiles would be smaller than this (larger side) to fit: refused.
const MIN_SHRUNK: u64 = 4;
/// The band above each tile that holds its channel number, and the gap between tiles.
const LABEL_BAND: u32 = 15;
const TILE_GAP: u32 = 8;
/// A feature-map picture is at least this wide, so its title fits.
const MIN_WIDTH: u32 = 360;

/// Where the tiles of a feature-map picture go.
#[derive(Clone, Copy, Debug)]
struct TileGrid {
    tile: (u32, u32),
    cols: u32,
    /// Left edge of the first column (the grid is centred).
    left: u32,
    size: (u32, u32),
}

impl TileGrid {
    /// `c` tiles of h x w values in ceil(sqrt(c)) columns, each value
    /// [`MIN_TILE`] / max(h, w) pixels (rounded up), shrunk to keep the picture
    /// within [`MAX_SIDE`]; `None` where even [`MIN_SHRUNK`] px tiles do not fit.
    fn new(h: usize, w: usize, c: usize) -> Option<Self> {
        let (h, w, c) = (h as u64, w as u64, c as u64);
        let cols = ((c as f64).sqrt().ceil() as u64).max(1);
        let rows = c.div_ceil(cols);
        let (m, title, label, gap) = (
            MARGIN as u64,
            TITLE_BAND as u64,
            LABEL_BAND as u64,
            TILE_GAP as u64,
        );
        let scale = MIN_TILE.div_ceil(h.max(w)).max(1);
        let room_w = MAX_SIDE.checked_sub(2 * m + (cols - 1) * gap)? / cols;
        let room_h = MAX_SIDE.checked_sub(title + m + rows * label + (rows - 1) * gap)? / rows;
        let (tw, th) = if w * scale <= room_w && h * scale <= room_h {
            (w * scale, h * scale)
        } else {
            let f = (room_w as f64 / w as f64).min(room_h as f64 / h as f64);
            (
                ((w as f64 * f).floor() as u64).max(1),
                ((h as f64 * f).floor() as u64).max(1),
            )
        };
        if tw.max(th) < MIN_SHRUNK.min(h.max(w)) {
            return None;
        }
        let grid_w = cols * tw + (cols - 1) * gap;
        let width = (grid_w + 2 * m).max(MIN_WIDTH as u64);
        let height = title + rows * (label + th) + (rows - 1) * gap + m;
        Some(TileGrid {
            tile: (tw as u32, th as u32),
            cols: cols as u32,
            left: ((width - grid_w) / 2) as u32,
            size: (width as u32, height as u32),
        })
    }

    /// Top-left pixel of tile `i` (below its label band).
    fn origin(&self, i: usize) -> (u32, u32) {
        let (col, row) = (i as u32 % self.cols, i as u32 / self.cols);
        (
            self.left + col * (self.tile.0 + TILE_GAP),
            TITLE_BAND + row * (LABEL_BAND + self.tile.1 + TILE_GAP) + LABEL_BAND,
        )
    }
}

/// Every channel of a layer's output `values` ((h, w, c), channels last) as a
/// grey tile, numbered from 0 above it, in a near-square grid (ceil(sqrt(c))
/// columns) under the title. Each channel is scaled to its own min..max
/// (black..white; a constant channel is mid-grey); NaN and ±inf count as 0.
/// Tiles are scaled up by a whole factor to at least 48 px; where that would
/// make the picture over 4000 px a side (many channels of a large map, e.g.
/// 512 of 224x224) the tiles shrink, nearest neighbour, to fit, and a
/// channel number wider than its tile is left out. A map that would need
/// tiles under 4 px (tens of thousands of channels) is refused. The path
/// must end in `.png`. Returns (width, height).
pub fn feature_maps_png(
    path: &Path,
    values: &[f32],
    (h, w, c): (usize, usize, usize),
    title: &str,
) -> Result<(u32, u32)> {
    check_png(path)?;
    let what = format!("feature maps for {}", path.display());
    let n = element_count(&what, (h, w, c))?;
    if values.len() != n {
        return Err(DataError::shape(
            what,
            format!("{n} values of ({h}, {w}, {c}) maps"),
            format!("{} values", values.len()),
        ));
    }
    let Some(grid) = TileGrid::new(h, w, c) else {
        return Err(DataError::arg(
            what,
            "channels",
            format!("{c} tiles of {h}x{w} do not fit a {MAX_SIDE} px picture"),
        ));
    };
    font_ready().map_err(|e| image_err(path, e))?;
    let (width, height) = grid.size;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    for ch in 0..c {
        let channel = |p: usize| finite(values[p * c + ch]);
        let (lo, hi) = (0..h * w)
            .map(channel)
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        let tile = RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let v = channel(y as usize * w + x as usize);
            Rgb([if hi > lo {
                (((v - lo) / (hi - lo)) * 255.0).round().clamp(0.0, 255.0) as u8
            } else {
                128
            }; 3])
        });
        blit(&mut buf, width, &tile, grid.origin(ch), grid.tile);
    }
    draw_tile_text(&mut buf, &grid, c, title).map_err(|e| image_err(path, e))?;
    let img = RgbImage::from_raw(width, height, buf)
        .ok_or_else(|| image_err(path, "the picture buffer does not match its size"))?;
    save_atomic(path, |p| img.save_with_format(p, image::ImageFormat::Png))?;
    Ok((width, height))
}

/// The title, tile frames and channel numbers of [`feature_maps_png`].
fn draw_tile_text(buf: &mut [u8], grid: &TileGrid, c: usize, title: &str) -> DrawResult {
    let root = BitMapBackend::with_buffer(buf, grid.size).into_drawing_area();
    let width = grid.size.0;
    let size = fitted_font(&root, title, 20, width - 2 * MARGIN);
    let style = ("sans-serif", size)
        .into_font()
        .color(&TEXT)
        .pos(Pos::new(HPos::Center, VPos::Center));
    root.draw_text(title, &style, ((width / 2) as i32, (TITLE_BAND / 2) as i32))?;
    let label = ("sans-serif", 11)
        .into_font()
        .color(&TEXT)
        .pos(Pos::new(HPos::Left, VPos::Bottom));
    let (tw, th) = (grid.tile.0 as i32, grid.tile.1 as i32);
    for ch in 0..c {
        let (x, y) = grid.origin(ch);
        let (x, y) = (x as i32, y as i32);
        root.draw(&Rectangle::new([(x - 1, y - 1), (x + tw, y + th)], FRAME))?;
        let text = ch.to_string();
        if root.estimate_text_size(&text, &label)?.0 <= (tw + TILE_GAP as i32 / 2) as u32 {
            root.draw_text(&text, &label, (x, y - 3))?;
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::PathBuf;

    // deterministic values in -1..1, as the kernel-grid tests use them
    use crate::pictures::tests::weights as noise;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "strata-attribution-pictures-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn read(p: &Path) -> RgbImage {
        image::ImageReader::open(p)
            .unwrap()
            .with_guessed_format()
            .unwrap()
            .decode()
            .unwrap()
            .to_rgb8()
    }

    fn distinct(img: &RgbImage) -> usize {
        img.pixels().map(|p| p.0).collect::<HashSet<_>>().len()
    }

    /// A 28x28 digit-like image: a thick ring (a "0") with soft edges.
    fn digit() -> Vec<f32> {
        (0..28 * 28)
            .map(|p| {
                let (y, x) = ((p / 28) as f32 - 13.5, (p % 28) as f32 - 13.5);
                let r = (x * x / 0.55 + y * y).sqrt();
                (1.0 - ((r - 9.0).abs() - 1.5) / 1.5).clamp(0.0, 1.0)
            })
            .collect()
    }

    /// A signed attribution of the digit: positive on its right half, negative on its left.
    fn signed(image: &[f32]) -> Vec<f32> {
        image
            .iter()
            .enumerate()
            .map(|(p, v)| {
                v * ((p % 28) as f32 - 13.5) / 13.5 + 0.02 * ((p * 7919 % 13) as f32 - 6.0) / 6.0
            })
            .collect()
    }

    #[test]
    fn colour_map_end_points() {
        assert_eq!(diverging(-1.0), [5, 48, 97]);
        assert_eq!(diverging(0.0), [255, 255, 255]);
        assert_eq!(diverging(1.0), [103, 0, 31]);
        assert_eq!(diverging(-7.0), diverging(-1.0));
        assert_eq!(diverging(f32::INFINITY), diverging(1.0));
        assert_eq!(diverging(f32::NAN), [255, 255, 255]);
        let (blue, red) = (diverging(-0.5), diverging(0.5));
        assert!(
            blue[2] > blue[0] + 50 && red[0] > red[2] + 50,
            "{blue:?} {red:?}"
        );
        assert_eq!(sequential(0.0), [0, 0, 128]);
        assert_eq!(sequential(1.0), [128, 0, 0]);
        assert_eq!(sequential(0.875), [255, 0, 0]);
        assert_eq!(sequential(-1.0), sequential(0.0));
        assert_eq!(sequential(2.0), sequential(1.0));
        assert_eq!(sequential(f32::NAN), sequential(0.0));
        // halfway between cyan and yellow
        assert_eq!(sequential(0.5), [128, 255, 128]);
    }

    #[test]
    fn bilinear_keeps_constants_and_centres_a_single_cell() {
        assert_eq!(bilinear(&[2.0; 4], (2, 2), (5, 3)), vec![2.0; 15]);
        let mut map = vec![0.0; 49];
        map[2 * 7 + 5] = 1.0;
        let up = bilinear(&map, (7, 7), (28, 28));
        let hottest = (0..up.len())
            .max_by(|&a, &b| up[a].total_cmp(&up[b]))
            .unwrap();
        assert_eq!((hottest / 28 / 4, hottest % 28 / 4), (2, 5));
        assert!((up[hottest] - 0.875 * 0.875).abs() < 1e-6);
        assert_eq!(bilinear(&[3.0], (1, 1), (2, 2)), vec![3.0; 4]);
    }

    #[test]
    fn tick_labels_have_three_significant_digits() {
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(0.012345), "0.0123");
        assert_eq!(tick_label(-5.0), "-5");
        assert_eq!(tick_label(1234.6), "1235");
        assert_eq!(tick_label(2.5e-6), "2.50e-6");
    }

    #[test]
    fn saliency_of_a_signed_map_is_red_and_blue_beside_the_digit() {
        let d = tmp("saliency");
        let p = d.join("s.png");
        let image = digit();
        let (w, h) = saliency_png(&p, &image, (28, 28, 1), &signed(&image), "saliency: 7").unwrap();
        let img = read(&p);
        assert_eq!(img.dimensions(), (w, h));
        let layout = PanelsLayout::new(28, 28);
        assert_eq!(layout.size, (w, h));
        assert_eq!(layout.panel, (308, 308), "a digit is shown 11x");
        assert!(distinct(&img) > 100, "{} colours", distinct(&img));
        // the map's panel: red on the right half of the ring, blue on the left
        let (x0, y0) = layout.origins[1];
        let (mut red, mut blue) = (0, 0);
        for (x, y, px) in img.enumerate_pixels() {
            if (x0..x0 + 308).contains(&x) && (y0..y0 + 308).contains(&y) {
                let [r, _, b] = px.0;
                if r as i32 > b as i32 + 60 {
                    red += 1;
                    assert!(x >= x0 + 140, "red at ({x}, {y})");
                } else if b as i32 > r as i32 + 60 {
                    blue += 1;
                    assert!(x < x0 + 168, "blue at ({x}, {y})");
                }
            }
        }
        assert!(red > 2000 && blue > 2000, "{red} red, {blue} blue pixels");
        // the image panel shows the digit in grey: white ring, black inside
        let (ix, iy) = layout.origins[0];
        assert_eq!(*img.get_pixel(ix + 154, iy + 154), Rgb([0; 3]));
        assert_eq!(*img.get_pixel(ix + 154, iy + 5 * 11 + 5), Rgb([255; 3]));
        // an RGB image with a (h, w) map; an all-zero map is white
        let rgb: Vec<f32> = (0..20 * 30 * 3).map(|i| (i % 17) as f32 / 16.0).collect();
        let (w2, h2) = saliency_png(&p, &rgb, (20, 30, 3), &[0.0; 600], "zero").unwrap();
        let img = read(&p);
        assert_eq!(img.dimensions(), (w2, h2));
        let layout = PanelsLayout::new(20, 30);
        assert_eq!(layout.panel, (300, 200));
        let (x0, y0) = layout.origins[1];
        assert_eq!(*img.get_pixel(x0 + 150, y0 + 100), Rgb([255; 3]));
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn grad_cam_is_hottest_over_its_hot_cell() {
        let d = tmp("cam");
        let p = d.join("c.png");
        let mut cam = vec![0.0; 49];
        cam[2 * 7 + 5] = 3.0;
        let (w, h) = cam_overlay_png(&p, &[0.0; 784], (28, 28, 1), &cam, (7, 7), "cam").unwrap();
        let img = read(&p);
        assert_eq!(img.dimensions(), (w, h));
        let layout = PanelsLayout::new(28, 28);
        let (x0, y0) = layout.origins[1];
        let redness = |x: u32, y: u32| {
            let [r, _, b] = img.get_pixel(x0 + x, y0 + y).0;
            r as i32 - b as i32
        };
        let peak = (0..308)
            .flat_map(|y| (0..308).map(move |x| (x, y)))
            .map(|(x, y)| redness(x, y))
            .max()
            .unwrap();
        assert!(peak > 100, "no red in the overlay: {peak}");
        let hot: Vec<(u32, u32)> = (0..308)
            .flat_map(|y| (0..308).map(move |x| (x, y)))
            .filter(|&(x, y)| redness(x, y) >= peak - 10)
            .collect();
        let n = hot.len() as f64;
        let cx = hot.iter().map(|p| p.0 as f64).sum::<f64>() / n;
        let cy = hot.iter().map(|p| p.1 as f64).sum::<f64>() / n;
        // cell (2, 5) of 7 spans 44 px of the 308 px panel
        assert!((cx / 44.0 - 5.5).abs() < 0.5, "hottest x {cx}");
        assert!((cy / 44.0 - 2.5).abs() < 0.5, "hottest y {cy}");
        // away from it, the overlay is jet's dark blue over a black image
        assert_eq!(img.get_pixel(x0 + 10, y0 + 300).0, [0, 0, 64]);
        assert!(distinct(&img) > 50);
        // a map larger than the image, an RGB image, an all-zero map
        let rgb: Vec<f32> = (0..16 * 16 * 3).map(|i| (i % 5) as f32 / 4.0).collect();
        cam_overlay_png(&p, &rgb, (16, 16, 3), &[0.5; 32 * 32], (32, 32), "big").unwrap();
        cam_overlay_png(&p, &rgb, (16, 16, 3), &[0.0; 4], (2, 2), "zero").unwrap();
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn sixty_four_feature_maps_are_a_near_square_grid() {
        let d = tmp("features");
        let p = d.join("f.png");
        let (h, w, c) = (14, 14, 64);
        let mut values = noise(h * w * c, 1);
        // channel 1 is constant: mid-grey
        for px in 0..h * w {
            values[px * c + 1] = 0.25;
        }
        let (width, height) = feature_maps_png(&p, &values, (h, w, c), "conv2 output").unwrap();
        let img = read(&p);
        assert_eq!(img.dimensions(), (width, height));
        let grid = TileGrid::new(h, w, c).unwrap();
        // 8 x 8 tiles; the picture a little taller for the title and labels
        assert_eq!((grid.cols, grid.tile), (8, (56, 56)));
        assert_eq!(grid.origin(63).1, grid.origin(56).1);
        assert!(grid.origin(64).1 >= height);
        let ratio = width as f64 / height as f64;
        assert!((0.7..=1.3).contains(&ratio), "{width}x{height}");
        assert!(distinct(&img) > 200);
        let (x, y) = grid.origin(1);
        assert_eq!(*img.get_pixel(x + 20, y + 20), Rgb([128; 3]));
        // a tile's values span black..white and are grey
        let (x, y) = grid.origin(63);
        let tile: Vec<u8> = (0..56)
            .flat_map(|j| (0..56).map(move |i| (i, j)))
            .map(|(i, j)| *img.get_pixel(x + i, y + j))
            .inspect(|p| assert!(p[0] == p[1] && p[1] == p[2]))
            .map(|p| p[0])
            .collect();
        assert_eq!(tile.iter().min(), Some(&0));
        assert_eq!(tile.iter().max(), Some(&255));
        // 512 channels of a 7x7 map; of a large map the tiles shrink under 4000 px
        let (w1, h1) = feature_maps_png(&p, &noise(7 * 7 * 512, 2), (7, 7, 512), "512").unwrap();
        assert!(w1 <= 4000 && h1 <= 4000 && (0.7..=1.3).contains(&(w1 as f64 / h1 as f64)));
        let big = TileGrid::new(224, 224, 512).unwrap();
        assert!(big.size.0 <= 4000 && big.size.1 <= 4000, "{big:?}");
        assert!(big.tile.0 >= 100, "{big:?}");
        assert!(TileGrid::new(1, 1, 1 << 20).is_none());
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn nan_and_infinity_draw_without_panicking() {
        let d = tmp("nan");
        let p = d.join("n.png");
        let mut image = digit();
        image[3] = f32::NAN;
        image[4] = f32::INFINITY;
        image[5] = -3.0;
        let mut attribution = signed(&image);
        attribution[10] = f32::NAN;
        attribution[11] = f32::NEG_INFINITY;
        saliency_png(&p, &image, (28, 28, 1), &attribution, "nan").unwrap();
        saliency_png(&p, &image, (28, 28, 1), &[f32::NAN; 784], "all nan").unwrap();
        let mut cam = vec![f32::NAN; 49];
        cam[0] = f32::INFINITY;
        cam[1] = -2.0;
        cam_overlay_png(&p, &image, (28, 28, 1), &cam, (7, 7), "nan").unwrap();
        let mut maps = noise(5 * 5 * 4, 3);
        maps[0] = f32::NAN;
        maps[1] = f32::INFINITY;
        feature_maps_png(&p, &maps, (5, 5, 4), "nan").unwrap();
        feature_maps_png(&p, &[f32::NAN; 25], (5, 5, 1), "nan").unwrap();
        // odd shapes: a single pixel, a long strip, a large image scaled down
        saliency_png(&p, &[0.5], (1, 1, 1), &[1.0], "1x1").unwrap();
        saliency_png(&p, &[0.5; 300], (1, 300, 1), &[1.0; 300], "strip").unwrap();
        let (w, h) = saliency_png(
            &p,
            &vec![0.5; 600 * 900],
            (600, 900, 1),
            &vec![1.0; 600 * 900],
            "big",
        )
        .unwrap();
        assert_eq!(read(&p).dimensions(), (w, h));
        assert_eq!(PanelsLayout::new(600, 900).panel, (512, 342));
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let d = tmp("bad");
        let p = d.join("b.png");
        let img = [0.5f32; 16];
        let shape = |r: Result<(u32, u32)>| matches!(r, Err(DataError::Shape { .. }));
        let arg = |r: Result<(u32, u32)>| matches!(r, Err(DataError::Argument { .. }));
        assert!(shape(saliency_png(&p, &img, (4, 4, 1), &[0.0; 15], "")));
        assert!(shape(saliency_png(
            &p,
            &img[..15],
            (4, 4, 1),
            &[0.0; 16],
            ""
        )));
        assert!(shape(saliency_png(&p, &[], (0, 4, 1), &[], "")));
        assert!(shape(saliency_png(&p, &img, (usize::MAX, 2, 3), &img, "")));
        assert!(arg(saliency_png(&p, &img, (4, 2, 2), &img, "")));
        assert!(arg(cam_overlay_png(
            &p,
            &img,
            (2, 2, 4),
            &[1.0],
            (1, 1),
            ""
        )));
        assert!(shape(cam_overlay_png(
            &p,
            &img,
            (4, 4, 1),
            &[1.0; 3],
            (2, 2),
            ""
        )));
        assert!(shape(cam_overlay_png(&p, &img, (4, 4, 1), &[], (0, 2), "")));
        assert!(shape(feature_maps_png(&p, &img, (4, 4, 2), "")));
        assert!(shape(feature_maps_png(&p, &[], (4, 4, 0), "")));
        assert!(arg(feature_maps_png(
            &p,
            &vec![0.0; 1 << 20],
            (1, 1, 1 << 20),
            ""
        )));
        for name in ["b.jpg", "b", "b.png.tmp"] {
            let q = d.join(name);
            for r in [
                saliency_png(&q, &img, (4, 4, 1), &img, ""),
                cam_overlay_png(&q, &img, (4, 4, 1), &[1.0], (1, 1), ""),
                feature_maps_png(&q, &img, (4, 4, 1), ""),
            ] {
                let e = r.unwrap_err();
                assert!(matches!(e, DataError::Argument { .. }), "{e}");
                assert!(e.to_string().contains(&q.display().to_string()), "{e}");
                assert!(e.to_string().contains(".png"), "{e}");
            }
            assert!(!q.exists());
        }
        assert!(!p.exists());
        // upper-case extension is fine
        saliency_png(&d.join("B.PNG"), &img, (4, 4, 1), &img, "").unwrap();
        std::fs::remove_dir_all(&d).ok();
    }
}
