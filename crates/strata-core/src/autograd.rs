//! Define-by-run reverse-mode differentiation.
//!
//! Each op that sees a tracked input stores a [`Node`]: its inputs and a closure
//! mapping the output gradient to input gradients. `backward` walks the graph in
//! reverse topological order, consuming every node so its saved buffers are freed
//! as soon as they have been used. In no-grad mode nothing is recorded.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{CoreError, Result};
use crate::tensor::{Tensor, TensorInner};

/// One optional gradient per input of an op.
pub(crate) type InputGrads = Vec<Option<Vec<f32>>>;

/// A backward that takes the output gradient over.
type OwnedFn = Box<dyn FnOnce(Vec<f32>) -> InputGrads + Send>;
/// A backward that only reads the output gradient.
type BorrowedFn = Box<dyn FnOnce(&[f32]) -> InputGrads + Send>;

/// A backward that writes over the output gradient when it is the only
/// holder, and reads it where it is shared.
type EitherFn = Box<dyn FnOnce(Upstream) -> InputGrads + Send>;

/// The output gradient as a backward of [`BackwardFn::Either`] gets it.
pub(crate) enum Upstream {
    /// No one else holds it: the backward may write over it.
    Owned(Vec<f32>),
    /// Shared with another input's gradient: read only.
    Shared(Grad),
}

impl Upstream {
    pub(crate) fn as_slice(&self) -> &[f32] {
        match self {
            Upstream::Owned(v) => v,
            Upstream::Shared(g) => g,
        }
    }
}

/// The gradients already on their way to an op's inputs, one slot per input,
/// that a backward of [`BackwardFn::Accumulating`] may add its own to in
/// place: it takes a slot's buffer and returns it, its own gradient added,
/// as that input's gradient. A slot it leaves is added to as usual.
pub(crate) type Accumulators = Vec<Option<Vec<f32>>>;

/// A backward that may add into the inputs' gradients so far.
type AccumulatingFn = Box<dyn FnOnce(Upstream, &mut Accumulators) -> InputGrads + Send>;

/// Maps the output gradient to the inputs' gradients.
pub(crate) enum BackwardFn {
    /// Takes the gradient over (to pass it on to an input as it is): the
    /// engine copies it first if another input still shares it.
    Owned(OwnedFn),
    /// Only reads it: a gradient shared with another input is read in place.
    Borrowed(BorrowedFn),
    /// Gets it over when it is not shared, else reads it.
    Either(EitherFn),
    /// As `Either`, and handed the gradients that already reached its
    /// inputs (where no one else holds them) to add its own into, saving
    /// the sweep that would add the two (a residual block's input: the
    /// shortcut's gradient, then the first convolution's dX).
    Accumulating(AccumulatingFn),
}

/// The record of one op application.
pub(crate) struct Node {
    pub(crate) op: &'static str,
    pub(crate) inputs: Vec<GraphRef>,
    pub(crate) backward: BackwardFn,
    /// `(from, to)`: input `to` gets the same gradient as input `from` (an
    /// Add's two inputs), shared instead of copied, where the backward
    /// returns none for `to`.
    pub(crate) same_grad: Option<(usize, usize)>,
}

/// A gradient on its way, shared by the inputs of an op that gave them the
/// same values ([`Node::same_grad`]) until one of them writes to it.
pub(crate) type Grad = Arc<Vec<f32>>;

/// The values of `g`, taken over, or copied while another holder shares them.
fn owned(g: Grad) -> Vec<f32> {
    Arc::try_unwrap(g).unwrap_or_else(|shared| crate::kernels::buffers::copy_of(&shared))
}

/// The output gradient as a backward that may write over it gets it.
fn upstream(g: Grad) -> Upstream {
    match Arc::try_unwrap(g) {
        Ok(v) => Upstream::Owned(v),
        Err(shared) => Upstream::Shared(shared),
    }
}

/// Drops a holder of `g`, giving the buffer back to the pool if it was the last.
fn release(g: Grad) {
    if let Ok(v) = Arc::try_unwrap(g) {
        crate::kernels::buffers::recycle(v);
    }
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

/// An edge of the graph: a tensor's id, shape, gradient flag, node and gradient
/// slot, without keeping its values alive (only [`Tensor`] handles do that).
#[derive(Clone)]
pub(crate) struct GraphRef(Arc<TensorInner>);

impl GraphRef {
    pub(crate) fn of(t: &Tensor) -> GraphRef {
        GraphRef(Arc::clone(&t.0))
    }
    fn id(&self) -> u64 {
        self.0.id
    }
    pub(crate) fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }
    fn numel(&self) -> usize {
        crate::shape::numel(&self.0.shape)
    }
}

