//! A deterministic folder of photo-like JPEGs for the loader benchmarks:
//! ImageNet-like sizes (400-500 x 300-375), smooth gradients, soft-edged
//! textured shapes and sensor-like noise, quality 90, so that they decode and
//! compress like photos rather than like flat test patterns. The same
//! arguments give the same bytes every time (the generator and the encoder
//! use no clock, no thread count and no global state).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, RgbImage};

/// JPEG quality of every image.
pub const QUALITY: u8 = 90;
/// Written last into a finished folder; names the generator's version and
/// the arguments, so a half-written or older folder is made again.
const MARKER: &str = ".strata-bench-jpegs";
const VERSION: &str = "v1";

/// SplitMix64: a small, fixed generator, so the bytes never depend on
/// another crate's random numbers.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

/// A table of one period of a sine, indexed by phase in 1/1024 turns.
struct SineTable([f32; 1024]);

impl SineTable {
    fn new() -> Self {
        let mut t = [0.0f32; 1024];
        for (i, v) in t.iter_mut().enumerate() {
            *v = (i as f32 * std::f32::consts::TAU / 1024.0).sin();
        }
        SineTable(t)
    }
    /// sin(2π · turns).
    fn at(&self, turns: f32) -> f32 {
        self.0[((turns * 1024.0) as i64 & 1023) as usize]
    }
}

/// Amplitudes of the fine texture and of the per-pixel noise (0-255 scale).
const FINE: f32 = 28.0;
const NOISE: f32 = 42.0;

/// Random values on a grid of `cell`-pixel cells, interpolated bilinearly:
/// texture of about that scale, mostly in luminance.
struct ValueNoise {
    cell: usize,
    stride: usize,
    grid: Vec<[f32; 3]>,
}

impl ValueNoise {
    fn new(rng: &mut SplitMix, w: usize, h: usize, cell: usize, amp: f32) -> Self {
        let (gw, gh) = (w / cell + 2, h / cell + 2);
        let grid = (0..gw * gh)
            .map(|_| {
                let l = rng.range(-amp, amp);
                let c = amp / 4.0;
                [
                    l + rng.range(-c, c),
                    l + rng.range(-c, c),
                    l + rng.range(-c, c),
                ]
            })
            .collect();
        ValueNoise {
            cell,
            stride: gw,
            grid,
        }
    }

    fn at(&self, x: usize, y: usize) -> [f32; 3] {
        let (gx, gy) = (x / self.cell, y / self.cell);
        let fx = (x % self.cell) as f32 / self.cell as f32;
        let fy = (y % self.cell) as f32 / self.cell as f32;
        let i = gy * self.stride + gx;
        let (a, b) = (self.grid[i], self.grid[i + 1]);
        let (c, d) = (self.grid[i + self.stride], self.grid[i + self.stride + 1]);
        let mut out = [0.0; 3];
        for ch in 0..3 {
            let top = a[ch] + (b[ch] - a[ch]) * fx;
            let bottom = c[ch] + (d[ch] - c[ch]) * fx;
            out[ch] = top + (bottom - top) * fy;
        }
        out
    }
}

/// A soft-edged ellipse filled with its own colour and stripes.
struct Shape {
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    colour: [f32; 3],
    /// Stripe direction (cos, sin) over their period in pixels, amplitude.
    stripe: (f32, f32, f32),
    opacity: f32,
    /// 1 / (the edge's width in units of r²).
    sharpness: f32,
}

