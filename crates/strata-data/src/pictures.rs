//! Small PNG pictures that make a network visible: a grid of convolution
//! kernels and loss/accuracy curves. Files are written to a temporary name and renamed.

use std::path::Path;
use std::sync::OnceLock;

use image::{GrayImage, Luma, Rgb, RgbImage};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::error::{DataError, Result};

/// A picture that could not be drawn or written, named by its final path.
pub(crate) fn image_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::io(
        path,
        std::io::Error::other(format!("cannot write the picture: {e}")),
    )
}

pub(crate) fn save_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> image::ImageResult<()>,
) -> Result<()> {
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

/// Grey of the separators and gaps between tiles.
const SEPARATOR: u8 = 40;
/// Pixels between filters whose input channels are tiles of their own, so a
/// filter's row of tiles stands apart from the next filter's.
const FILTER_GAP: u32 = 3;
/// A kernel picture larger than this is refused (a smaller scale fits).
const MAX_PIXELS: u64 = 1 << 28;

/// Where the tiles go: each filter is a block of `block_cols` x `block_rows`
/// tiles 1 pixel apart, the blocks a `cols` x `rows` grid `gap` pixels apart.
#[derive(Clone, Copy, Debug)]
struct GridLayout {
    tile: (u32, u32),
    block_cols: u32,
    block_rows: u32,
    cols: u32,
    rows: u32,
    gap: u32,
}

impl GridLayout {
    fn new(
        tile: (u32, u32),
        per_filter: usize,
        filters: usize,
        gap: u32,
        block_cols: usize,
        cols: usize,
    ) -> Self {
        GridLayout {
            tile,
            block_cols: block_cols as u32,
            block_rows: per_filter.div_ceil(block_cols) as u32,
            cols: cols as u32,
            rows: filters.div_ceil(cols) as u32,
            gap,
        }
    }

    /// One tile per filter in a near-square grid (ceil(sqrt(F)) columns), 1-pixel separators.
    fn single(tile: (u32, u32), filters: usize) -> Self {
        let cols = ((filters as f64).sqrt().ceil() as usize).max(1);
        Self::new(tile, 1, filters, 1, 1, cols)
    }

    /// `per_filter` tiles per filter: one row of them per filter when the
    /// filters can be arranged between 1:2 and 2:1, else rows wrapped too
    /// (a depthwise kernel's channels); whichever is nearest to square.
    fn blocks(tile: (u32, u32), per_filter: usize, filters: usize) -> Self {
        let squareness = |l: &GridLayout| (l.width() as f64 / l.height() as f64).ln().abs();
        let nearest = |block_cols: &mut dyn Iterator<Item = usize>| {
            block_cols
                .flat_map(|bc| (1..=filters).map(move |c| (bc, c)))
                .map(|(bc, c)| Self::new(tile, per_filter, filters, FILTER_GAP, bc, c))
                .min_by(|a, b| squareness(a).total_cmp(&squareness(b)))
        };
        match nearest(&mut std::iter::once(per_filter)) {
            Some(l) if squareness(&l) <= 2f64.ln() + 1e-9 => l,
            _ => nearest(&mut (1..=per_filter)).unwrap_or_else(|| Self::single(tile, filters)),
        }
    }

    fn block_size(&self) -> (u64, u64) {
        (
            self.block_cols as u64 * (self.tile.0 as u64 + 1) - 1,
            self.block_rows as u64 * (self.tile.1 as u64 + 1) - 1,
        )
    }

    fn width(&self) -> u64 {
        self.gap as u64 + self.cols as u64 * (self.block_size().0 + self.gap as u64)
    }

    fn height(&self) -> u64 {
        self.gap as u64 + self.rows as u64 * (self.block_size().1 + self.gap as u64)
    }

    /// Top-left pixel of tile `t` of filter `f` (the picture's size is checked first).
    fn origin(&self, f: usize, t: usize) -> (u32, u32) {
        let (bw, bh) = self.block_size();
        let (f, t) = (f as u32, t as u32);
        (
            self.gap
                + (f % self.cols) * (bw as u32 + self.gap)
                + (t % self.block_cols) * (self.tile.0 + 1),
            self.gap
                + (f / self.cols) * (bh as u32 + self.gap)
                + (t / self.block_cols) * (self.tile.1 + 1),
        )
    }
}

/// Fills the `scale` x `scale` square of every weight of a kh x kw tile.
fn paint_tile<P: image::Pixel>(
    img: &mut image::ImageBuffer<P, Vec<P::Subpixel>>,
    (x0, y0): (u32, u32),
    (kh, kw, scale): (usize, usize, u32),
    pixel: impl Fn(usize, usize) -> P,
) {
    for i in 0..kh {
        for j in 0..kw {
            let p = pixel(i, j);
            for dy in 0..scale {
                for dx in 0..scale {
                    img.put_pixel(x0 + j as u32 * scale + dx, y0 + i as u32 * scale + dy, p);
                }
            }
        }
    }
}

/// The kernels of an HWIO convolution (kh, kw, C_in, F), `scale` pixels per
/// weight, filters in a near-square grid. With 3 input channels (an image
/// layer) each filter is one colour tile, R, G, B its channels, all scaled by
/// the layer's largest |weight| so 0 is mid-grey; otherwise each (filter,
/// input channel) is a grey tile scaled to its own min..max, a filter's tiles
/// side by side (a depthwise kernel (kh, kw, C, multiplier) alike). Returns (width, height).
pub fn filter_grid(path: &Path, kernel: &[f32], shape: &[usize], scale: u32) -> Result<(u32, u32)> {
    let what = || format!("convolution kernel for {}", path.display());
    let &[kh, kw, cin, f] = shape else {
        return Err(DataError::shape(
            what(),
            "4-d (kh, kw, in, out)",
            format!("{shape:?}"),
        ));
    };
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(kernel.len()) || kernel.is_empty() {
        return Err(DataError::shape(
            what(),
            format!(
                "{} weights of a {shape:?} kernel",
                count.map_or("more".into(), |c| c.to_string())
            ),
            format!("{} weights", kernel.len()),
        ));
    }
    let scale = scale.max(1);
    let tile = (
        (kw as u64).saturating_mul(scale as u64),
        (kh as u64).saturating_mul(scale as u64),
    );
    let rgb = cin == 3;
    let layout = if tile.0.saturating_mul(tile.1) > MAX_PIXELS {
        None
    } else {
        let tile = (tile.0 as u32, tile.1 as u32);
        Some(if rgb || cin == 1 {
            GridLayout::single(tile, f)
        } else {
            GridLayout::blocks(tile, cin, f)
        })
    };
    let Some(layout) = layout.filter(|l| l.width().saturating_mul(l.height()) <= MAX_PIXELS) else {
        return Err(DataError::arg(
            what(),
            "scale",
            format!("{shape:?} at {scale} px per weight is over {MAX_PIXELS} pixels; use a smaller scale"),
        ));
    };
    let (width, height) = (layout.width() as u32, layout.height() as u32);
    let at = |i: usize, j: usize, ci: usize, fi: usize| kernel[((i * kw + j) * cin + ci) * f + fi];
    if rgb {
        let peak = kernel
            .iter()
            .filter(|v| v.is_finite())
            .fold(0f32, |m, v| m.max(v.abs()));
        let peak = if peak > 0.0 { peak } else { 1.0 };
        let level = |v: f32| {
            if v.is_finite() {
                ((0.5 + 0.5 * v / peak) * 255.0).round().clamp(0.0, 255.0) as u8
            } else {
                128
            }
        };
        let mut img = RgbImage::from_pixel(width, height, Rgb([SEPARATOR; 3]));
        for fi in 0..f {
            paint_tile(&mut img, layout.origin(fi, 0), (kh, kw, scale), |i, j| {
                Rgb([
                    level(at(i, j, 0, fi)),
                    level(at(i, j, 1, fi)),
                    level(at(i, j, 2, fi)),
                ])
            });
        }
        save_atomic(path, |p| img.save_with_format(p, image::ImageFormat::Png))?;
    } else {
        let mut img = GrayImage::from_pixel(width, height, Luma([SEPARATOR]));
        for fi in 0..f {
            for ci in 0..cin {
                let (lo, hi) = (0..kh)
                    .flat_map(|i| (0..kw).map(move |j| at(i, j, ci, fi)))
                    .filter(|v| v.is_finite())
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
                        (a.min(v), b.max(v))
                    });
                let span = if hi > lo { hi - lo } else { 1.0 };
                paint_tile(&mut img, layout.origin(fi, ci), (kh, kw, scale), |i, j| {
                    let v = at(i, j, ci, fi);
                    Luma([if v.is_finite() {
                        (((v - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8
                    } else {
                        128
                    }])
                });
            }
        }
        save_atomic(path, |p| img.save_with_format(p, image::ImageFormat::Png))?;
    }
    Ok((width, height))
}

/// DejaVu Sans (assets/DejaVuSans-LICENSE.txt), so labels need no system fonts.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers the embedded font as plotters' "sans-serif", once per process.
pub(crate) fn font_ready() -> std::result::Result<(), &'static str> {
    static READY: OnceLock<bool> = OnceLock::new();
    if *READY.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        Err("the embedded font could not be read")
    }
}

