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
