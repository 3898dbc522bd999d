//! Property tests of the image transforms and the streaming loader: for any
//! image size, output size, crop range, jitter and normalisation,
//! - the sample has the output's shape and values in the normalised range
//!   of [0, 1], never NaN;
//! - the same seed gives the same sample, bit for bit;
//! - a stream gives the same batches whatever its number of workers.

use std::path::PathBuf;

use proptest::prelude::*;
use strata_core::Rng;
use strata_data::{
    Augmentation, ColorJitter, DecodedImage, ImageStream, ImageStreamConfig, ImageTransform,
    RandomResizedCrop,
};

fn image(h: usize, w: usize, c: usize, seed: u64) -> DecodedImage {
    let mut rng = Rng::new(seed);
    DecodedImage {
        height: h,
        width: w,
        channels: c,
        pixels: (0..h * w * c).map(|_| rng.below(256) as u8).collect(),
    }
}

fn transform() -> impl Strategy<Value = ImageTransform> {
    (
        (
            1usize..40,
            1usize..40,
            prop_oneof![Just(1usize), Just(3usize)],
        ),
        (0.05f32..1.0, 0.0f32..1.0),
        (0.2f32..1.0, 1.0f32..5.0),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        (0.0f32..1.0, 0.0f32..1.0, 0.0f32..1.0, 0.0f32..0.5),
        (0.2f32..1.0, -1.0f32..1.0, 0.1f32..2.0),
    )
        .prop_map(
            |((h, w, c), (s0, ds), (r0, r1), (crop, flip, jit), (b, k, s, hue), (frac, m, sd))| {
                let augment = (crop || flip || jit).then_some(Augmentation {
                    crop: crop.then_some(RandomResizedCrop {
                        scale: (s0, (s0 + ds).min(1.0)),
                        ratio: (r0, r1),
                    }),
                    flip_horizontal: flip,
                    jitter: jit.then_some(ColorJitter {
                        brightness: b,
                        contrast: k,
                        saturation: s,
                        hue,
                    }),
                });
                ImageTransform {
                    height: h,
                    width: w,
                    channels: c,
                    crop_fraction: frac,
                    augment,
                    mean: vec![m],
                    std: vec![sd],
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn transforms_keep_shape_range_and_seed(
        t in transform(),
        (h, w) in (1usize..60, 1usize..60),
        seed in any::<u64>(),
    ) {
        prop_assert!(t.validate().is_ok(), "{t:?}");
        let img = image(h, w, t.channels, seed);
        let a = t.apply(&img, &mut Rng::new(seed));
        let b = t.apply(&img, &mut Rng::new(seed));
        prop_assert_eq!(a.len(), t.height * t.width * t.channels);
        let (lo, hi) = ((0.0 - t.mean[0]) / t.std[0], (1.0 - t.mean[0]) / t.std[0]);
        for v in &a {
            prop_assert!(v.is_finite());
            prop_assert!(*v >= lo - 1e-4 && *v <= hi + 1e-4, "{v} outside [{lo}, {hi}]");
        }
        prop_assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}

fn folder(n: usize) -> Vec<(PathBuf, usize)> {
    let d = std::env::temp_dir().join(format!("strata-aug-prop-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    (0..n)
        .map(|i| {
            let p = d.join(format!("{i}.png"));
            if !p.exists() {
                let img = image::RgbImage::from_fn(5 + i as u32 % 7, 4 + i as u32 % 5, |x, y| {
                    image::Rgb([(x * 40) as u8, (y * 50) as u8, (i * 9) as u8])
                });
                img.save(&p).unwrap();
            }
            (p, i % 2)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn streams_do_not_depend_on_worker_count(
        t in transform(),
        batch in 1usize..7,
        workers in 2usize..6,
        seed in any::<u64>(),
    ) {
        let files = folder(13);
        let make = |workers: usize| {
            ImageStream::new(
                files.clone(),
                ImageTransform { channels: 3, mean: vec![0.0], std: vec![1.0], ..t.clone() },
                ImageStreamConfig {
                    batch_size: batch,
                    seed,
                    workers,
                    in_flight: workers,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let run = |s: &ImageStream| -> Vec<(Vec<u32>, Vec<usize>)> {
            s.epoch(1, 0)
                .map(|b| {
                    let b = b.unwrap();
                    (b.inputs.to_vec().iter().map(|v| v.to_bits()).collect(), b.labels)
                })
                .collect()
        };
        let one = run(&make(1));
        prop_assert_eq!(one.len(), 13usize.div_ceil(batch));
        prop_assert_eq!(run(&make(workers)), one);
    }
}
