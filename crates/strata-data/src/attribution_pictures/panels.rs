//! Two panels side by side (image and map) with a title, captions and a
//! colour bar: the layout shared by the saliency and Grad-CAM pictures.

use super::*;

/// A colour bar: its colour at `t` in 0 (bottom) ..1 (top), and labels at positions in 0..1.
pub(super) struct ColourBar {
    pub(super) colour: fn(f32) -> [u8; 3],
    pub(super) ticks: Vec<(f32, String)>,
}

/// Where the two panels and the bar go.
#[derive(Clone, Copy, Debug)]
pub(super) struct PanelsLayout {
    /// Each panel's size on screen.
    pub(super) panel: (u32, u32),
    /// Top-left pixel of each panel.
    pub(super) origins: [(u32, u32); 2],
    /// The bar's top-left pixel and height.
    pub(super) bar: (u32, u32, u32),
    pub(super) size: (u32, u32),
}

impl PanelsLayout {
    pub(super) fn new(h: usize, w: usize) -> Self {
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
pub(super) fn two_panels(
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
pub(super) fn draw_panel_text(
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
pub(super) fn tick_label(v: f64) -> String {
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
