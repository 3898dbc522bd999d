//! Optimizers with Keras 3 semantics and defaults.
//!
//! [`Optimizer`] holds what every Keras optimizer shares (learning rate or
//! schedule, iteration count, gradient clipping, weight decay, per-variable
//! state); each update rule lives in its own file.

mod adagrad;
mod adam;
mod rmsprop;
mod schedules;
mod sgd;

pub use adagrad::Adagrad;
pub use adam::Adam;
pub use rmsprop::RMSprop;
pub use schedules::LearningRateSchedule;
pub use sgd::Sgd;

use strata_core::Tensor;

use crate::error::{NnError, Result};

/// One optimizer's update of one variable, given its state slots. `Sync`: the
/// optimizer updates its variables in parallel.
pub trait UpdateRule: Send + Sync + std::any::Any {
    fn name(&self) -> &'static str;
    /// Number of state buffers per variable (e.g. 2 for Adam's m and v).
    fn slots(&self) -> usize;
    /// Initial value of the state buffers.
    fn slot_init(&self) -> f32 {
        0.0
    }
    /// Updates `w` in place from gradient `g` at step `t` (1-based).
    fn update(&self, w: &mut [f32], g: &[f32], slots: &mut [Vec<f32>], lr: f32, t: u64);
}

/// A variable to optimise, with its full name (`conv2d.kernel`) for weight
/// decay exclusion and checkpoints.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub value: Tensor,
}

/// An optimizer: shared Keras machinery around an [`UpdateRule`].
pub struct Optimizer {
    rule: Box<dyn UpdateRule>,
    pub learning_rate: LearningRateSchedule,
    /// Steps taken so far (Keras's `iterations`).
    pub iterations: u64,
    /// Clip each gradient to this L2 norm (Keras `clipnorm`).
    pub clipnorm: Option<f32>,
    /// Clip all gradients together to this L2 norm (Keras `global_clipnorm`).
    pub global_clipnorm: Option<f32>,
    /// Clip each gradient element to [-v, v] (Keras `clipvalue`).
    pub clipvalue: Option<f32>,
    /// Decoupled weight decay `w -= lr * weight_decay * w`, applied before the update.
    pub weight_decay: Option<f32>,
    /// Variables whose name contains one of these are not decayed.
    pub exclude_from_weight_decay: Vec<String>,
    state: Vec<Vec<Vec<f32>>>,
}

impl Optimizer {
    pub fn new(rule: impl UpdateRule + 'static, learning_rate: f32) -> Self {
        Optimizer {
            rule: Box::new(rule),
            learning_rate: LearningRateSchedule::Constant(learning_rate),
            iterations: 0,
            clipnorm: None,
            global_clipnorm: None,
            clipvalue: None,
            weight_decay: None,
            exclude_from_weight_decay: Vec::new(),
            state: Vec::new(),
        }
    }

    /// SGD with Keras defaults (lr 0.01, no momentum).
    pub fn sgd(learning_rate: f32, momentum: f32, nesterov: bool) -> Self {
        Optimizer::new(Sgd { momentum, nesterov }, learning_rate)
    }
    /// Adam with Keras defaults besides the learning rate.
    pub fn adam(learning_rate: f32) -> Self {
        Optimizer::new(Adam::default(), learning_rate)
    }
    /// AdamW: Adam with decoupled weight decay (Keras default 0.004).
    pub fn adamw(learning_rate: f32, weight_decay: f32) -> Self {
        let mut o = Optimizer::new(Adam::default(), learning_rate);
        o.weight_decay = Some(weight_decay);
        o
    }
    pub fn rmsprop(learning_rate: f32) -> Self {
        Optimizer::new(RMSprop::default(), learning_rate)
    }
    pub fn adagrad(learning_rate: f32) -> Self {
        Optimizer::new(Adagrad::default(), learning_rate)
    }

