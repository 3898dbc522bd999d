//! `Tensor`: a cheap handle to float32 data of any rank, with an optional
//! autograd record. Cloning a tensor clones the handle, not the data.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::autograd::{self, Node};
use crate::error::{fmt_shape, CoreError, Result};
use crate::rng::Rng;
use crate::shape::{numel, strides};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct TensorInner {
    pub(crate) id: u64,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: RwLock<Vec<f32>>,
    pub(crate) requires_grad: AtomicBool,
    pub(crate) grad: Mutex<Option<Vec<f32>>>,
    pub(crate) node: Mutex<Option<Node>>,
    /// Live [`Tensor`] handles. The graph's edges hold the inner without counting
    /// here, so the values go as soon as no handle is left (see `Drop for Tensor`).
    pub(crate) handles: AtomicUsize,
    /// The values packed for the GEMM kernel as a convolution's weights, kept
    /// between calls while the tensor is used without gradients (inference, a
    /// frozen backbone); cleared by every write ([`Tensor::data_mut`]).
    pub(crate) packed: Mutex<Option<PackedWeights>>,
}

/// Weights packed for a convolution, under a key naming the layout (the
/// group count, or 0 for Winograd's transformed weights).
/// A kernel's packed weights, keyed by their layout and the precision they were packed for.
pub(crate) type PackedWeights = (
    (usize, crate::precision::Precision),
    Arc<Vec<crate::kernels::packed_gemm::PackedB>>,
);

impl Drop for TensorInner {
    /// Large data and gradient buffers go back to the pool for the next step.
    fn drop(&mut self) {
        let data = self.data.get_mut().unwrap_or_else(|e| e.into_inner());
        crate::kernels::buffers::recycle(std::mem::take(data));
        let grad = self.grad.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = grad.take() {
            crate::kernels::buffers::recycle(g);
        }
    }
}

/// A float32 tensor in row-major order. Images and feature maps are NHWC.
pub struct Tensor(pub(crate) Arc<TensorInner>);

impl Clone for Tensor {
    fn clone(&self) -> Self {
        self.0.handles.fetch_add(1, Ordering::Relaxed);
        Tensor(Arc::clone(&self.0))
    }
}

impl Drop for Tensor {
    /// The last handle frees the values even while the autograd graph still
    /// refers to the tensor: the graph needs only its shape, gradient flag, node
    /// and gradient slot, and every backward that reads the values holds a handle
    /// of its own. So an activation that no backward needs (the input of an Add,
    /// of a ReLU that keeps a mask) is freed during the forward, not after the
    /// backward. No handle can be made again once the count is zero: the graph's
    /// references never turn back into handles.
    fn drop(&mut self) {
        if self.0.handles.fetch_sub(1, Ordering::AcqRel) == 1 && Arc::strong_count(&self.0) > 1 {
            let mut data = self.0.data.write().unwrap_or_else(|e| e.into_inner());
            crate::kernels::buffers::recycle(std::mem::take(&mut *data));
            self.packed_cache().take();
        }
    }
}

