//! SGD as Keras defines it: `m = momentum*m - lr*g; w += m`, or with Nesterov
//! `w += momentum*m - lr*g`; plain `w -= lr*g` without momentum.

use super::UpdateRule;

#[derive(Debug, Clone, Default)]
pub struct Sgd {
    pub momentum: f32,
    pub nesterov: bool,
}

impl UpdateRule for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }
    fn slots(&self) -> usize {
        usize::from(self.momentum != 0.0)
    }
    fn update(&self, w: &mut [f32], g: &[f32], slots: &mut [Vec<f32>], lr: f32, _t: u64) {
        if self.momentum == 0.0 {
            w.iter_mut().zip(g).for_each(|(w, g)| *w -= lr * g);
            return;
        }
        let m = &mut slots[0];
        for i in 0..w.len() {
            m[i] = self.momentum * m[i] - lr * g[i];
            w[i] += if self.nesterov {
                self.momentum * m[i] - lr * g[i]
            } else {
                m[i]
            };
        }
    }
}
