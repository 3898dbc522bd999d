//! A `.npy` of inputs too large to read whole, as a batch source: the rows
//! of each batch are read from the file when the batch is needed, in the
//! order `fit` would visit them, so training from the file equals training
//! on the same array in memory, bit for bit.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use strata_data::NpyRows;
use strata_nn::{BatchSource, NnError, SourceBatch, Targets};

use crate::model_arg::CliResult;

/// Inputs above this size are read a batch at a time unless `--stream` asks
/// for it anyway.
pub const STREAM_ABOVE_BYTES: u64 = 2 << 30;

/// The rows `range` of an input file with their targets.
pub struct NpySource {
    rows: Arc<NpyRows>,
    targets: Arc<Targets>,
    range: Range<usize>,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
}

impl NpySource {
    /// Opens `inputs`; `targets` must hold one entry per row.
    pub fn open(inputs: &Path, targets: Targets, batch_size: usize) -> CliResult<NpySource> {
        let rows = NpyRows::open(inputs)?;
        if targets.len() != rows.len() {
            return Err(format!(
                "{}: {} samples but the labels hold {}",
                inputs.display(),
                rows.len(),
                targets.len()
            )
            .into());
        }
        let range = 0..rows.len();
        Ok(NpySource {
            rows: Arc::new(rows),
            targets: Arc::new(targets),
            range,
            batch_size,
            shuffle: false,
            seed: 0,
        })
    }

    /// The whole input array's shape.
    pub fn shape(&self) -> &[usize] {
        self.rows.shape()
    }

    /// Splits off the last `fraction` of the rows for validation, as `fit`
    /// does with `validation_split`: (training shuffled by `seed` if
    /// `shuffle`, validation in file order).
    pub fn split(self, fraction: f32, shuffle: bool, seed: u64) -> (NpySource, Option<NpySource>) {
        let n_all = self.range.len();
        let n_val = (n_all as f64 * fraction as f64).floor() as usize;
        let cut = self.range.start + n_all - n_val;
        let validation = (n_val > 0).then(|| NpySource {
            rows: Arc::clone(&self.rows),
            targets: Arc::clone(&self.targets),
            range: cut..self.range.end,
            batch_size: self.batch_size,
            shuffle: false,
            seed,
        });
        let train = NpySource {
            range: self.range.start..cut,
            shuffle,
            seed,
            ..self
        };
        (train, validation)
    }
}

impl BatchSource for NpySource {
    fn samples(&self) -> usize {
        self.range.len()
    }

    fn batches_per_epoch(&self) -> usize {
        self.range.len().div_ceil(self.batch_size)
    }

    fn epoch(
        &self,
        epoch: usize,
        first: usize,
    ) -> Box<dyn Iterator<Item = strata_nn::Result<SourceBatch>> + '_> {
        let n = self.range.len();
        let order = strata_nn::model::epoch_order(n, self.shuffle, self.seed, epoch);
        let (bs, start) = (self.batch_size, self.range.start);
        Box::new((first..self.batches_per_epoch()).map(move |b| {
            let idx: Vec<usize> = order[b * bs..((b + 1) * bs).min(n)]
                .iter()
                .map(|i| i + start)
                .collect();
            let inputs = self
                .rows
                .read_rows(&idx)
                .map_err(|e| NnError::Data(e.to_string()))?;
            Ok(SourceBatch {
                inputs: vec![inputs],
                targets: self.targets.gather(&idx)?,
                skipped: 0,
            })
        }))
    }
}