/// Series colours: training (blue), validation (orange), then green and red.
const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];
const NAMES: [&str; 2] = ["training", "validation"];
/// One panel's size in pixels.
const PANEL: (u32, u32) = (480, 360);

/// At most about 10 integer epochs to label on an axis of `n` epochs.
fn epoch_ticks(n: usize) -> Vec<f64> {
    let step = (0..8)
        .flat_map(|e| [1, 2, 5].map(|m| m * 10usize.pow(e)))
        .find(|s| n.div_ceil(*s) <= 10)
        .unwrap_or(n.max(1));
    let mut ticks = vec![1.0];
    ticks.extend(
        (1..=n / step)
            .map(|k| (k * step) as f64)
            .filter(|&t| t - 1.0 >= step as f64 / 2.0),
    );
    ticks
}

/// The epoch axis: 0.5..n+0.5 (never zero wide), ticks only at the given integer epochs.
struct EpochAxis {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ranged for EpochAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// The y range over the finite values, padded so a flat or single value still has height.
fn value_range(values: impl Iterator<Item = f32>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v as f64), b.max(v as f64))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    // a difference below f32's resolution is a flat line
    let pad = if hi - lo > 1e-5 * hi.abs().max(lo.abs()) {
        0.05 * (hi - lo)
    } else {
        0.1 * hi.abs().max(1.0)
    };
    (lo - pad, hi + pad)
}

