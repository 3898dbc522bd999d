//! RMSprop as Keras computes it: rho 0.9, epsilon inside the square root,
//! optional momentum and centering.

use super::UpdateRule;

#[derive(Debug, Clone)]
pub struct RMSprop {
    pub rho: f32,
    pub momentum: f32,
    pub epsilon: f32,
    pub centered: bool,
}

impl Default for RMSprop {
    fn default() -> Self {
        RMSprop {
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            centered: false,
        }
    }
}

impl UpdateRule for RMSprop {
    fn name(&self) -> &'static str {
        "rmsprop"
    }
    /// v, then momentum buffer, then the centred mean gradient.
    fn slots(&self) -> usize {
        3
    }
    fn update(&self, w: &mut [f32], g: &[f32], slots: &mut [Vec<f32>], lr: f32, _t: u64) {
        let rho = self.rho;
        let [v, m, mg] = slots else { return };
        for i in 0..w.len() {
            v[i] = rho * v[i] + (1.0 - rho) * g[i] * g[i];
            let mut denom = v[i];
            if self.centered {
                mg[i] = rho * mg[i] + (1.0 - rho) * g[i];
                denom -= mg[i] * mg[i];
            }
            let step = lr * g[i] / (denom + self.epsilon).sqrt();
            if self.momentum > 0.0 {
                m[i] = self.momentum * m[i] + step;
                w[i] -= m[i];
            } else {
                w[i] -= step;
            }
        }
    }
}
