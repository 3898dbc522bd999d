//! Small PNG pictures that make a network visible: a grid of convolution
//! kernels and loss/accuracy curves. Files are written to a temporary name and renamed.

use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage};

use crate::error::{DataError, Result};

fn image_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Image {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn save_atomic(path: &Path, write: impl FnOnce(&Path) -> image::ImageResult<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| image_err(dir, e))?;
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_else(|| "out.png".into());
    let tmp = dir.join(format!(".{name}.tmp{}.png", std::process::id()));
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(image_err(path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| image_err(path, e))
}

/// One tile per (filter, input channel) of an HWIO kernel, each scaled to its
/// own min..max, `scale` pixels per weight, 1-pixel gaps. Returns (width, height).
pub fn filter_grid(path: &Path, kernel: &[f32], shape: &[usize], scale: u32) -> Result<(u32, u32)> {
    let [kh, kw, cin, f] = shape else {
        return Err(image_err(
            path,
            format!("expected a 4-d convolution kernel, found shape {shape:?}"),
        ));
    };
    let (kh, kw, cin, f) = (*kh, *kw, *cin, *f);
    let cols = (f as f64).sqrt().ceil() as usize;
    let rows_f = f.div_ceil(cols);
    let tile_w = (kw as u32) * scale;
    let tile_h = (kh as u32) * scale;
    let width = cols as u32 * (tile_w + 1) + 1;
    let height = (rows_f * cin) as u32 * (tile_h + 1) + 1;
    let mut img = GrayImage::from_pixel(width, height, Luma([40]));
    for fi in 0..f {
        for ci in 0..cin {
            let at = |i: usize, j: usize| kernel[((i * kw + j) * cin + ci) * f + fi];
            let vals: Vec<f32> = (0..kh)
                .flat_map(|i| (0..kw).map(move |j| (i, j)))
                .map(|(i, j)| at(i, j))
                .collect();
            let (lo, hi) = vals
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let span = if hi > lo { hi - lo } else { 1.0 };
            let x0 = (fi % cols) as u32 * (tile_w + 1) + 1;
            let y0 = ((fi / cols) * cin + ci) as u32 * (tile_h + 1) + 1;
            for i in 0..kh {
                for j in 0..kw {
                    let g = (((at(i, j) - lo) / span) * 255.0).round() as u8;
                    for dy in 0..scale {
                        for dx in 0..scale {
                            img.put_pixel(
                                x0 + j as u32 * scale + dx,
                                y0 + i as u32 * scale + dy,
                                Luma([g]),
                            );
                        }
                    }
                }
            }
        }
    }
    save_atomic(path, |p| img.save(p))?;
    Ok((width, height))
}

const COLOURS: [[u8; 3]; 4] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]];

/// Panels side by side (e.g. loss, accuracy), each with its series drawn as
/// lines over the epochs; colour i is series i (train, then validation).
pub fn curves(path: &Path, panels: &[(String, Vec<Vec<f32>>)]) -> Result<(u32, u32)> {
    let (pw, ph, margin) = (360u32, 260u32, 30u32);
    let width = pw * panels.len().max(1) as u32;
    let mut img = RgbImage::from_pixel(width, ph, Rgb([255, 255, 255]));
    for (p, (_, series)) in panels.iter().enumerate() {
        let x0 = p as u32 * pw + margin;
        let (w, h) = (pw - 2 * margin, ph - 2 * margin);
        // axes
        for x in x0..=x0 + w {
            img.put_pixel(x, margin + h, Rgb([0, 0, 0]));
        }
        for y in margin..=margin + h {
            img.put_pixel(x0, y, Rgb([0, 0, 0]));
        }
        let all: Vec<f32> = series
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if all.is_empty() {
            continue;
        }
        let (lo, hi) = all
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        for (si, s) in series.iter().enumerate() {
            let colour = Rgb(COLOURS[si % COLOURS.len()]);
            let n = s.len().max(2) - 1;
            let pt = |i: usize, v: f32| {
                let x = x0 as f32 + w as f32 * i as f32 / n as f32;
                let y = (margin + h) as f32 - h as f32 * (v - lo) / span;
                (x, y)
            };
            for i in 0..s.len() {
                let (x, y) = pt(i, s[i]);
                for dx in -2i32..=2 {
                    for dy in -2i32..=2 {
                        let (px, py) = (x as i32 + dx, y as i32 + dy);
                        if px >= 0 && py >= 0 && (px as u32) < width && (py as u32) < ph {
                            img.put_pixel(px as u32, py as u32, colour);
                        }
                    }
                }
                if i + 1 < s.len() {
                    let (x2, y2) = pt(i + 1, s[i + 1]);
                    let steps = ((x2 - x).abs().max((y2 - y).abs()) as usize).max(1);
                    for k in 0..=steps {
                        let t = k as f32 / steps as f32;
                        let (px, py) = (x + (x2 - x) * t, y + (y2 - y) * t);
                        if px >= 0.0 && py >= 0.0 && (px as u32) < width && (py as u32) < ph {
                            img.put_pixel(px as u32, py as u32, colour);
                        }
                    }
                }
            }
        }
    }
    save_atomic(path, |p| img.save(p))?;
    Ok((width, ph))
}
