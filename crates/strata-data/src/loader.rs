//! `DataLoader`: one epoch of batches from a [`Dataset`], shuffled with a
//! seed mixed with the epoch number, gathered (and augmented) on a background
//! thread that stays `prefetch` batches ahead through a bounded channel.
//!
//! Determinism: the order depends only on (seed, epoch), and each batch's
//! augmentation generator only on (seed, epoch, batch index), so results do
//! not depend on thread timing.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use strata_core::{Rng, Tensor};

use crate::augment::Augment;
use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// An augmentation applied to each gathered batch of inputs.
pub type AugmentFn = Arc<dyn Fn(&Tensor, &mut Rng) -> Result<Tensor> + Send + Sync>;

/// How a [`DataLoader`] batches a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLoaderConfig {
    /// Samples per batch (> 0).
    pub batch_size: usize,
    /// Shuffle every epoch (Keras `fit` default); otherwise dataset order.
    pub shuffle: bool,
    /// Seed of the shuffles and augmentations.
    pub seed: u64,
    /// Skip a final batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Batches prepared ahead of the consumer (at least 1).
    pub prefetch: usize,
}

impl Default for DataLoaderConfig {
    /// Keras `fit` defaults: batch 32, shuffled, last partial batch kept.
    fn default() -> Self {
        DataLoaderConfig {
            batch_size: 32,
            shuffle: true,
            seed: 0,
            drop_last: false,
            prefetch: 2,
        }
    }
}

/// One batch: inputs `(B, ...)`, class ids (empty for a targets-only
/// dataset), dense targets when the dataset has them, and the sample indices.
#[derive(Debug, Clone)]
pub struct Batch {
    pub inputs: Tensor,
    pub labels: Vec<usize>,
    pub targets: Option<Tensor>,
    pub indices: Vec<usize>,
}

impl Batch {
    /// `(inputs, labels)`.
    pub fn into_pair(self) -> (Tensor, Vec<usize>) {
        (self.inputs, self.labels)
    }
}

/// Batches of a dataset, one epoch at a time.
#[derive(Clone)]
pub struct DataLoader {
    dataset: Arc<Dataset>,
    config: DataLoaderConfig,
    augment: Option<AugmentFn>,
}

impl std::fmt::Debug for DataLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLoader")
            .field("samples", &self.dataset.len())
            .field("config", &self.config)
            .field("augment", &self.augment.is_some())
            .finish()
    }
}

