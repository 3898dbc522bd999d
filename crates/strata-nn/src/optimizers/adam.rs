//! Adam as Keras computes it: epsilon (default 1e-7) is added to sqrt(v)
//! before the bias correction, which is folded into the step size.

use super::UpdateRule;

#[derive(Debug, Clone)]
pub struct Adam {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

impl UpdateRule for Adam {
    fn name(&self) -> &'static str {
        "adam"
    }
    fn slots(&self) -> usize {
        2
    }
    fn update(&self, w: &mut [f32], g: &[f32], slots: &mut [Vec<f32>], lr: f32, t: u64) {
        let (b1, b2) = (self.beta_1, self.beta_2);
        let alpha = lr * (1.0 - b2.powi(t as i32)).sqrt() / (1.0 - b1.powi(t as i32));
        let (m, v) = slots.split_at_mut(1);
        let (m, v) = (&mut m[0], &mut v[0]);
        for i in 0..w.len() {
            m[i] += (g[i] - m[i]) * (1.0 - b1);
            v[i] += (g[i] * g[i] - v[i]) * (1.0 - b2);
            w[i] -= alpha * m[i] / (v[i].sqrt() + self.epsilon);
        }
    }
}
