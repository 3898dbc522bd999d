//! `ImageStream`: an image folder read as training goes, so memory does not
//! grow with the folder. The files are listed once; each epoch, worker
//! threads decode, crop, augment and normalise whole batches ahead of the
//! consumer, at most `in_flight` batches ahead, and the batches come out in
//! order.
//!
//! Determinism: the order depends only on (seed, epoch), and each sample's
//! random transform only on (seed, epoch, the sample's index in the file
//! list), so the batches are the same whatever the number of workers.
//! A file that cannot be read or decoded is left out of its batch and
//! reported with it, or is an error naming it with `strict`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use strata_core::{Rng, Tensor};

use crate::error::{DataError, Result};
use crate::transforms::{decode_image, ImageTransform};

/// How an [`ImageStream`] batches its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageStreamConfig {
    /// Images per batch (> 0).
    pub batch_size: usize,
    /// A new order every epoch; otherwise the file list's order.
    pub shuffle: bool,
    /// Seed of the order and of the random transforms.
    pub seed: u64,
    /// Skip a final batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Threads that decode and transform (> 0).
    pub workers: usize,
    /// Batches prepared ahead of the consumer (> 0): the bound on memory.
    pub in_flight: usize,
    /// Stop at the first unreadable image instead of skipping it.
    pub strict: bool,
}

impl Default for ImageStreamConfig {
    fn default() -> Self {
        ImageStreamConfig {
            batch_size: 32,
            shuffle: true,
            seed: 0,
            drop_last: false,
            workers: 2,
            in_flight: 4,
            strict: false,
        }
    }
}

