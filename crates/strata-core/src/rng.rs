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
    /// Fills `out` with uniform samples in `[0, 1)`: the same values, in the same
    /// order, as `out.len()` calls of `uniform(0.0, 1.0)`, drawn a block at a time.
    pub fn fill_unit(&mut self, out: &mut [f32]) {
        let mut bits = vec![0u32; out.len()];
        self.0.fill(&mut bits[..]);
        // rand's f32 sample: the top 24 bits of a u32, scaled by 2^-24
        out.iter_mut()
            .zip(&bits)
            .for_each(|(o, &b)| *o = (b >> 8) as f32 * (1.0 / (1u32 << 24) as f32));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_unit_is_the_uniform_stream() {
        let (mut a, mut b) = (Rng::new(5), Rng::new(5));
        let mut bulk = vec![0.0; 1001];
        a.fill_unit(&mut bulk);
        let one_by_one: Vec<f32> = (0..1001).map(|_| b.uniform(0.0, 1.0)).collect();
        assert_eq!(bulk, one_by_one);
        // and both streams go on in step
        assert_eq!(a.uniform(0.0, 1.0), b.uniform(0.0, 1.0));
    }
}
