//! Learning-rate schedules, evaluated at the optimizer's iteration count as in Keras.

/// A learning rate that may change with the step.
#[derive(Debug, Clone, PartialEq)]
pub enum LearningRateSchedule {
    Constant(f32),
    /// `initial * decay_rate^(step / decay_steps)` (integer division when staircase).
    ExponentialDecay {
        initial: f32,
        decay_steps: u64,
        decay_rate: f32,
        staircase: bool,
    },
    /// `initial * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)`.
    CosineDecay {
        initial: f32,
        decay_steps: u64,
        alpha: f32,
    },
    /// `values[i]` for `boundaries[i-1] < step <= boundaries[i]`.
    PiecewiseConstant {
        boundaries: Vec<u64>,
        values: Vec<f32>,
    },
}

impl LearningRateSchedule {
    /// The learning rate at `step` (0-based iteration count).
    pub fn at(&self, step: u64) -> f32 {
        match self {
            LearningRateSchedule::Constant(lr) => *lr,
            LearningRateSchedule::ExponentialDecay {
                initial,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let mut p = step as f64 / (*decay_steps).max(1) as f64;
                if *staircase {
                    p = p.floor();
                }
                (*initial as f64 * (*decay_rate as f64).powf(p)) as f32
            }
            LearningRateSchedule::CosineDecay {
                initial,
                decay_steps,
                alpha,
            } => {
                let s = step.min(*decay_steps) as f64 / (*decay_steps).max(1) as f64;
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * s).cos());
                (*initial as f64 * ((1.0 - *alpha as f64) * cos + *alpha as f64)) as f32
            }
            LearningRateSchedule::PiecewiseConstant { boundaries, values } => {
                let i = boundaries
                    .iter()
                    .position(|&b| step <= b)
                    .unwrap_or(boundaries.len());
                values.get(i).or(values.last()).copied().unwrap_or(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_keras() {
        let e = LearningRateSchedule::ExponentialDecay {
            initial: 0.1,
            decay_steps: 10,
            decay_rate: 0.5,
            staircase: true,
        };
        assert_eq!(e.at(9), 0.1);
        assert_eq!(e.at(10), 0.05);
        let c = LearningRateSchedule::CosineDecay {
            initial: 1.0,
            decay_steps: 100,
            alpha: 0.0,
        };
        assert!((c.at(50) - 0.5).abs() < 1e-6);
        assert_eq!(c.at(200), 0.0);
        let p = LearningRateSchedule::PiecewiseConstant {
            boundaries: vec![10, 20],
            values: vec![1.0, 0.5, 0.1],
        };
        assert_eq!((p.at(10), p.at(11), p.at(21)), (1.0, 0.5, 0.1));
    }
}