/// The pixels of image `index`: a deterministic function of `index` alone.
pub fn photo(index: usize) -> RgbImage {
    let mut rng = SplitMix(0x5EED_0000 ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let w = 400 + rng.below(101) as usize;
    let h = 300 + rng.below(76) as usize;
    let sine = SineTable::new();

    // background: a base colour, a linear gradient and two separable
    // low-frequency waves per channel (tables per row and per column)
    let mut col = vec![[0.0f32; 3]; w];
    let mut row = vec![[0.0f32; 3]; h];
    for ch in 0..3 {
        let base = rng.range(50.0, 200.0);
        let (gx, gy) = (rng.range(-80.0, 80.0), rng.range(-80.0, 80.0));
        for wave in 0..2 {
            let (px, py) = (rng.range(60.0, 400.0), rng.range(60.0, 400.0));
            let (ox, oy) = (rng.unit(), rng.unit());
            let amp = rng.range(10.0, 30.0);
            for (x, c) in col.iter_mut().enumerate() {
                let g = if wave == 0 {
                    base + gx * x as f32 / w as f32
                } else {
                    0.0
                };
                c[ch] += g + amp * sine.at(x as f32 / px + ox);
            }
            for (y, r) in row.iter_mut().enumerate() {
                let g = if wave == 0 {
                    gy * y as f32 / h as f32
                } else {
                    0.0
                };
                r[ch] += g + amp * sine.at(y as f32 / py + oy);
            }
        }
    }

    // texture: value noise on a coarse and a fine grid, mostly luminance
    let coarse = ValueNoise::new(&mut rng, w, h, 6, 22.0);
    let fine = ValueNoise::new(&mut rng, w, h, 2, FINE);

    let shapes: Vec<Shape> = (0..3 + rng.below(5))
        .map(|_| {
            let angle = rng.unit();
            let period = rng.range(4.0, 24.0);
            let (rx, ry) = (rng.range(25.0, 160.0), rng.range(25.0, 160.0));
            Shape {
                cx: rng.range(0.0, w as f32),
                cy: rng.range(0.0, h as f32),
                rx,
                ry,
                sharpness: rx.min(ry) / 6.0,
                colour: [
                    rng.range(20.0, 235.0),
                    rng.range(20.0, 235.0),
                    rng.range(20.0, 235.0),
                ],
                stripe: (
                    sine.at(angle + 0.25) / period,
                    sine.at(angle) / period,
                    rng.range(5.0, 25.0),
                ),
                opacity: rng.range(0.6, 1.0),
            }
        })
        .collect();

    let mut pixels = vec![0u8; w * h * 3];
    for ((y, r), out_row) in row.iter().enumerate().zip(pixels.chunks_exact_mut(w * 3)) {
        for ((x, c), out) in col.iter().enumerate().zip(out_row.chunks_exact_mut(3)) {
            let (coarse, fine) = (coarse.at(x, y), fine.at(x, y));
            let mut px: [f32; 3] = std::array::from_fn(|ch| c[ch] + r[ch] + coarse[ch] + fine[ch]);
            for s in &shapes {
                let (dx, dy) = ((x as f32 - s.cx) / s.rx, (y as f32 - s.cy) / s.ry);
                let r2 = dx * dx + dy * dy;
                if r2 >= 1.0 {
                    continue;
                }
                // about three pixels of soft edge
                let edge = ((1.0 - r2) * s.sharpness).min(1.0) * s.opacity;
                let stripe = s.stripe.2 * sine.at(x as f32 * s.stripe.0 + y as f32 * s.stripe.1);
                for (p, colour) in px.iter_mut().zip(s.colour) {
                    *p += (colour + stripe - *p) * edge;
                }
            }
            // sensor noise, a little per channel
            let n = rng.next_u64();
            for (ch, (o, p)) in out.iter_mut().zip(px).enumerate() {
                let noise = ((n >> (16 * ch)) & 0xFF) as f32 / 255.0 - 0.5;
                *o = (p + NOISE * noise).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::from_raw(w as u32, h as u32, pixels).expect("w * h * 3 pixels")
}

/// Image `index` as JPEG bytes at [`QUALITY`].
pub fn jpeg(index: usize) -> Vec<u8> {
    let img = photo(index);
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .expect("encoding to memory does not fail");
    out
}

/// Where image `index` of `classes` goes under `dir`.
fn file_of(dir: &Path, index: usize, classes: usize) -> PathBuf {
    dir.join(format!("class{:03}", index % classes))
        .join(format!("img{index:05}.jpg"))
}

fn marker_text(count: usize, classes: usize) -> String {
    format!("{VERSION} count={count} classes={classes} quality={QUALITY}\n")
}

/// What [`write_folder`] made.
pub struct Made {
    pub bytes: u64,
    pub secs: f64,
}

/// Writes `count` images into `classes` sub-folders of `dir` (image `i` in
/// class `i % classes`), on all cores; the bytes do not depend on the cores.
pub fn write_folder(dir: &Path, count: usize, classes: usize) -> io::Result<Made> {
    let t0 = Instant::now();
    let classes = classes.max(1);
    let _ = std::fs::remove_file(dir.join(MARKER));
    for k in 0..classes.min(count) {
        std::fs::create_dir_all(file_of(dir, k, classes).parent().unwrap_or(dir))?;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let results: Vec<io::Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut bytes = 0u64;
                    for i in (t..count).step_by(threads) {
                        let data = jpeg(i);
                        bytes += data.len() as u64;
                        std::fs::write(file_of(dir, i, classes), data)?;
                    }
                    Ok(bytes)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a writer panicked")))
            })
            .collect()
    });
    let mut bytes = 0;
    for r in results {
        bytes += r?;
    }
    std::fs::write(dir.join(MARKER), marker_text(count, classes))?;
    Ok(Made {
        bytes,
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// The folder of `count` images in `classes` classes under `root`
/// (`root/n{count}-k{classes}`), made first unless a finished one is there.
pub fn ensure_folder(root: &Path, count: usize, classes: usize) -> io::Result<PathBuf> {
    let dir = root.join(format!("n{count}-k{classes}"));
    let done = std::fs::read_to_string(dir.join(MARKER)).ok();
    if done.as_deref() != Some(marker_text(count, classes).as_str()) {
        println!(
            "# making {count} JPEGs in {} (once; kept for later runs)",
            dir.display()
        );
        let made = write_folder(&dir, count, classes)?;
        println!(
            "# made {count} JPEGs, {:.1} KB each on average, in {:.1} s",
            made.bytes as f64 / count.max(1) as f64 / 1024.0,
            made.secs
        );
    }
    Ok(dir)
}

/// The default cache of generated folders: the workspace's `target/bench-jpegs`.
pub fn default_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = crate_dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(crate_dir);
    workspace.join("target").join("bench-jpegs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_every_time_and_imagenet_like_sizes() {
        for i in [0, 7] {
            let a = jpeg(i);
            assert_eq!(a, jpeg(i), "image {i} is deterministic");
            let img = image::load_from_memory(&a).unwrap();
            assert!((400..=500).contains(&img.width()), "{}", img.width());
            assert!((300..=375).contains(&img.height()), "{}", img.height());
        }
        assert_ne!(jpeg(0), jpeg(1));
    }

    #[test]
    fn a_folder_is_made_once_in_class_folders() {
        let root = std::env::temp_dir().join(format!("strata-bench-jpegs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = ensure_folder(&root, 5, 2).unwrap();
        let (classes, files) = strata_data::list_class_files(&dir).unwrap();
        assert_eq!(classes, ["class000", "class001"]);
        assert_eq!(files.len(), 5);
        let first = std::fs::metadata(&files[0].0).unwrap().modified().unwrap();
        assert_eq!(ensure_folder(&root, 5, 2).unwrap(), dir);
        let again = std::fs::metadata(&files[0].0).unwrap().modified().unwrap();
        assert_eq!(first, again, "a finished folder is not written again");
        let _ = std::fs::remove_dir_all(&root);
    }
}
