//! `BatchSource`: batches that do not sit in memory as one tensor, such as
//! an image folder decoded and augmented on worker threads as training goes.
//! `fit_source` and `evaluate_source` take one where `fit` and `evaluate`
//! take tensors.

use strata_core::Tensor;

use crate::error::Result;
use crate::losses::Targets;

/// One batch from a source: one tensor per model input, and the targets.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    pub inputs: Vec<Tensor>,
    pub targets: Targets,
    /// Samples of this batch the source could not read and left out.
    pub skipped: usize,
}

/// Batches, one epoch at a time, in an order fixed by the source's seed and
/// the epoch alone.
pub trait BatchSource {
    /// Samples in one epoch.
    fn samples(&self) -> usize;
    /// Batches in one epoch.
    fn batches_per_epoch(&self) -> usize;
    /// The batches of `epoch` from batch `first` on (a resumed epoch starts
    /// past its first batches without reading them).
    fn epoch(
        &self,
        epoch: usize,
        first: usize,
    ) -> Box<dyn Iterator<Item = Result<SourceBatch>> + '_>;

    /// The batches of `epoch` from batch `first` on, each holding only the
    /// contiguous part ([`crate::data_parallel::rank_slice`] of the batch's
    /// samples) that `rank` of `size` trains on, read without the rest: a
    /// data-parallel rank then decodes its own samples alone. `None` (the
    /// default) for a source that reads whole batches; the caller cuts them.
    fn epoch_part(
        &self,
        _epoch: usize,
        _first: usize,
        _rank: usize,
        _size: usize,
    ) -> Option<Box<dyn Iterator<Item = Result<PartBatch>> + '_>> {
        None
    }
}

/// A rank's part of one batch: its samples, and each one's position in the
/// whole batch (its randomness is keyed by that position).
#[derive(Debug, Clone)]
pub struct PartBatch {
    /// The part; `skipped` counts the samples of the part left out.
    pub batch: SourceBatch,
    pub positions: Vec<usize>,
}