    /// The optimizer names `from_name` takes.
    pub const NAMES: [&'static str; 5] = ["sgd", "adam", "adamw", "rmsprop", "adagrad"];

    /// An optimizer by Keras name, with Keras's default learning rate unless given.
    pub fn from_name(name: &str, learning_rate: Option<f32>) -> Result<Self> {
        Ok(match name {
            "sgd" => Optimizer::sgd(learning_rate.unwrap_or(0.01), 0.0, false),
            "adam" => Optimizer::adam(learning_rate.unwrap_or(0.001)),
            "adamw" => Optimizer::adamw(learning_rate.unwrap_or(0.001), 0.004),
            "rmsprop" => Optimizer::rmsprop(learning_rate.unwrap_or(0.001)),
            "adagrad" => Optimizer::adagrad(learning_rate.unwrap_or(0.001)),
            other => {
                return Err(NnError::Training(format!(
                    "unknown optimizer '{other}' (sgd, adam, adamw, rmsprop, adagrad)"
                )))
            }
        })
    }

    pub fn name(&self) -> &'static str {
        if self.rule.name() == "adam" && self.weight_decay.is_some() {
            "adamw"
        } else {
            self.rule.name()
        }
    }

    /// Mutable access to the update rule, to set its hyper-parameters.
    pub fn rule_mut<T: 'static>(&mut self) -> Option<&mut T> {
        let any: &mut dyn std::any::Any = self.rule.as_mut();
        any.downcast_mut::<T>()
    }

    /// The learning rate at the current iteration.
    pub fn current_learning_rate(&self) -> f32 {
        self.learning_rate.at(self.iterations)
    }

    /// Replaces the learning rate by a constant (what ReduceLROnPlateau does).
    pub fn set_learning_rate(&mut self, lr: f32) {
        self.learning_rate = LearningRateSchedule::Constant(lr);
    }

    /// One update of every parameter that has a gradient. Parameters keep their
    /// position: the same list must be passed at every step.
    pub fn step(&mut self, params: &[Param]) -> Result<()> {
        self.begin_step(params)?;
        let all: Vec<usize> = (0..params.len()).collect();
        self.update_some(params, &all)?;
        self.end_step();
        Ok(())
    }

    /// True when one variable's update needs every gradient of the step
    /// (`global_clipnorm` scales all of them by their joint norm), so a step
    /// cannot be applied part by part ([`Optimizer::update_some`]).
    pub fn needs_every_gradient(&self) -> bool {
        self.global_clipnorm.is_some()
    }

    /// Opens a step taken in parts: creates the state on the first step and
    /// checks it matches `params`. Then [`Optimizer::update_some`] for each
    /// part (each variable once) and [`Optimizer::end_step`]; the result is
    /// bitwise that of [`Optimizer::step`], since no variable's update
    /// depends on another's (unless [`Optimizer::needs_every_gradient`]).
    pub fn begin_step(&mut self, params: &[Param]) -> Result<()> {
        if self.state.is_empty() {
            self.state = params
                .iter()
                .map(|p| vec![vec![self.rule.slot_init(); p.value.numel()]; self.rule.slots()])
                .collect();
        }
        if self.state.len() != params.len() {
            return Err(NnError::Training(format!(
                "optimizer state holds {} variables, {} were passed",
                self.state.len(),
                params.len()
            )));
        }
        Ok(())
    }

    /// Updates the variables `which` (indices into `params`) of the step
    /// opened by [`Optimizer::begin_step`], from the gradients they hold now.
    pub fn update_some(&mut self, params: &[Param], which: &[usize]) -> Result<()> {
        if let Some(&bad) = which
            .iter()
            .find(|&&i| i >= params.len().min(self.state.len()))
        {
            return Err(NnError::Training(format!(
                "optimizer update of variable {bad}: the step holds {}",
                self.state.len()
            )));
        }
        let lr = self.current_learning_rate();
        let t = self.iterations + 1;
        // Clipping rewrites gradients, so it works on pooled copies; without it
        // every update reads its gradient where it lies.
        let clips =
            self.clipvalue.is_some() || self.clipnorm.is_some() || self.global_clipnorm.is_some();
        let clipped: Option<Vec<Option<Vec<f32>>>> = clips.then(|| {
            let mut grads = which
                .iter()
                .map(|&i| {
                    params[i]
                        .value
                        .with_grad(|g| g.map(strata_core::kernels::buffers::copy_of))
                })
                .collect::<Vec<_>>();
            self.clip(&mut grads);
            grads
        });
        let (rule, wd, exclude) = (
            &*self.rule,
            self.weight_decay,
            &self.exclude_from_weight_decay,
        );
        // each variable's update depends on nothing else, so running them in
        // parallel changes no value
        let update = |j: usize, p: &Param, slots: &mut Vec<Vec<f32>>| -> Result<()> {
            let apply = |g: &[f32]| -> Result<()> {
                let mut w = p.value.data_mut();
                if slots.iter().any(|s| s.len() != w.len()) {
                    return Err(NnError::Training(format!(
                        "optimizer state for '{}' does not match its {} values",
                        p.name,
                        w.len()
                    )));
                }
                if let Some(wd) = wd {
                    if !exclude.iter().any(|n| p.name.contains(n.as_str())) {
                        w.iter_mut().for_each(|v| *v -= lr * wd * *v);
                    }
                }
                rule.update(&mut w, g, slots, lr, t);
                Ok(())
            };
            match &clipped {
                Some(grads) => grads[j].as_deref().map_or(Ok(()), apply),
                None => p.value.with_grad(|g| g.map_or(Ok(()), apply)),
            }
        };
        let mut slots_of: Vec<Option<&mut Vec<Vec<f32>>>> =
            self.state.iter_mut().map(Some).collect();
        let jobs: Vec<(usize, &Param, &mut Vec<Vec<f32>>)> = which
            .iter()
            .enumerate()
            .filter_map(|(j, &i)| Some((j, &params[i], slots_of[i].take()?)))
            .collect();
        let results: Vec<Result<()>> = strata_core::threads::install(|| {
            use rayon::prelude::*;
            jobs.into_par_iter()
                .map(|(j, p, slots)| update(j, p, slots))
                .collect()
        });
        for g in clipped.into_iter().flatten().flatten() {
            strata_core::kernels::buffers::recycle(g);
        }
        results.into_iter().collect::<Result<()>>()
    }

    /// Closes a step taken in parts: the iteration count moves on.
    pub fn end_step(&mut self) {
        self.iterations += 1;
    }

    fn clip(&self, grads: &mut [Option<Vec<f32>>]) {
        if let Some(v) = self.clipvalue {
            grads
                .iter_mut()
                .flatten()
                .for_each(|g| g.iter_mut().for_each(|x| *x = x.clamp(-v, v)));
        }
        if let Some(c) = self.clipnorm {
            for g in grads.iter_mut().flatten() {
                let n = norm(g);
                scale_to_norm(g, n, c);
            }
        }
        if let Some(c) = self.global_clipnorm {
            let total = grads
                .iter()
                .flatten()
                .map(|g| norm(g).powi(2))
                .sum::<f32>()
                .sqrt();
            grads
                .iter_mut()
                .flatten()
                .for_each(|g| scale_to_norm(g, total, c));
        }
    }

    /// The per-variable state, named `<variable>/<slot index>`, plus the
    /// iteration count: what a checkpoint needs to resume exactly.
    pub fn state(&self, params: &[Param]) -> Vec<(String, Vec<f32>)> {
        let mut out = vec![("iterations".to_string(), vec![self.iterations as f32])];
        for (p, slots) in params.iter().zip(&self.state) {
            for (i, s) in slots.iter().enumerate() {
                out.push((format!("{}/{i}", p.name), s.clone()));
            }
        }
        out
    }

    /// Restores what [`Optimizer::state`] saved.
    pub fn load_state(&mut self, params: &[Param], saved: &[(String, Vec<f32>)]) -> Result<()> {
        let get = |k: &str| saved.iter().find(|(n, _)| n == k).map(|(_, v)| v);
        let it = get("iterations")
            .and_then(|v| v.first())
            .ok_or_else(|| NnError::Training("optimizer state has no 'iterations' entry".into()))?;
        let mut state = Vec::with_capacity(params.len());
        for p in params {
            let mut slots = Vec::new();
            for i in 0..self.rule.slots() {
                let key = format!("{}/{i}", p.name);
                let v = get(&key)
                    .ok_or_else(|| NnError::Training(format!("optimizer state lacks '{key}'")))?;
                if v.len() != p.value.numel() {
                    return Err(NnError::Training(format!(
                        "optimizer state '{key}' has {} values, the variable {}",
                        v.len(),
                        p.value.numel()
                    )));
                }
                slots.push(v.clone());
            }
            state.push(slots);
        }
        self.state = state;
        self.iterations = *it as u64;
        Ok(())
    }
}