fn node_inputs(t: &GraphRef) -> Vec<GraphRef> {
    t.0.node
        .lock()
        .map(|n| n.as_ref().map(|n| n.inputs.clone()).unwrap_or_default())
        .unwrap_or_default()
}

/// Topological order (inputs before outputs) of the recorded graph under `root`.
fn topo_order(root: &Tensor) -> Vec<GraphRef> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // iterative DFS: (tensor, children already pushed)
    let mut stack = vec![(GraphRef::of(root), false)];
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
    walk(root, None)
}

/// [`backward`], calling `hook` with a leaf's id as soon as its gradient is
/// final: every op that takes the leaf has delivered its part, and the sum
/// is in the leaf's gradient slot. Each leaf of the graph that requires
/// grad is told exactly once, whether or not a gradient reached it. The
/// gradients are the same, bit for bit, as [`backward`]'s.
pub(crate) fn backward_with_hook(root: &Tensor, hook: &mut dyn FnMut(u64)) -> Result<()> {
    walk(root, Some(hook))
}

/// What the walk with a hook keeps: per leaf, the ops that take it and are
/// still to run, and the leaves already told.
struct LeafWatch<'h> {
    hook: &'h mut dyn FnMut(u64),
    pending: HashMap<u64, usize>,
    leaves: HashSet<u64>,
    told: HashSet<u64>,
}

impl LeafWatch<'_> {
    fn new<'h>(order: &[GraphRef], hook: &'h mut dyn FnMut(u64)) -> LeafWatch<'h> {
        let is_leaf = |t: &GraphRef| t.0.node.lock().map(|n| n.is_none()).unwrap_or(true);
        let leaves: HashSet<u64> = order
            .iter()
            .filter(|t| is_leaf(t))
            .map(GraphRef::id)
            .collect();
        let mut pending = HashMap::new();
        for t in order.iter().filter(|t| !leaves.contains(&t.id())) {
            for inp in node_inputs(t) {
                if inp.requires_grad() && leaves.contains(&inp.id()) {
                    *pending.entry(inp.id()).or_insert(0) += 1;
                }
            }
        }
        LeafWatch {
            hook,
            pending,
            leaves,
            told: HashSet::new(),
        }
    }

    /// `leaf`'s gradient into its slot, and the hook told.
    fn settle(&mut self, grads: &mut HashMap<u64, Grad>, leaf: &GraphRef) {
        if !self.told.insert(leaf.id()) {
            return;
        }
        if let Some(g) = grads.remove(&leaf.id()) {
            leaf.0.accumulate_grad(owned(g));
        }
        (self.hook)(leaf.id());
    }

    /// An op that takes `inputs` has run (or was skipped, no gradient
    /// reaching it): leaves it was the last taker of are final.
    fn ran(&mut self, grads: &mut HashMap<u64, Grad>, inputs: &[GraphRef]) {
        for inp in inputs {
            let Some(left) = self.pending.get_mut(&inp.id()) else {
                continue;
            };
            *left -= 1;
            if *left == 0 {
                self.settle(grads, inp);
            }
        }
    }
}

