//! Every channel of a layer's output as a grid of grey tiles.

use super::*;

/// A feature map's tiles are scaled up by a whole factor to at least this (larger side).
pub(super) const MIN_TILE: u64 = 48;
/// Neither side of a feature-map picture is over this: the tiles shrink to fit.
pub(super) const MAX_SIDE: u64 = 4000;
/// Tiles would be smaller than this (larger side) to fit: refused.
pub(super) const MIN_SHRUNK: u64 = 4;
/// The band above each tile that holds its channel number, and the gap between tiles.
pub(super) const LABEL_BAND: u32 = 15;
pub(super) const TILE_GAP: u32 = 8;
/// A feature-map picture is at least this wide, so its title fits.
pub(super) const MIN_WIDTH: u32 = 360;

/// Where the tiles of a feature-map picture go.
#[derive(Clone, Copy, Debug)]
pub(super) struct TileGrid {
    pub(super) tile: (u32, u32),
    pub(super) cols: u32,
    /// Left edge of the first column (the grid is centred).
    pub(super) left: u32,
    pub(super) size: (u32, u32),
}

impl TileGrid {
    /// `c` tiles of h x w values in ceil(sqrt(c)) columns, each value
    /// [`MIN_TILE`] / max(h, w) pixels (rounded up), shrunk to keep the picture
    /// within [`MAX_SIDE`]; `None` where even [`MIN_SHRUNK`] px tiles do not fit.
    pub(super) fn new(h: usize, w: usize, c: usize) -> Option<Self> {
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
    pub(super) fn origin(&self, i: usize) -> (u32, u32) {
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
pub(super) fn draw_tile_text(buf: &mut [u8], grid: &TileGrid, c: usize, title: &str) -> DrawResult {
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
