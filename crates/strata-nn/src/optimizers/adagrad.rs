//! Adagrad as Keras computes it: accumulator starts at 0.1,
//! `w -= lr * g / sqrt(acc + epsilon)`.

use super::UpdateRule;

#[derive(Debug, Clone)]
pub struct Adagrad {
    pub initial_accumulator_value: f32,
    pub epsilon: f32,
}

impl Default for Adagrad {
    fn default() -> Self {
        Adagrad {
            initial_accumulator_value: 0.1,
            epsilon: 1e-7,
        }
    }
}

impl UpdateRule for Adagrad {
    fn name(&self) -> &'static str {
        "adagrad"
    }
    fn slots(&self) -> usize {
        1
    }
    fn slot_init(&self) -> f32 {
        self.initial_accumulator_value
    }
    fn update(&self, w: &mut [f32], g: &[f32], slots: &mut [Vec<f32>], lr: f32, _t: u64) {
        let acc = &mut slots[0];
        for i in 0..w.len() {
            acc[i] += g[i] * g[i];
            w[i] -= lr * g[i] / (acc[i] + self.epsilon).sqrt();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_matches_the_formula() {
        let mut w = vec![1.0];
        let mut slots = vec![vec![0.1]];
        Adagrad::default().update(&mut w, &[0.5], &mut slots, 0.1, 1);
        let want = 1.0 - 0.1 * 0.5 / (0.35f32 + 1e-7).sqrt();
        assert!((w[0] - want).abs() < 1e-7);
    }
}