/// A y tick label: as many decimals as the axis span needs, none trailing;
/// powers of ten for very large or very small values.
fn value_label(v: f64, (lo, hi): (f64, f64)) -> String {
    let mag = lo.abs().max(hi.abs());
    if !(1e-3..1e5).contains(&mag) {
        return if v == 0.0 {
            "0".into()
        } else {
            format!("{v:.2e}")
        };
    }
    // ticks are at least (hi - lo) / 10 apart: enough decimals for a twentieth
    let decimals = (-((hi - lo) / 20.0).log10()).ceil().clamp(0.0, 6.0) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// Panels side by side, one per metric (e.g. loss, accuracy), each titled with
/// its key, over epochs 1..n with integer ticks; series 0 is "training"
/// (blue), series 1 "validation" (orange), drawn as lines with a dot per
/// epoch so a single epoch shows. Non-finite values are left out (they break
/// the line). Returns (width, height).
pub fn curves(path: &Path, panels: &[(String, Vec<Vec<f32>>)]) -> Result<(u32, u32)> {
    font_ready().map_err(|e| image_err(path, e))?;
    let (width, height) = (PANEL.0 * panels.len().max(1) as u32, PANEL.1);
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    draw_curves(&mut buf, (width, height), panels).map_err(|e| image_err(path, e))?;
    let img = RgbImage::from_raw(width, height, buf)
        .ok_or_else(|| image_err(path, "the plot buffer does not match its size"))?;
    save_atomic(path, |p| img.save_with_format(p, image::ImageFormat::Png))?;
    Ok((width, height))
}

pub(crate) type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw_curves(buf: &mut [u8], size: (u32, u32), panels: &[(String, Vec<Vec<f32>>)]) -> DrawResult {
    let root = BitMapBackend::with_buffer(buf, size).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for ((key, series), area) in panels.iter().zip(&areas) {
        draw_panel(area, key, series)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    key: &str,
    series: &[Vec<f32>],
) -> DrawResult {
    let epochs = series.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let (lo, hi) = value_range(series.iter().flatten().copied());
    // dots of 4 px, smaller once the epochs are closer than 16 px apart
    let radius = (PANEL.0 as usize / epochs / 4).clamp(1, 4) as i32;
    let x_axis = EpochAxis {
        inner: (0.5..epochs as f64 + 0.5).into(),
        ticks: epoch_ticks(epochs),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(key, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(x_axis, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(key)
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .y_label_formatter(&|y| value_label(*y, (lo, hi)))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(WHITE)
        .draw()?;
    for (si, s) in series.iter().enumerate() {
        let colour = COLOURS[si % COLOURS.len()];
        let points: Vec<Option<(f64, f64)>> = s
            .iter()
            .enumerate()
            .map(|(i, v)| v.is_finite().then_some(((i + 1) as f64, *v as f64)))
            .collect();
        for run in points.split(Option::is_none).filter(|r| r.len() > 1) {
            chart.draw_series(LineSeries::new(
                run.iter().flatten().copied(),
                colour.stroke_width(2),
            ))?;
        }
        let dots = points
            .iter()
            .flatten()
            .map(|&p| Circle::new(p, radius, colour.filled()));
        let anno = chart.draw_series(dots)?;
        if !s.is_empty() {
            let name = NAMES
                .get(si)
                .map_or_else(|| format!("series {}", si + 1), |n| n.to_string());
            anno.label(name).legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (20, 0)], colour.stroke_width(2))
                    + Circle::new((10, 0), 4, colour.filled())
            });
        }
    }
    // The legend goes where the curves are not: a falling loss ends low, a rising accuracy high.
    let ends: Vec<f64> = series
        .iter()
        .filter_map(|s| s.iter().rev().find(|v| v.is_finite()))
        .map(|&v| (v as f64 - lo) / (hi - lo))
        .collect();
    let ends_high = !ends.is_empty() && ends.iter().sum::<f64>() / ends.len() as f64 > 0.5;
    chart
        .configure_series_labels()
        .position(if ends_high {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        })
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::PathBuf;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("strata-pictures-{tag}-{}", std::process::id()));
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

    /// Pixels within 30 per channel of `c` in columns `xs`.
    fn near(img: &RgbImage, c: RGBColor, xs: std::ops::Range<u32>) -> usize {
        img.enumerate_pixels()
            .filter(|(x, _, p)| {
                xs.contains(x)
                    && p.0
                        .iter()
                        .zip([c.0, c.1, c.2])
                        .all(|(&a, b)| a.abs_diff(b) <= 30)
            })
            .count()
    }

    fn history(epochs: usize) -> Vec<(String, Vec<Vec<f32>>)> {
        let f = |a: f32, b: f32| (0..epochs).map(|e| a + b * (e as f32 + 1.0).ln()).collect();
        vec![
            ("loss".into(), vec![f(2.3, -0.6), f(2.25, -0.5)]),
            ("accuracy".into(), vec![f(0.2, 0.3), f(0.22, 0.27)]),
        ]
    }

    #[test]
    fn one_epoch_curves_show_a_dot_per_series_in_each_panel() {
        let d = tmp("one");
        let p = d.join("curves.png");
        let (w, h) = curves(&p, &history(1)).unwrap();
        assert_eq!((w, h), (2 * PANEL.0, PANEL.1));
        let img = read(&p);
        assert_eq!(img.dimensions(), (w, h));
        assert!(
            distinct(&img) > 50,
            "axes, ticks and labels are anti-aliased text"
        );
        for panel in 0..2 {
            // epoch 1 is the middle of the plot area; the legend sits in a right-hand corner
            let xs = panel * PANEL.0 + 230..panel * PANEL.0 + 320;
            for c in &COLOURS[..2] {
                assert!(
                    near(&img, *c, xs.clone()) >= 20,
                    "panel {panel}: no dot of {c:?}"
                );
            }
        }
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn ten_epoch_curves_have_lines_labels_and_legend() {
        let d = tmp("ten");
        let p = d.join("curves.png");
        let (w, h) = curves(&p, &history(10)).unwrap();
        let img = read(&p);
        assert_eq!(img.dimensions(), (w, h));
        assert!(distinct(&img) > 50);
        for c in &COLOURS[..2] {
            assert!(near(&img, *c, 0..PANEL.0) > 300, "loss panel lacks {c:?}");
            assert!(
                near(&img, *c, PANEL.0..w) > 300,
                "accuracy panel lacks {c:?}"
            );
        }
        assert_eq!(value_label(0.45, (0.0, 1.0)), "0.45");
        assert_eq!(value_label(0.5, (0.0, 1.0)), "0.5");
        assert_eq!(value_label(2.0, (0.0, 2.5)), "2");
        assert_eq!(value_label(-0.0001, (-1.0, 1.0)), "0");
        assert_eq!(value_label(3e38, (-3.4e38, 3.4e38)), "3.00e38");
        assert_eq!(epoch_ticks(1), [1.0]);
        assert_eq!(epoch_ticks(10), (1..=10).map(f64::from).collect::<Vec<_>>());
        assert_eq!(
            epoch_ticks(50),
            [1.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0]
        );
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn curves_survive_nan_infinity_and_empty_series() {
        let d = tmp("nan");
        let panels = vec![
            (
                "loss".to_string(),
                vec![vec![f32::NAN, 1.0, f32::INFINITY, 0.5], vec![f32::NAN; 4]],
            ),
            ("accuracy".to_string(), vec![vec![], vec![0.5]]),
            ("auc".to_string(), vec![vec![0.7; 3]]),
            ("tiny".to_string(), vec![vec![1.0, 1.0 + 1e-7, 1.0]]),
            (
                "huge".to_string(),
                vec![vec![f32::MAX, -f32::MAX], vec![1e30, 0.0]],
            ),
            (
                "long".to_string(),
                vec![(0..5000).map(|i| 1.0 / (1.0 + i as f32)).collect()],
            ),
        ];
        let (w, h) = curves(&d.join("a.png"), &panels).unwrap();
        assert_eq!(read(&d.join("a.png")).dimensions(), (w, h));
        assert_eq!(curves(&d.join("b.png"), &[]).unwrap(), PANEL);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn any_extension_gets_a_png_written_in_place() {
        let d = tmp("ext");
        let p = d.join("sub/curves.out");
        curves(&p, &history(3)).unwrap();
        assert_eq!(read(&p).dimensions(), (2 * PANEL.0, PANEL.1));
        let names: Vec<_> = std::fs::read_dir(d.join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
        std::fs::remove_dir_all(&d).ok();
    }

    /// Deterministic weights in -1..1.
    pub(crate) fn weights(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn a_first_layer_of_64_rgb_filters_is_a_near_square_colour_grid() {
        let d = tmp("rgb");
        let p = d.join("filters.png");
        let (w, h) = filter_grid(&p, &weights(7 * 7 * 3 * 64, 1), &[7, 7, 3, 64], 8).unwrap();
        assert_eq!((w, h), (8 * 57 + 1, 8 * 57 + 1));
        let img = read(&p);
        assert_eq!(img.dimensions(), (w, h));
        let ratio = w as f64 / h as f64;
        assert!((0.5..=2.0).contains(&ratio), "{w}x{h}");
        let coloured = img.pixels().filter(|p| p[0] != p[1]).count();
        assert!(
            coloured > (w * h / 2) as usize,
            "{coloured} coloured pixels"
        );
        assert_eq!(*img.get_pixel(0, 0), Rgb([SEPARATOR; 3]));
        // weight (i, j, c, f) -> pixel of tile f, with the layer's largest |w| as full scale
        let k = weights(7 * 7 * 3 * 64, 1);
        let peak = k.iter().fold(0f32, |m, v| m.max(v.abs()));
        let (fi, i, j) = (9, 2, 5);
        let (x, y) = (
            (fi % 8) as u32 * 57 + 1 + j * 8 + 3,
            (fi / 8) as u32 * 57 + 1 + i * 8 + 3,
        );
        for c in 0..3 {
            let v = k[((i as usize * 7 + j as usize) * 3 + c) * 64 + fi];
            let want = ((0.5 + 0.5 * v / peak) * 255.0).round() as u8;
            assert_eq!(img.get_pixel(x, y)[c], want);
        }
        // zero weights are mid-grey, NaN does not panic
        filter_grid(&p, &[0.0; 7 * 7 * 3 * 10], &[7, 7, 3, 10], 2).unwrap();
        assert_eq!(*read(&p).get_pixel(1, 1), Rgb([128; 3]));
        let mut nan = weights(3 * 3 * 3 * 5, 2);
        nan[4] = f32::NAN;
        nan[7] = f32::INFINITY;
        filter_grid(&p, &nan, &[3, 3, 3, 5], 4).unwrap();
        filter_grid(&p, &[f32::NAN; 27], &[3, 3, 3, 1], 4).unwrap();
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn grey_kernels_are_near_square_grids() {
        let d = tmp("grey");
        let p = d.join("f.png");
        // one input channel: one tile per filter, 2x2 tiles of 24 px
        assert_eq!(
            filter_grid(&p, &weights(36, 3), &[3, 3, 1, 4], 8).unwrap(),
            (51, 51)
        );
        let img = read(&p);
        assert!(img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
        assert!(distinct(&img) > 10);
        for (shape, scale) in [
            ([3, 3, 64, 64], 2), // a middle layer: a row of 64 tiles per filter
            ([3, 3, 16, 32], 4), // rows wrapped side by side
            ([3, 3, 32, 1], 8),  // depthwise, multiplier 1: the channels wrapped
            ([5, 5, 8, 2], 8),   // few filters, several channels
            ([1, 1, 256, 512], 1),
        ] {
            let n: usize = shape.iter().product();
            let (w, h) = filter_grid(&p, &weights(n, 4), &shape, scale).unwrap();
            let ratio = w as f64 / h as f64;
            assert!((0.5..=2.0).contains(&ratio), "{shape:?}: {w}x{h}");
            assert_eq!(read(&p).dimensions(), (w, h));
        }
        let mut nan = weights(9 * 2 * 4, 5);
        nan[0] = f32::NAN;
        filter_grid(&p, &nan, &[3, 3, 2, 4], 8).unwrap();
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn bad_kernels_are_errors_not_panics() {
        let d = tmp("bad");
        let p = d.join("f.png");
        assert!(matches!(
            filter_grid(&p, &[0.0; 9], &[3, 3], 8),
            Err(DataError::Shape { .. })
        ));
        assert!(matches!(
            filter_grid(&p, &[0.0; 9], &[3, 3, 1, 2], 8),
            Err(DataError::Shape { .. })
        ));
        assert!(filter_grid(&p, &[], &[3, 3, 0, 2], 8).is_err());
        assert!(filter_grid(&p, &[0.0; 9], &[usize::MAX, 3, 3, 2], 8).is_err());
        let e = filter_grid(&p, &vec![0.0; 3 * 3 * 512 * 512], &[3, 3, 512, 512], 64).unwrap_err();
        assert!(matches!(e, DataError::Argument { .. }), "{e}");
        assert!(!p.exists());
        std::fs::remove_dir_all(&d).ok();
    }
}