impl Tensor {
    fn build(data: Vec<f32>, shape: Vec<usize>, node: Option<Node>) -> Tensor {
        let requires_grad = node.is_some();
        Tensor(Arc::new(TensorInner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            data: RwLock::new(data),
            requires_grad: AtomicBool::new(requires_grad),
            grad: Mutex::new(None),
            node: Mutex::new(node),
            handles: AtomicUsize::new(1),
            packed: Mutex::new(None),
        }))
    }

    /// A tensor from row-major data; the length must equal the shape's element count.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(CoreError::shape(
                "Tensor::from_vec",
                format!("{} values for shape {}", numel(shape), fmt_shape(shape)),
                format!("{} values", data.len()),
            ));
        }
        Ok(Tensor::build(data, shape.to_vec(), None))
    }

    /// Internal constructor for data whose length is already known to match.
    pub(crate) fn from_parts(data: Vec<f32>, shape: Vec<usize>) -> Tensor {
        debug_assert_eq!(data.len(), numel(&shape));
        Tensor::build(data, shape, None)
    }

    /// Records `backward` for this op's output when gradients are on and an input needs them.
    ///
    /// `backward` maps the output gradient to one optional gradient per input
    /// (each of that input's element count).
    pub(crate) fn from_op(
        data: Vec<f32>,
        shape: Vec<usize>,
        op: &'static str,
        inputs: &[&Tensor],
        backward: impl FnOnce(&[f32]) -> Vec<Option<Vec<f32>>> + Send + 'static,
    ) -> Tensor {
        let backward = autograd::BackwardFn::Borrowed(Box::new(backward));
        Tensor::with_node(data, shape, op, inputs, backward, None)
    }

    /// [`Tensor::from_op`] for an op whose inputs `from` and `to` take the
    /// same gradient (an Add), with a backward that takes the output gradient
    /// over (to pass it on as it is, or to write over it): it gives the
    /// gradient for `from` only (none for `to`), and the engine hands both
    /// the same buffer, copied only if one of them is written to while the
    /// other still reads it.
    pub(crate) fn from_op_same_grad(
        data: Vec<f32>,
        shape: Vec<usize>,
        op: &'static str,
        inputs: &[&Tensor],
        (from, to): (usize, usize),
        backward: impl FnOnce(Vec<f32>) -> Vec<Option<Vec<f32>>> + Send + 'static,
    ) -> Tensor {
        let backward = autograd::BackwardFn::Owned(Box::new(backward));
        Tensor::with_node(data, shape, op, inputs, backward, Some((from, to)))
    }

    /// [`Tensor::from_op`] for a backward that writes its result over the
    /// output gradient when no other input shares that buffer
    /// ([`autograd::Upstream`]), saving a fresh buffer.
    pub(crate) fn from_op_either(
        data: Vec<f32>,
        shape: Vec<usize>,
        op: &'static str,
        inputs: &[&Tensor],
        backward: impl FnOnce(autograd::Upstream) -> Vec<Option<Vec<f32>>> + Send + 'static,
    ) -> Tensor {
        let backward = autograd::BackwardFn::Either(Box::new(backward));
        Tensor::with_node(data, shape, op, inputs, backward, None)
    }

    /// [`Tensor::from_op_either`] for a backward that may add its gradients
    /// into the ones already on their way to its inputs
    /// ([`autograd::Accumulators`]) instead of handing them over to be added.
    pub(crate) fn from_op_accumulating(
        data: Vec<f32>,
        shape: Vec<usize>,
        op: &'static str,
        inputs: &[&Tensor],
        backward: impl FnOnce(autograd::Upstream, &mut autograd::Accumulators) -> Vec<Option<Vec<f32>>>
            + Send
            + 'static,
    ) -> Tensor {
        let backward = autograd::BackwardFn::Accumulating(Box::new(backward));
        Tensor::with_node(data, shape, op, inputs, backward, None)
    }

    /// The op's output, recording its node when an input needs a gradient.
    fn with_node(
        data: Vec<f32>,
        shape: Vec<usize>,
        op: &'static str,
        inputs: &[&Tensor],
        backward: autograd::BackwardFn,
        same_grad: Option<(usize, usize)>,
    ) -> Tensor {
        if !autograd::should_record(inputs) {
            return Tensor::build(data, shape, None);
        }
        let node = Node {
            op,
            inputs: inputs.iter().map(|t| autograd::GraphRef::of(t)).collect(),
            backward,
            same_grad,
        };
        Tensor::build(data, shape, Some(node))
    }

    /// A new op defined outside the core (a fused loss, say): `data` is its
    /// forward result and `backward` maps the output gradient to one optional
    /// gradient per input, each of that input's element count.
    pub fn custom_op(
        data: Vec<f32>,
        shape: &[usize],
        op: &'static str,
        inputs: &[&Tensor],
        backward: impl FnOnce(&[f32]) -> Vec<Option<Vec<f32>>> + Send + 'static,
    ) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(CoreError::shape(
                op,
                format!("{} values for shape {}", numel(shape), fmt_shape(shape)),
                format!("{} values", data.len()),
            ));
        }
        let sizes: Vec<usize> = inputs.iter().map(|t| t.numel()).collect();
        Ok(Tensor::from_op(
            data,
            shape.to_vec(),
            op,
            inputs,
            move |g| {
                let grads = backward(g);
                // a custom backward that returns wrong lengths drops those gradients
                // rather than corrupting the accumulation
                grads
                    .into_iter()
                    .zip(sizes.iter().chain(std::iter::repeat(&0)))
                    .map(|(g, &n)| g.filter(|g| g.len() == n))
                    .collect()
            },
        ))
    }

    pub fn scalar(v: f32) -> Tensor {
        Tensor::from_parts(vec![v], vec![])
    }
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::from_parts(vec![0.0; numel(shape)], shape.to_vec())
    }
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }
    pub fn full(shape: &[usize], v: f32) -> Tensor {
        Tensor::from_parts(vec![v; numel(shape)], shape.to_vec())
    }
    /// Uniform samples in `[low, high)` from a seeded generator.
    pub fn rand_uniform(shape: &[usize], low: f32, high: f32, rng: &mut Rng) -> Tensor {
        let data = (0..numel(shape)).map(|_| rng.uniform(low, high)).collect();
        Tensor::from_parts(data, shape.to_vec())
    }
    /// Normal samples from a seeded generator.
    pub fn rand_normal(shape: &[usize], mean: f32, std: f32, rng: &mut Rng) -> Tensor {
        let data = (0..numel(shape))
            .map(|_| mean + std * rng.normal())
            .collect();
        Tensor::from_parts(data, shape.to_vec())
    }
    /// `0, 1, ..., n-1` as a 1-d tensor.
    pub fn arange(n: usize) -> Tensor {
        Tensor::from_parts((0..n).map(|i| i as f32).collect(), vec![n])
    }

    /// Unique id of this tensor (stable for its lifetime).
    pub fn id(&self) -> u64 {
        self.0.id
    }
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    pub fn rank(&self) -> usize {
        self.0.shape.len()
    }
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }
    /// Size of one axis (negative counts from the end).
    pub fn dim(&self, axis: isize) -> Result<usize> {
        let a = crate::shape::normalize_axis("dim", axis, self.rank())?;
        Ok(self.0.shape[a])
    }

    /// Read access to the row-major data.
    pub fn data(&self) -> RwLockReadGuard<'_, Vec<f32>> {
        self.0.data.read().unwrap_or_else(|e| e.into_inner())
    }
    /// Write access, for in-place updates outside autograd (optimizers, loading weights).
    pub fn data_mut(&self) -> RwLockWriteGuard<'_, Vec<f32>> {
        let guard = self.0.data.write().unwrap_or_else(|e| e.into_inner());
        // under the write lock: a reader packs and caches only while it holds
        // the read lock, so no packing of the old values can land after this
        self.packed_cache().take();
        guard
    }
    /// The packed-weights cache (see `TensorInner::packed`).
    pub(crate) fn packed_cache(&self) -> std::sync::MutexGuard<'_, Option<PackedWeights>> {
        self.0.packed.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// A copy of the data.
    pub fn to_vec(&self) -> Vec<f32> {
        crate::kernels::buffers::copy_of(&self.data())
    }
    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(CoreError::shape(
                "item",
                "one element",
                fmt_shape(self.shape()),
            ));
        }
        Ok(self.data()[0])
    }
    /// Value at a multi-index.
    pub fn get(&self, index: &[usize]) -> Result<f32> {
        if index.len() != self.rank() || index.iter().zip(self.shape()).any(|(i, d)| i >= d) {
            return Err(CoreError::shape(
                "get",
                format!("an index within {}", fmt_shape(self.shape())),
                format!("{index:?}"),
            ));
        }
        let off: usize = index
            .iter()
            .zip(strides(self.shape()))
            .map(|(i, s)| i * s)
            .sum();
        Ok(self.data()[off])
    }
    /// Overwrites the data in place (same element count), outside autograd.
    pub fn assign(&self, values: &[f32]) -> Result<()> {
        if values.len() != self.numel() {
            return Err(CoreError::shape(
                "assign",
                format!("{} values", self.numel()),
                format!("{} values", values.len()),
            ));
        }
        self.data_mut().copy_from_slice(values);
        Ok(())
    }

    /// Whether gradients flow to (leaf) or through (op output) this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }
    /// Marks a leaf tensor as a variable whose gradient `backward` fills.
    pub fn set_requires_grad(&self, on: bool) -> &Tensor {
        self.0.requires_grad.store(on, Ordering::Relaxed);
        self
    }
    /// Builder form of [`Tensor::set_requires_grad`].
    pub fn requires_grad_(self, on: bool) -> Tensor {
        self.set_requires_grad(on);
        self
    }
    /// Whether this tensor was made by a recorded op.
    pub fn is_leaf(&self) -> bool {
        self.0.node.lock().map(|n| n.is_none()).unwrap_or(true)
    }
    /// The accumulated gradient of a leaf, if any.
    pub fn grad(&self) -> Option<Tensor> {
        let g = self.0.grad.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .map(|g| Tensor::from_parts(g.clone(), self.0.shape.clone()))
    }
    /// Runs `f` on the gradient buffer without copying it.
    pub fn with_grad<R>(&self, f: impl FnOnce(Option<&[f32]>) -> R) -> R {
        let g = self.0.grad.lock().unwrap_or_else(|e| e.into_inner());
        f(g.as_deref())
    }
    /// Clears the accumulated gradient.
    pub fn zero_grad(&self) {
        let old = self.0.grad.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(g) = old {
            crate::kernels::buffers::recycle(g);
        }
    }
}