/// SplitMix64 finaliser: decorrelates nearby seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl DataLoader {
    /// A loader over `dataset`; a zero `batch_size` is an error.
    pub fn new(dataset: impl Into<Arc<Dataset>>, config: DataLoaderConfig) -> Result<DataLoader> {
        if config.batch_size == 0 {
            return Err(DataError::arg(
                "DataLoader::new",
                "batch_size",
                "must be at least 1",
            ));
        }
        Ok(DataLoader {
            dataset: dataset.into(),
            config,
            augment: None,
        })
    }

    /// Applies `f` to the inputs of every batch (on the loader thread).
    pub fn with_augment(
        mut self,
        f: impl Fn(&Tensor, &mut Rng) -> Result<Tensor> + Send + Sync + 'static,
    ) -> DataLoader {
        self.augment = Some(Arc::new(f));
        self
    }

    /// Applies a configured [`Augment`] to every batch.
    pub fn with_augmentation(self, aug: Augment) -> DataLoader {
        self.with_augment(move |x, rng| aug.apply(x, rng))
    }

    /// The dataset being batched.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// The configuration.
    pub fn config(&self) -> &DataLoaderConfig {
        &self.config
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The sample order of `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            Rng::new(mix(self.config.seed ^ mix(epoch))).shuffle(&mut order);
        }
        order
    }

    /// The batches of `epoch`, prepared on a background thread.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        let order = self.epoch_order(epoch);
        let total = self.num_batches();
        let (tx, rx) = sync_channel::<Result<Batch>>(self.config.prefetch.max(1));
        let dataset = Arc::clone(&self.dataset);
        let augment = self.augment.clone();
        let bs = self.config.batch_size;
        let seed = self.config.seed;
        let handle = std::thread::Builder::new()
            .name("strata-data-loader".to_string())
            .spawn(move || {
                for (b, chunk) in order.chunks(bs).take(total).enumerate() {
                    let batch = make_batch(&dataset, chunk, augment.as_ref(), || {
                        Rng::new(mix(mix(seed ^ mix(epoch)) ^ b as u64))
                    });
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            });
        match handle {
            Ok(h) => EpochIter {
                rx: Some(rx),
                handle: Some(h),
                remaining: total,
                pending_error: None,
            },
            Err(e) => EpochIter {
                rx: None,
                handle: None,
                remaining: total,
                pending_error: Some(DataError::arg(
                    "DataLoader::epoch",
                    "thread",
                    format!("cannot start the loader thread: {e}"),
                )),
            },
        }
    }
}

fn make_batch(
    dataset: &Dataset,
    indices: &[usize],
    augment: Option<&AugmentFn>,
    rng: impl FnOnce() -> Rng,
) -> Result<Batch> {
    let (mut inputs, labels) = dataset.batch(indices)?;
    let targets = dataset.batch_targets(indices)?;
    if let Some(f) = augment {
        inputs = f(&inputs, &mut rng())?;
    }
    Ok(Batch {
        inputs,
        labels,
        targets,
        indices: indices.to_vec(),
    })
}

/// The batches of one epoch; ends early after yielding an error.
pub struct EpochIter {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
    pending_error: Option<DataError>,
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if let Some(e) = self.pending_error.take() {
            self.remaining = 0;
            return Some(Err(e));
        }
        if self.remaining == 0 {
            return None;
        }
        let rx = self.rx.as_ref()?;
        match rx.recv() {
            Ok(item) => {
                self.remaining -= 1;
                if item.is_err() {
                    self.remaining = 0;
                }
                Some(item)
            }
            Err(_) => {
                // The thread stopped before sending every batch: it panicked.
                self.remaining = 0;
                let panicked = self
                    .handle
                    .take()
                    .map(|h| h.join().is_err())
                    .unwrap_or(true);
                Some(Err(DataError::arg(
                    "DataLoader",
                    "thread",
                    if panicked {
                        "the loader thread panicked (in the augmentation?)"
                    } else {
                        "the loader thread stopped early"
                    },
                )))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining + usize::from(self.pending_error.is_some());
        (n, Some(n))
    }
}

impl ExactSizeIterator for EpochIter {}

impl Drop for EpochIter {
    fn drop(&mut self) {
        // Closing the channel first unblocks a thread waiting to send.
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        let x = (0..n * 3).map(|v| v as f32).collect();
        Dataset::new(Tensor::from_vec(x, &[n, 3]).unwrap(), (0..n).collect()).unwrap()
    }

    fn cfg(bs: usize, seed: u64) -> DataLoaderConfig {
        DataLoaderConfig {
            batch_size: bs,
            seed,
            ..Default::default()
        }
    }

    fn collect(l: &DataLoader, epoch: u64) -> Vec<Batch> {
        l.epoch(epoch).map(|b| b.unwrap()).collect()
    }

    #[test]
    fn every_sample_once_and_rows_match_labels() {
        let l = DataLoader::new(toy(103), cfg(10, 1)).unwrap();
        assert_eq!(l.num_batches(), 11);
        let batches = collect(&l, 0);
        assert_eq!(batches.len(), 11);
        assert_eq!(batches[10].labels.len(), 3);
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.labels.clone()).collect();
        for b in &batches {
            let x = b.inputs.to_vec();
            for (k, &lab) in b.labels.iter().enumerate() {
                assert_eq!(x[k * 3], (lab * 3) as f32);
            }
        }
        assert_ne!(seen, (0..103).collect::<Vec<_>>(), "should be shuffled");
        seen.sort();
        assert_eq!(seen, (0..103).collect::<Vec<_>>());
    }

    #[test]
    fn seeded_order() {
        let d = Arc::new(toy(50));
        let a = DataLoader::new(Arc::clone(&d), cfg(8, 7)).unwrap();
        let b = DataLoader::new(Arc::clone(&d), cfg(8, 7)).unwrap();
        let c = DataLoader::new(Arc::clone(&d), cfg(8, 8)).unwrap();
        let la: Vec<_> = collect(&a, 3).into_iter().map(|b| b.labels).collect();
        let lb: Vec<_> = collect(&b, 3).into_iter().map(|b| b.labels).collect();
        let lc: Vec<_> = collect(&c, 3).into_iter().map(|b| b.labels).collect();
        assert_eq!(la, lb);
        assert_ne!(la, lc);
        let next: Vec<_> = collect(&a, 4).into_iter().map(|b| b.labels).collect();
        assert_ne!(la, next, "epochs differ");
        let plain = DataLoader::new(
            Arc::clone(&d),
            DataLoaderConfig {
                shuffle: false,
                ..cfg(8, 7)
            },
        )
        .unwrap();
        assert_eq!(collect(&plain, 0)[0].labels, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn drop_last_and_zero_batch() {
        let d = toy(10);
        assert!(DataLoader::new(d.clone(), cfg(0, 0)).is_err());
        let l = DataLoader::new(
            d.clone(),
            DataLoaderConfig {
                drop_last: true,
                ..cfg(4, 0)
            },
        )
        .unwrap();
        assert_eq!(l.num_batches(), 2);
        let it = l.epoch(0);
        assert_eq!(it.len(), 2);
        assert!(collect(&l, 0).iter().all(|b| b.labels.len() == 4));
        let empty = DataLoader::new(d.subset(&[]).unwrap(), cfg(4, 0)).unwrap();
        assert_eq!(collect(&empty, 0).len(), 0);
    }

    #[test]
    fn augmentation_is_deterministic_despite_threads() {
        let d = Arc::new(toy(64));
        let make = || {
            DataLoader::new(
                Arc::clone(&d),
                DataLoaderConfig {
                    prefetch: 1,
                    ..cfg(5, 11)
                },
            )
            .unwrap()
            .with_augment(|x, rng| {
                let noise = rng.uniform(0.0, 1.0);
                let v = x.to_vec().into_iter().map(|a| a + noise).collect();
                Ok(Tensor::from_vec(v, x.shape())?)
            })
        };
        let (a, b) = (make(), make());
        let va: Vec<_> = collect(&a, 2)
            .into_iter()
            .map(|b| b.inputs.to_vec())
            .collect();
        // Consume b slowly so the producer runs ahead differently.
        let mut vb = Vec::new();
        for batch in b.epoch(2) {
            std::thread::sleep(std::time::Duration::from_millis(2));
            vb.push(batch.unwrap().inputs.to_vec());
        }
        assert_eq!(va, vb);
    }

    #[test]
    fn errors_and_early_drop() {
        let l = DataLoader::new(toy(20), cfg(3, 0))
            .unwrap()
            .with_augment(|_, _| Err(DataError::arg("aug", "x", "boom")));
        let items: Vec<_> = l.epoch(0).collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());

        let l = DataLoader::new(toy(20), cfg(3, 0))
            .unwrap()
            .with_augment(|_, _| panic!("augmentation bug"));
        let items: Vec<_> = l.epoch(0).collect();
        assert_eq!(items.len(), 1);
        assert!(items[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("panicked"));

        // Dropping an iterator mid-epoch does not hang.
        let l = DataLoader::new(toy(1000), cfg(1, 0)).unwrap();
        let mut it = l.epoch(0);
        assert!(it.next().is_some());
        drop(it);
    }

    #[test]
    fn with_augment_struct_and_targets() {
        let x =
            Tensor::from_vec((0..2 * 2 * 2).map(|v| v as f32).collect(), &[2, 2, 2, 1]).unwrap();
        let t = Tensor::from_vec(vec![1.0, 2.0], &[2, 1]).unwrap();
        let d = Dataset::with_targets(x, t).unwrap();
        let l = DataLoader::new(d, cfg(2, 0))
            .unwrap()
            .with_augmentation(Augment {
                normalize: Some((vec![1.0], vec![2.0])),
                ..Default::default()
            });
        let b = collect(&l, 0).remove(0);
        assert!(b.labels.is_empty());
        let t = b.targets.unwrap().to_vec();
        let first = b.indices[0];
        assert_eq!(t[0], [1.0, 2.0][first]);
        assert_eq!(b.inputs.to_vec()[0], ((first * 4) as f32 - 1.0) / 2.0);
    }
}