fn walk(root: &Tensor, hook: Option<&mut dyn FnMut(u64)>) -> Result<()> {
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
    let mut watch = hook.map(|h| LeafWatch::new(&order, h));
    let mut grads: HashMap<u64, Grad> = HashMap::new();
    grads.insert(root.id(), Arc::new(vec![1.0]));
    // adds `gi` to the gradient on its way to `inp`, or starts it; one that is
    // still shared is copied before it is written to
    let deliver =
        |grads: &mut HashMap<u64, Grad>, inp: &GraphRef, gi: Grad| match grads.get_mut(&inp.id()) {
            Some(acc) => {
                let acc: &mut Vec<f32> = Arc::make_mut(acc);
                crate::kernels::parallel::add_assign(acc, &gi);
                release(gi);
            }
            None => {
                grads.insert(inp.id(), gi);
            }
        };
    for t in order.iter().rev() {
        if let Some(w) = watch.as_mut() {
            if w.leaves.contains(&t.id()) {
                // told already, unless no op takes it (the root itself)
                w.settle(&mut grads, t);
                continue;
            }
        }
        let Some(g) = grads.remove(&t.id()) else {
            if let Some(w) = watch.as_mut() {
                w.ran(&mut grads, &node_inputs(t));
            }
            continue;
        };
        let node = t.0.node.lock().ok().and_then(|mut n| n.take());
        match node {
            Some(node) => {
                let Node {
                    op,
                    inputs,
                    backward,
                    same_grad,
                } = node;
                let input_grads = match backward {
                    BackwardFn::Owned(f) => f(owned(g)),
                    BackwardFn::Borrowed(f) => {
                        let r = f(&g);
                        release(g);
                        r
                    }
                    BackwardFn::Either(f) => f(upstream(g)),
                    BackwardFn::Accumulating(f) => {
                        // each input's gradient so far, where this op alone would hold it
                        let mut acc: Accumulators = inputs
                            .iter()
                            .map(|inp| {
                                let g = grads.remove(&inp.id())?;
                                Arc::try_unwrap(g)
                                    .map_err(|shared| grads.insert(inp.id(), shared))
                                    .ok()
                            })
                            .collect();
                        let given: Vec<bool> = acc.iter().map(Option::is_some).collect();
                        let mut r = f(upstream(g), &mut acc);
                        let slots = inputs.iter().zip(given).zip(acc).zip(r.iter_mut());
                        for (((inp, given), left), gi) in slots {
                            match (given, left) {
                                // not added to: back on its way, added to as usual
                                (_, Some(left)) => {
                                    grads.insert(inp.id(), Arc::new(left));
                                }
                                // taken: the backward's gradient is the total
                                (true, None) => {
                                    let total = gi.take();
                                    debug_assert!(total.is_some(), "{op} took a gradient");
                                    if let Some(total) = total {
                                        grads.insert(inp.id(), Arc::new(total));
                                    }
                                }
                                (false, None) => {}
                            }
                        }
                        r
                    }
                };
                debug_assert_eq!(input_grads.len(), inputs.len(), "{op}");
                let mut input_grads: Vec<Option<Grad>> =
                    input_grads.into_iter().map(|g| g.map(Arc::new)).collect();
                if let Some((from, to)) = same_grad {
                    if inputs[to].requires_grad() && input_grads[to].is_none() {
                        input_grads[to] = input_grads[from].clone();
                    }
                }
                for (inp, gi) in inputs.iter().zip(input_grads) {
                    let Some(gi) = gi else { continue };
                    if !inp.requires_grad() {
                        release(gi);
                        continue;
                    }
                    debug_assert_eq!(gi.len(), inp.numel(), "gradient length of {op}");
                    deliver(&mut grads, inp, gi);
                }
                if let Some(w) = watch.as_mut() {
                    w.ran(&mut grads, &inputs);
                }
            }
            None => t.0.accumulate_grad(owned(g)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values_alive(r: &GraphRef) -> bool {
        !r.0.data.read().unwrap().is_empty()
    }

    #[test]
    fn values_no_backward_needs_are_freed_during_the_forward() {
        let x = Tensor::from_vec(vec![0.5, -1.0, 2.0], &[3])
            .unwrap()
            .requires_grad_(true);
        // `e` is read by nothing's backward (Add keeps nothing, ReLU a mask);
        // `m`'s values are read by Mul's backward, through the handle it holds
        let e = x.exp();
        let s = e.add(&x).unwrap();
        let m = s.relu();
        let y = m.mul(&m).unwrap().sum_all();
        let (er, sr, mr) = (GraphRef::of(&e), GraphRef::of(&s), GraphRef::of(&m));
        drop((e, s, m));
        assert!(
            !values_alive(&er),
            "e {}",
            er.0.handles.load(Ordering::Relaxed)
        );
        assert!(
            !values_alive(&sr),
            "s {}",
            sr.0.handles.load(Ordering::Relaxed)
        );
        assert!(values_alive(&mr));
        y.backward().unwrap();
        // d/dx relu(exp(x) + x)^2: zero where exp(x) + x <= 0 (at -1)
        let want: Vec<f32> = [0.5f32, -1.0, 2.0]
            .iter()
            .map(|&v| (2.0 * (v.exp() + v) * (v.exp() + 1.0)).max(0.0))
            .collect();
        assert_eq!(want[1], 0.0);
        let got = x.grad().unwrap().to_vec();
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{got:?} vs {want:?}"
            );
        }
        // the backward consumed the graph: the last values go with the last edge
        drop(y);
        assert!(!values_alive(&mr) || Arc::strong_count(&mr.0) == 1);
    }

    /// A small net: x -> (x w1 + b1).relu() -> (. w2) -> sum, w1 also in a
    /// penalty term, b2 reached by no gradient (multiplied by zero).
    fn small_net() -> (Vec<Tensor>, Tensor) {
        let leaf = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s).unwrap().requires_grad_(true);
        let x = leaf(vec![0.5, -1.0, 2.0, 0.25, 1.5, -0.75], &[2, 3]);
        let w1 = leaf(vec![0.1, -0.2, 0.3, 0.4, -0.5, 0.6], &[3, 2]);
        let b1 = leaf(vec![0.05, -0.1], &[2]);
        let w2 = leaf(vec![0.7, -0.3], &[2, 1]);
        let b2 = leaf(vec![0.2], &[1]);
        let h = x.matmul(&w1).unwrap().add(&b1).unwrap().relu();
        let y = h.matmul(&w2).unwrap().sum_all();
        let penalty = w1.mul(&w1).unwrap().sum_all().mul_scalar(0.01);
        let dead = b2.mul_scalar(0.0).sum_all().mul_scalar(0.0);
        let loss = y.add(&penalty).unwrap().add(&dead).unwrap();
        (vec![x, w1, b1, w2, b2], loss)
    }

    #[test]
    fn the_hook_tells_each_leaf_once_when_its_gradient_is_final() {
        let (plain, loss) = small_net();
        loss.backward().unwrap();
        let want: Vec<Option<Vec<f32>>> =
            plain.iter().map(|t| t.grad().map(|g| g.to_vec())).collect();

        let (leaves, loss) = small_net();
        let ids: Vec<u64> = leaves.iter().map(Tensor::id).collect();
        let mut told: Vec<usize> = Vec::new();
        loss.backward_with_hook(|id| {
            let i = ids
                .iter()
                .position(|&l| l == id)
                .expect("a leaf of the net");
            // final when told: the same bits as after the plain backward
            let now = leaves[i].grad().map(|g| g.to_vec());
            assert_eq!(
                now, want[i],
                "leaf {i} told before its gradient was complete"
            );
            told.push(i);
        })
        .unwrap();
        let mut once = told.clone();
        once.sort_unstable();
        assert_eq!(
            once,
            vec![0, 1, 2, 3, 4],
            "each leaf exactly once: {told:?}"
        );
        // the walk reaches the last layer before the first: w2 is final
        // before w1, b1 and x (w1 waits for its penalty term too)
        let at = |i: usize| told.iter().position(|&t| t == i).unwrap();
        assert!(at(3) < at(1) && at(3) < at(2) && at(3) < at(0), "{told:?}");
        for (t, w) in leaves.iter().zip(&want) {
            assert_eq!(t.grad().map(|g| g.to_vec()), *w);
        }
        assert!(want[4].as_ref().is_none_or(|g| g.iter().all(|&v| v == 0.0)));
    }

    #[test]
    fn the_hook_tells_a_root_leaf_and_adds_to_earlier_gradients() {
        let x = Tensor::from_vec(vec![3.0], &[1])
            .unwrap()
            .requires_grad_(true);
        let mut n = 0;
        x.backward_with_hook(|id| {
            assert_eq!(id, x.id());
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(x.grad().unwrap().to_vec(), vec![1.0]);
        // a second backward adds, as the plain one does
        let y = x.mul(&x).unwrap().sum_all();
        y.backward_with_hook(|_| n += 1).unwrap();
        assert_eq!(n, 2);
        assert_eq!(x.grad().unwrap().to_vec(), vec![7.0]);
    }

    #[test]
    fn a_handle_keeps_values_alive_and_clones_count() {
        let x = Tensor::from_vec(vec![1.0, 2.0], &[2])
            .unwrap()
            .requires_grad_(true);
        let a = x.exp();
        let b = a.clone();
        let _s = a.add(&x).unwrap();
        let r = GraphRef::of(&a);
        drop(a);
        assert!(values_alive(&r), "a clone is a handle");
        assert_eq!(b.to_vec(), vec![1f32.exp(), 2f32.exp()]);
        drop(b);
        assert!(!values_alive(&r));
    }
}
