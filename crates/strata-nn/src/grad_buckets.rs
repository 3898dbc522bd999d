//! Gradient buckets of a data-parallel run: the trainable weights grouped,
//! in the order the backward finishes them (the reverse of the forward's),
//! into buckets of about `Distributed::bucket_bytes`, each all-reduced as
//! one message (PyTorch DDP's layout).

use crate::distributed::{Collective, Distributed};
use crate::error::Result;
use crate::optimizers::Param;
use std::sync::Arc;

/// The bucket layout of one model's trainable weights, and the reduction.
pub(crate) struct GradientReducer {
    collective: Arc<dyn Collective>,
    /// Parameter indices per bucket, in backward order.
    buckets: Vec<Vec<usize>>,
}

/// `sizes` (bytes per parameter, in forward order) grouped from the last
/// parameter backwards into buckets of at most `cap` bytes (a larger
/// parameter gets a bucket of its own).
pub fn bucket_layout(sizes: &[usize], cap: usize) -> Vec<Vec<usize>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for i in (0..sizes.len()).rev() {
        if !current.is_empty() && bytes + sizes[i] > cap {
            buckets.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += sizes[i];
    }
    if !current.is_empty() {
        buckets.push(current);
    }
    buckets
}

impl GradientReducer {
    pub(crate) fn new(d: &Distributed, params: &[Param]) -> Result<GradientReducer> {
        let sizes: Vec<usize> = params.iter().map(|p| p.value.numel() * 4).collect();
        Ok(GradientReducer {
            collective: Arc::clone(&d.collective),
            buckets: bucket_layout(&sizes, d.bucket_bytes.max(1)),
        })
    }

    /// Before the backward of a step.
    pub(crate) fn arm(&mut self, _params: &[Param]) {}

    /// After the backward: every gradient summed over the ranks. A weight
    /// without a gradient (the loss does not reach it, on every rank alike)
    /// keeps none.
    pub(crate) fn finish(&mut self, params: &[Param]) -> Result<()> {
        for bucket in &self.buckets {
            let mut flat = Vec::new();
            let mut spans = Vec::with_capacity(bucket.len());
            for &i in bucket {
                params[i].value.with_grad(|g| match g {
                    Some(g) => {
                        spans.push(Some((flat.len(), g.len())));
                        flat.extend_from_slice(g);
                    }
                    None => spans.push(None),
                });
            }
            self.collective.all_reduce_sum(&mut flat)?;
            for (&i, span) in bucket.iter().zip(spans) {
                if let Some((at, len)) = span {
                    params[i].value.set_grad(Some(flat[at..at + len].to_vec()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_backward_and_the_cap() {
        assert_eq!(
            bucket_layout(&[10, 20, 30, 5, 100], 40),
            vec![vec![4], vec![3, 2], vec![1, 0]]
        );
        assert_eq!(bucket_layout(&[1, 1, 1], 1 << 20), vec![vec![2, 1, 0]]);
        assert!(bucket_layout(&[], 8).is_empty());
    }
}