fn norm(g: &[f32]) -> f32 {
    g.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn scale_to_norm(g: &mut [f32], current: f32, max: f32) {
    if current > max && current > 0.0 {
        let s = max / current;
        g.iter_mut().for_each(|x| *x *= s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(values: &[f32], grad: &[f32]) -> Param {
        let t = Tensor::from_vec(values.to_vec(), &[values.len()])
            .unwrap()
            .requires_grad_(true);
        t.set_grad(Some(grad.to_vec()));
        Param {
            name: "dense.kernel".into(),
            value: t,
        }
    }

    /// A step taken in parts (bucket by bucket, in any order) is bitwise the
    /// whole step, moments and iteration count included.
    #[test]
    fn a_step_in_parts_is_the_whole_step() {
        let make = || -> Vec<Param> {
            (0..5)
                .map(|i| {
                    let v: Vec<f32> = (0..7).map(|j| ((i * 7 + j) as f32 * 0.31).sin()).collect();
                    let g: Vec<f32> = (0..7).map(|j| ((i * 7 + j) as f32 * 0.17).cos()).collect();
                    param(&v, &g)
                })
                .collect()
        };
        let (whole, parts) = (make(), make());
        let mut a = Optimizer::adamw(0.01, 0.004);
        a.clipnorm = Some(0.7);
        let mut b = Optimizer::adamw(0.01, 0.004);
        b.clipnorm = Some(0.7);
        for _ in 0..3 {
            a.step(&whole).unwrap();
            b.begin_step(&parts).unwrap();
            for part in [&[4, 3][..], &[2], &[1, 0]] {
                b.update_some(&parts, part).unwrap();
            }
            b.end_step();
        }
        for (x, y) in whole.iter().zip(&parts) {
            assert_eq!(x.value.to_vec(), y.value.to_vec());
        }
        assert_eq!(a.state(&whole), b.state(&parts));
        assert!(!a.needs_every_gradient());
        a.global_clipnorm = Some(1.0);
        assert!(a.needs_every_gradient());
        let e = b.update_some(&parts, &[9]).unwrap_err().to_string();
        assert!(e.contains("variable 9"), "{e}");
    }

    #[test]
    fn clipping() {
        let p = param(&[0.0, 0.0], &[3.0, 4.0]);
        let mut o = Optimizer::sgd(1.0, 0.0, false);
        o.clipnorm = Some(1.0);
        o.step(std::slice::from_ref(&p)).unwrap();
        assert!(p.value.allclose(
            &Tensor::from_vec(vec![-0.6, -0.8], &[2]).unwrap(),
            1e-6,
            1e-6
        ));
        let p = param(&[0.0, 0.0], &[3.0, -4.0]);
        let mut o = Optimizer::sgd(1.0, 0.0, false);
        o.clipvalue = Some(0.5);
        o.step(std::slice::from_ref(&p)).unwrap();
        assert_eq!(p.value.to_vec(), vec![-0.5, 0.5]);
    }

    #[test]
    fn weight_decay_skips_excluded_names() {
        let p = param(&[1.0], &[0.0]);
        let mut o = Optimizer::sgd(0.1, 0.0, false);
        o.weight_decay = Some(0.5);
        o.exclude_from_weight_decay = vec!["bias".into()];
        o.step(std::slice::from_ref(&p)).unwrap();
        assert!((p.value.to_vec()[0] - 0.95).abs() < 1e-7);
        let mut b = param(&[1.0], &[0.0]);
        b.name = "dense.bias".into();
        let mut o2 = Optimizer::sgd(0.1, 0.0, false);
        o2.weight_decay = Some(0.5);
        o2.exclude_from_weight_decay = vec!["bias".into()];
        o2.step(std::slice::from_ref(&b)).unwrap();
        assert_eq!(b.value.to_vec(), vec![1.0]);
    }

    #[test]
    fn state_round_trips() {
        let p = param(&[1.0, 2.0], &[0.1, -0.2]);
        let mut o = Optimizer::adam(0.01);
        o.step(std::slice::from_ref(&p)).unwrap();
        let saved = o.state(std::slice::from_ref(&p));
        let mut o2 = Optimizer::adam(0.01);
        o2.load_state(std::slice::from_ref(&p), &saved).unwrap();
        assert_eq!(o2.iterations, 1);
        let q = p.clone();
        let before = q.value.to_vec();
        o.step(std::slice::from_ref(&p)).unwrap();
        let a = p.value.to_vec();
        q.value.assign(&before).unwrap();
        // q shares p's tensor; restore and step with the restored optimizer
        o2.step(std::slice::from_ref(&q)).unwrap();
        assert_eq!(a, q.value.to_vec());
        assert!(Optimizer::from_name("lbfgs", None).is_err());
        assert_eq!(Optimizer::from_name("adamw", None).unwrap().name(), "adamw");
    }
}
