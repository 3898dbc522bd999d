//! Define-by-run reverse-mode differentiation.
//!
//! Each op that sees a tracked input stores a [`Node`]: its inputs and a closure
//! mapping the output gradient to input gradients. `backward` walks the graph in
//! reverse topological order, consuming every node so its saved buffers are freed
//! as soon as they have been used. In no-grad mode nothing is recorded.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use crate::error::{CoreError, Result};
use crate::tensor::Tensor;

pub(crate) type BackwardFn = Box<dyn FnOnce(&[f32]) -> Vec<Option<Vec<f32>>> + Send>;

/// The record of one op application.
pub(crate) struct Node {
    pub(crate) op: &'static str,
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) backward: BackwardFn,
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops currently record their backward.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous grad mode when dropped.
pub struct GradModeGuard(bool);

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        let prev = self.0;
        GRAD_ENABLED.with(|g| g.set(prev));
    }
}

/// Turns recording off until the guard is dropped (inference mode).
pub fn no_grad_guard() -> GradModeGuard {
    let prev = is_grad_enabled();
    GRAD_ENABLED.with(|g| g.set(false));
    GradModeGuard(prev)
}

/// Runs `f` without recording any graph.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _g = no_grad_guard();
    f()
}

pub(crate) fn should_record(inputs: &[&Tensor]) -> bool {
    is_grad_enabled() && inputs.iter().any(|t| t.requires_grad())
}

fn node_inputs(t: &Tensor) -> Vec<Tensor> {
    t.0.node
        .lock()
        .map(|n| n.as_ref().map(|n| n.inputs.clone()).unwrap_or_default())
        .unwrap_or_default()
}

/// Topological order (inputs before outputs) of the recorded graph under `root`.
fn topo_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // iterative DFS: (tensor, children already pushed)
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        for inp in node_inputs(&t) {
            if inp.requires_grad() && !seen.contains(&inp.id()) {
                stack.push((inp, false));
            }
        }
    }
    order
}

pub(crate) fn backward(root: &Tensor) -> Result<()> {
    if root.numel() != 1 {
        return Err(CoreError::Autograd(format!(
            "backward needs a scalar (one element), found shape {}",
            crate::error::fmt_shape(root.shape())
        )));
    }
    if !root.requires_grad() {
        return Err(CoreError::Autograd(
            "backward on a tensor that does not require grad (no variable reaches it)".into(),
        ));
    }
    let order = topo_order(root);
    let mut grads: HashMap<u64, Vec<f32>> = HashMap::new();
    grads.insert(root.id(), vec![1.0]);
    for t in order.iter().rev() {
        let Some(g) = grads.remove(&t.id()) else {
            continue;
        };
        let node = t.0.node.lock().ok().and_then(|mut n| n.take());
        match node {
            Some(node) => {
                let Node {
                    op,
                    inputs,
                    backward,
                } = node;
                let input_grads = backward(&g);
                crate::kernels::buffers::recycle(g);
                debug_assert_eq!(input_grads.len(), inputs.len(), "{op}");
                for (inp, gi) in inputs.iter().zip(input_grads) {
                    let Some(gi) = gi else { continue };
                    if !inp.requires_grad() {
                        continue;
                    }
                    debug_assert_eq!(gi.len(), inp.numel(), "gradient length of {op}");
                    match grads.get_mut(&inp.id()) {
                        Some(acc) => {
                            acc.iter_mut().zip(&gi).for_each(|(a, b)| *a += b);
                            crate::kernels::buffers::recycle(gi);
                        }
                        None => {
                            grads.insert(inp.id(), gi);
                        }
                    }
                }
            }
            None => t.accumulate_grad(g),
        }
    }
    Ok(())
}
