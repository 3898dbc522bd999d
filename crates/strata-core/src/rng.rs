//! The seeded random generator behind every random tensor, initialiser and mask.

use rand::{Rng as _, SeedableRng};
use rand_distr::{Distribution, Normal, StandardNormal};

/// A seeded, reproducible generator (ChaCha8: the same stream on every platform).
#[derive(Debug, Clone)]
pub struct Rng(rand::rngs::StdRng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(rand::rngs::StdRng::seed_from_u64(seed))
    }
    /// A uniform sample in `[low, high)`.
    pub fn uniform(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.0.gen::<f32>()
    }
    /// A standard normal sample.
    pub fn normal(&mut self) -> f32 {
        StandardNormal.sample(&mut self.0)
    }
    /// A normal sample with the given mean and standard deviation.
    pub fn normal_with(&mut self, mean: f32, std: f32) -> f32 {
        Normal::new(mean, std.max(0.0))
            .map(|d| d.sample(&mut self.0))
            .unwrap_or(mean)
    }
    /// A uniform integer in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.gen_range(0..n.max(1))
    }
    /// A fresh 64-bit seed for a child generator.
    pub fn next_u64(&mut self) -> u64 {
        self.0.gen()
    }
    /// Shuffles a slice in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}