/// One batch of images: inputs (B, H, W, C), their class ids, and the files
/// left out because they could not be read (with the reason).
#[derive(Debug, Clone)]
pub struct StreamBatch {
    pub inputs: Tensor,
    pub labels: Vec<usize>,
    /// Index of each sample in the stream's file list.
    pub indices: Vec<usize>,
    /// Position of each sample in its whole batch (for a rank's part of a
    /// batch, [`ImageStream::epoch_part`], where the part starts counts).
    pub positions: Vec<usize>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// Image files with class ids, decoded on demand by worker threads.
#[derive(Debug, Clone)]
pub struct ImageStream {
    files: Arc<Vec<(PathBuf, usize)>>,
    transform: Arc<ImageTransform>,
    config: ImageStreamConfig,
}

/// SplitMix64 finaliser: decorrelates nearby seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl ImageStream {
    /// A stream over `files` (path, class id); checks the configuration
    /// and the transform.
    pub fn new(
        files: Vec<(PathBuf, usize)>,
        transform: ImageTransform,
        config: ImageStreamConfig,
    ) -> Result<ImageStream> {
        let what = "ImageStream::new";
        for (field, v) in [
            ("batch_size", config.batch_size),
            ("workers", config.workers),
            ("in_flight", config.in_flight),
        ] {
            if v == 0 {
                return Err(DataError::arg(what, field, "must be at least 1"));
            }
        }
        transform
            .validate()
            .map_err(|m| DataError::arg(what, "transform", m))?;
        Ok(ImageStream {
            files: Arc::new(files),
            transform: Arc::new(transform),
            config,
        })
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when there are no files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The files and their class ids, in list order.
    pub fn files(&self) -> &[(PathBuf, usize)] {
        &self.files
    }

    /// The per-image transform.
    pub fn transform(&self) -> &ImageTransform {
        &self.transform
    }

    /// The configuration.
    pub fn config(&self) -> &ImageStreamConfig {
        &self.config
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.files.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The file order of `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.files.len()).collect();
        if self.config.shuffle {
            Rng::new(mix(self.config.seed ^ mix(epoch))).shuffle(&mut order);
        }
        order
    }

    /// The generator of sample `index`'s random transform in `epoch`.
    fn sample_rng(seed: u64, epoch: u64, index: usize) -> Rng {
        Rng::new(mix(mix(seed ^ mix(epoch)) ^ mix(index as u64)))
    }

    /// The batches of `epoch` from batch `first` on, prepared ahead by the
    /// worker threads.
    pub fn epoch(&self, epoch: u64, first: usize) -> StreamEpoch {
        self.epoch_part(epoch, first, Arc::new(|len| 0..len))
    }

    /// [`ImageStream::epoch`] in which every batch of `len` samples holds
    /// only those at positions `part(len)`: a data-parallel rank decodes its
    /// own part of each batch and no other. The order, each sample's
    /// transform and the batch boundaries are those of the whole epoch.
    pub fn epoch_part(&self, epoch: u64, first: usize, part: BatchPart) -> StreamEpoch {
        let total = self.num_batches();
        let first = first.min(total);
        let order = Arc::new(self.epoch_order(epoch));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next: first,
                delivered: first,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let (tx, rx) = channel::<(usize, Result<StreamBatch>)>();
        let mut handles = Vec::new();
        let mut spawn_error = None;
        for w in 0..self.config.workers.min(total - first).max(1) {
            let (shared, tx) = (Arc::clone(&shared), tx.clone());
            let (files, order) = (Arc::clone(&self.files), Arc::clone(&order));
            let transform = Arc::clone(&self.transform);
            let cfg = self.config.clone();
            let part = Arc::clone(&part);
            let spawned = std::thread::Builder::new()
                .name(format!("strata-images-{w}"))
                .spawn(move || {
                    while let Some(b) = shared.take(total, cfg.in_flight) {
                        let lo = b * cfg.batch_size;
                        let hi = (lo + cfg.batch_size).min(order.len());
                        let part = part(hi - lo);
                        let (lo, hi, at) = (lo + part.start, lo + part.end, part.start);
                        // a decoder that panics on a hostile file must not
                        // leave the consumer waiting for this batch forever
                        let batch = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            make_batch(&files, &order[lo..hi], at, &transform, &cfg, epoch)
                        }))
                        .unwrap_or_else(|_| {
                            Err(DataError::arg(
                                "ImageStream",
                                "batch",
                                format!("decoding batch {b} panicked (a hostile image file?)"),
                            ))
                        });
                        if tx.send((b, batch)).is_err() {
                            return;
                        }
                    }
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    spawn_error = Some(DataError::arg(
                        "ImageStream::epoch",
                        "workers",
                        format!("cannot start a decoding thread: {e}"),
                    ));
                    break;
                }
            }
        }
        StreamEpoch {
            rx: Some(rx),
            handles,
            shared,
            pending: BTreeMap::new(),
            expect: first,
            total,
            failed: spawn_error.is_some() && total > first,
            spawn_error,
        }
    }
}

/// Decodes and transforms the files at `indices` into one batch.
/// The positions of a batch of `len` samples that one reader takes.
pub type BatchPart = Arc<dyn Fn(usize) -> std::ops::Range<usize> + Send + Sync>;

/// The samples `indices` (file-list indices, the first at position `at` of
/// its batch) decoded and transformed.
fn make_batch(
    files: &[(PathBuf, usize)],
    indices: &[usize],
    at: usize,
    transform: &ImageTransform,
    cfg: &ImageStreamConfig,
    epoch: u64,
) -> Result<StreamBatch> {
    let per = transform.sample_len();
    let mut data = vec![0.0f32; indices.len() * per];
    let (mut labels, mut kept, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    let mut positions = Vec::new();
    for (pos, &i) in indices.iter().enumerate() {
        let (path, label) = &files[i];
        let decoded = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| decode_image(&bytes, transform.channels));
        match decoded {
            Ok(img) => {
                let slot = &mut data[kept.len() * per..(kept.len() + 1) * per];
                let mut rng = ImageStream::sample_rng(cfg.seed, epoch, i);
                transform.apply_into(&img, &mut rng, slot);
                labels.push(*label);
                kept.push(i);
                positions.push(at + pos);
            }
            Err(message) if cfg.strict => {
                return Err(DataError::Image {
                    path: path.display().to_string(),
                    message,
                })
            }
            Err(message) => skipped.push((path.clone(), message)),
        }
    }
    data.truncate(kept.len() * per);
    let inputs = Tensor::from_vec(
        data,
        &[
            kept.len(),
            transform.height,
            transform.width,
            transform.channels,
        ],
    )?;
    Ok(StreamBatch {
        inputs,
        labels,
        indices: kept,
        positions,
        skipped,
    })
}

struct State {
    /// The next batch a worker takes.
    next: usize,
    /// Batches handed to the consumer so far.
    delivered: usize,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    /// The next batch to prepare, once fewer than `in_flight` are ahead of
    /// the consumer; `None` when the epoch is done or stopped.
    fn take(&self, total: usize, in_flight: usize) -> Option<usize> {
        let mut s = self.state.lock().ok()?;
        loop {
            if s.stop || s.next >= total {
                return None;
            }
            if s.next < s.delivered + in_flight {
                s.next += 1;
                return Some(s.next - 1);
            }
            s = self.wake.wait(s).ok()?;
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
        self.wake.notify_all();
    }
}

/// The batches of one epoch, in order; ends after yielding an error.
pub struct StreamEpoch {
    rx: Option<Receiver<(usize, Result<StreamBatch>)>>,
    handles: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    pending: BTreeMap<usize, Result<StreamBatch>>,
    expect: usize,
    total: usize,
    failed: bool,
    spawn_error: Option<DataError>,
}

impl Iterator for StreamEpoch {
    type Item = Result<StreamBatch>;

    fn next(&mut self) -> Option<Result<StreamBatch>> {
        if let Some(e) = self.spawn_error.take() {
            self.expect = self.total;
            return Some(Err(e));
        }
        if self.expect >= self.total || self.failed {
            return None;
        }
        loop {
            if let Some(batch) = self.pending.remove(&self.expect) {
                self.expect += 1;
                self.shared.update(|s| s.delivered += 1);
                if batch.is_err() {
                    self.failed = true;
                }
                return Some(batch);
            }
            match self.rx.as_ref()?.recv() {
                Ok((b, batch)) => {
                    self.pending.insert(b, batch);
                }
                Err(_) => {
                    self.failed = true;
                    return Some(Err(DataError::arg(
                        "ImageStream",
                        "workers",
                        "a decoding thread stopped before its batch was done (it panicked)",
                    )));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.total - self.expect.min(self.total);
        (0, Some(n + usize::from(self.spawn_error.is_some())))
    }
}

impl Drop for StreamEpoch {
    fn drop(&mut self) {
        self.shared.update(|s| s.stop = true);
        self.rx.take();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::{Augmentation, ColorJitter, RandomResizedCrop};

    fn folder(tag: &str, n: usize, corrupt: bool) -> Vec<(PathBuf, usize)> {
        let d = std::env::temp_dir().join(format!("strata-stream-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let mut files = Vec::new();
        for i in 0..n {
            let p = d.join(format!("img{i:03}.png"));
            let img = image::RgbImage::from_fn(9 + i as u32 % 5, 7 + i as u32 % 3, |x, y| {
                image::Rgb([(i * 20) as u8, (x * 25) as u8, (y * 30) as u8])
            });
            img.save(&p).unwrap();
            files.push((p, i % 3));
        }
        if corrupt {
            let p = d.join("broken.png");
            std::fs::write(&p, b"\x89PNG\r\n\x1a\n truncated").unwrap();
            files.insert(n / 2, (p, 1));
        }
        files
    }

    fn augmenting() -> ImageTransform {
        ImageTransform {
            augment: Some(Augmentation {
                crop: Some(RandomResizedCrop::default()),
                flip_horizontal: true,
                jitter: Some(ColorJitter {
                    brightness: 0.3,
                    contrast: 0.3,
                    saturation: 0.3,
                    hue: 0.05,
                }),
            }),
            ..ImageTransform::resize(6, 5, 3)
        }
    }

    fn run(stream: &ImageStream, epoch: u64) -> Vec<(Vec<f32>, Vec<usize>)> {
        stream
            .epoch(epoch, 0)
            .map(|b| {
                let b = b.unwrap();
                (b.inputs.to_vec(), b.labels)
            })
            .collect()
    }

    #[test]
    fn same_batches_whatever_the_number_of_workers() {
        let files = folder("workers", 23, false);
        let make = |workers, in_flight| {
            ImageStream::new(
                files.clone(),
                augmenting(),
                ImageStreamConfig {
                    batch_size: 4,
                    seed: 5,
                    workers,
                    in_flight,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let one = make(1, 1);
        assert_eq!(one.num_batches(), 6);
        let a = run(&one, 2);
        assert_eq!(a.len(), 6);
        assert_eq!(a[5].1.len(), 3);
        for (w, f) in [(2, 1), (3, 2), (8, 16)] {
            assert_eq!(run(&make(w, f), 2), a, "{w} workers, {f} in flight");
        }
        assert_ne!(run(&one, 3), a, "epochs differ");
        let mut labels: Vec<usize> = a.iter().flat_map(|(_, l)| l.clone()).collect();
        labels.sort();
        let mut want: Vec<usize> = files.iter().map(|(_, l)| *l).collect();
        want.sort();
        assert_eq!(labels, want);
        for (x, _) in &a {
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    /// Three readers' parts of every batch, put together, are the whole
    /// batch: the same samples, transforms, labels and positions; a corrupt
    /// file is skipped by the part that holds it.
    #[test]
    fn parts_of_each_batch_make_the_whole_batch() {
        let files = folder("parts", 14, true);
        let s = ImageStream::new(
            files,
            augmenting(),
            ImageStreamConfig {
                batch_size: 6,
                seed: 3,
                ..Default::default()
            },
        )
        .unwrap();
        let whole: Vec<StreamBatch> = s.epoch(2, 0).map(|b| b.unwrap()).collect();
        let parts: Vec<Vec<StreamBatch>> = (0..3)
            .map(|r| {
                let part: BatchPart = Arc::new(move |len| (r * len / 3)..((r + 1) * len / 3));
                s.epoch_part(2, 0, part).map(|b| b.unwrap()).collect()
            })
            .collect();
        assert_eq!(whole.len(), 3);
        let mut skipped = 0;
        for (b, w) in whole.iter().enumerate() {
            let mut data = Vec::new();
            let (mut labels, mut indices, mut positions) = (vec![], vec![], vec![]);
            for p in &parts {
                let p = &p[b];
                data.extend(p.inputs.to_vec());
                labels.extend(&p.labels);
                indices.extend(&p.indices);
                positions.extend(&p.positions);
                skipped += p.skipped.len();
            }
            assert_eq!(data, w.inputs.to_vec(), "batch {b}");
            assert_eq!(
                (&labels, &indices, &positions),
                (&w.labels, &w.indices, &w.positions)
            );
            assert!(positions.windows(2).all(|p| p[0] < p[1]));
        }
        assert_eq!(
            skipped,
            whole.iter().map(|w| w.skipped.len()).sum::<usize>()
        );
        assert_eq!(skipped, 1);
    }

    #[test]
    fn resumes_mid_epoch_with_the_same_batches() {
        let files = folder("resume", 10, false);
        let s = ImageStream::new(
            files,
            augmenting(),
            ImageStreamConfig {
                batch_size: 3,
                seed: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let all = run(&s, 0);
        let tail: Vec<_> = s
            .epoch(0, 2)
            .map(|b| {
                let b = b.unwrap();
                (b.inputs.to_vec(), b.labels)
            })
            .collect();
        assert_eq!(tail, all[2..].to_vec());
        assert_eq!(s.epoch(0, 99).count(), 0);
    }

    #[test]
    fn corrupt_files_are_skipped_or_refused() {
        let files = folder("corrupt", 8, true);
        let cfg = ImageStreamConfig {
            batch_size: 4,
            shuffle: false,
            ..Default::default()
        };
        let s = ImageStream::new(files.clone(), augmenting(), cfg.clone()).unwrap();
        let batches: Vec<StreamBatch> = s.epoch(0, 0).map(|b| b.unwrap()).collect();
        let skipped: Vec<_> = batches.iter().flat_map(|b| b.skipped.clone()).collect();
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].0.ends_with("broken.png"));
        let kept: usize = batches.iter().map(|b| b.labels.len()).sum();
        assert_eq!(kept, 8);
        assert_eq!(batches[1].inputs.shape()[0], 3);

        let strict = ImageStream::new(
            files,
            augmenting(),
            ImageStreamConfig {
                strict: true,
                ..cfg
            },
        )
        .unwrap();
        let items: Vec<_> = strict.epoch(0, 0).collect();
        assert_eq!(items.len(), 2, "stops after the error");
        let e = items[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("broken.png"), "{e}");
    }

    #[test]
    fn early_drop_does_not_hang_and_bad_configs_are_refused() {
        let files = folder("drop", 12, false);
        let s = ImageStream::new(
            files.clone(),
            ImageTransform::resize(4, 4, 1),
            ImageStreamConfig {
                batch_size: 1,
                in_flight: 2,
                ..Default::default()
            },
        )
        .unwrap();
        let mut it = s.epoch(0, 0);
        let first = it.next().unwrap().unwrap();
        assert_eq!(first.inputs.shape(), &[1, 4, 4, 1]);
        drop(it);
        for cfg in [
            ImageStreamConfig {
                batch_size: 0,
                ..Default::default()
            },
            ImageStreamConfig {
                workers: 0,
                ..Default::default()
            },
            ImageStreamConfig {
                in_flight: 0,
                ..Default::default()
            },
        ] {
            assert!(ImageStream::new(files.clone(), ImageTransform::resize(4, 4, 1), cfg).is_err());
        }
        let empty = ImageStream::new(
            Vec::new(),
            ImageTransform::resize(4, 4, 1),
            ImageStreamConfig::default(),
        )
        .unwrap();
        assert_eq!(empty.epoch(0, 0).count(), 0);
    }
}