impl TensorInner {
    /// Adds `g` into the gradient slot (a leaf's, during backward).
    pub(crate) fn accumulate_grad(&self, g: Vec<f32>) {
        let mut slot = self.grad.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(acc) => {
                crate::kernels::parallel::add_assign(acc, &g);
                crate::kernels::buffers::recycle(g);
            }
            None => *slot = Some(g),
        }
    }
}

impl Tensor {
    /// Sets the gradient buffer (used by tests and gradient clipping).
    pub fn set_grad(&self, g: Option<Vec<f32>>) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = g;
    }
    /// A new leaf with the same data and no history.
    pub fn detach(&self) -> Tensor {
        Tensor::from_parts(self.to_vec(), self.0.shape.clone())
    }
    /// Reverse-mode differentiation from this scalar; fills `grad()` of every leaf
    /// that requires grad. The graph is consumed: saved buffers are freed as it goes.
    pub fn backward(&self) -> Result<()> {
        autograd::backward(self)
    }

    /// [`Tensor::backward`], calling `hook` with the [`Tensor::id`] of each
    /// leaf that requires grad as soon as its gradient is final (every op
    /// that takes it has added its part; `grad()` holds the sum), while the
    /// rest of the graph is still being walked: once per leaf of the graph,
    /// whether or not a gradient reached it. The gradients are bitwise the
    /// same as `backward`'s. For overlapping a data-parallel run's
    /// gradient all-reduce with the backward.
    pub fn backward_with_hook(&self, mut hook: impl FnMut(u64)) -> Result<()> {
        autograd::backward_with_hook(self, &mut hook)
    }

    /// Index of the largest value along `axis` (first on ties), as f32 values.
    pub fn argmax(&self, axis: isize) -> Result<Tensor> {
        let a = crate::shape::normalize_axis("argmax", axis, self.rank())?;
        let (outer, len, inner) = crate::shape::split_at_axis(self.shape(), a);
        if len == 0 {
            return Err(CoreError::shape(
                "argmax",
                "a non-empty axis",
                fmt_shape(self.shape()),
            ));
        }
        let d = self.data();
        let mut out = vec![0.0; outer * inner];
        for o in 0..outer {
            for i in 0..inner {
                let mut best = 0;
                let mut bv = f32::NEG_INFINITY;
                for l in 0..len {
                    let v = d[(o * len + l) * inner + i];
                    if v > bv || (l == 0) {
                        bv = v;
                        best = l;
                    }
                }
                out[o * inner + i] = best as f32;
            }
        }
        let mut shape = self.shape().to_vec();
        shape.remove(a);
        Ok(Tensor::from_parts(out, shape))
    }

    /// True when every element differs by at most `atol + rtol * |other|`.
    pub fn allclose(&self, other: &Tensor, rtol: f32, atol: f32) -> bool {
        self.shape() == other.shape()
            && self
                .data()
                .iter()
                .zip(other.data().iter())
                .all(|(a, b)| (a - b).abs() <= atol + rtol * b.abs())
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Prints the shape and a preview of the first and last values.
impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.data();
        let show = |v: &[f32]| {
            v.iter()
                .map(|x| format!("{x:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let preview = if d.len() <= 8 {
            show(&d)
        } else {
            format!("{}, ..., {}", show(&d[..4]), show(&d[d.len() - 3..]))
        };
        write!(f, "Tensor(shape={}, [{}]", fmt_shape(self.shape()), preview)?;
        if self.requires_grad() {
            write!(f, ", requires_grad")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_checks_length() {
        let e = Tensor::from_vec(vec![1.0; 5], &[2, 3]).unwrap_err();
        assert!(e.to_string().contains("6 values for shape (2, 3)"), "{e}");
    }

    #[test]
    fn display_shows_shape_and_preview() {
        let t = Tensor::arange(10);
        let s = t.to_string();
        assert!(s.starts_with("Tensor(shape=(10,), [0.0000, 1.0000"), "{s}");
        assert!(s.contains("..., 7.0000, 8.0000, 9.0000"), "{s}");
    }

    #[test]
    fn get_and_argmax() {
        let t = Tensor::from_vec(vec![1., 5., 2., 7., 0., 3.], &[2, 3]).unwrap();
        assert_eq!(t.get(&[1, 0]).unwrap(), 7.0);
        assert!(t.get(&[2, 0]).is_err());
        assert_eq!(t.argmax(-1).unwrap().to_vec(), vec![1.0, 0.0]);
        assert_eq!(t.argmax(0).unwrap().to_vec(), vec![1.0, 0.0, 1.0]);
    }

    #[test]
    fn seeded_random_is_reproducible() {
        let a = Tensor::rand_normal(&[100], 0.0, 1.0, &mut Rng::new(7));
        let b = Tensor::rand_normal(&[100], 0.0, 1.0, &mut Rng::new(7));
        assert_eq!(a.to_vec(), b.to_vec());
        let u = Tensor::rand_uniform(&[1000], -2.0, 3.0, &mut Rng::new(1));
        assert!(u.data().iter().all(|&v| (-2.0..3.0).contains(&v)));
    }
}
