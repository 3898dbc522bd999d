//! Models: a directed acyclic graph of layer applications. A Sequential model
//! is the chain special case; a layer applied at several nodes shares its
//! weights; a whole model can be used as a layer inside another.

mod batch_source;
mod callbacks;
mod fit;
mod fusion;
mod graph_svg;
mod graph_view;
mod history;
mod info;
mod naming;
mod profile;
mod progress;
mod spec;
mod summary;
mod weights_io;

pub use batch_source::{BatchSource, PartBatch, SourceBatch};
pub use callbacks::{
    Callback, EarlyStopping, LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau,
    TrainingControl,
};
pub use fit::{checkpoint_history, epoch_order, FitConfig, Verbosity, HISTORY_KEY};
pub(crate) use fit::{first_non_finite, non_finite_gradient};
pub use history::History;
pub use info::{ModelInfo, Preprocessing, CLASS_NAMES_KEY, PREPROCESSING_KEY};
pub use naming::{snake_case, Namer};
pub use profile::{Field, NodeProfile, Profile};
pub use spec::{layer_from_keras_config, layer_from_spec, model_from_spec, model_from_spec_file};
pub use summary::{LayerSummary, Summary, WeightSummary};
pub use weights_io::{
    parse_safetensors, read_safetensors, write_atomic, write_safetensors_atomic, NamedTensor,
};

use strata_core::{Precision, Rng, Tensor};

use crate::error::{batch_shape, NnError, Result};
use crate::layers::{Ctx, Layer, LayerBase};
use crate::losses::Loss;
use crate::metrics::Metric;
use crate::optimizers::{Optimizer, Param};
use crate::weight::Weight;

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Model({:?}, {} layers, {} params)",
            self.name(),
            self.layers.len(),
            self.count_params()
        )
    }
}

/// Where a node's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The model input with this index.
    Input(usize),
    /// The output of the node with this index.
    Node(usize),
}

/// One application of a layer to some inputs.
#[derive(Debug, Clone)]
pub struct GraphNode {
    pub layer: usize,
    pub inputs: Vec<Source>,
    /// Per-sample output shape (batch axis left out).
    pub output_shape: Vec<usize>,
}

/// What [`Model::run_hooked`] reads or substitutes besides the outputs.
#[derive(Default)]
pub(crate) struct Hooks {
    /// Return this node's value too.
    pub tap: Option<usize>,
    /// Use this value for this node instead of computing it.
    pub replace: Option<(usize, Tensor)>,
}

/// What `compile` sets: the loss, the optimizer and the metrics.
pub struct Compiled {
    pub loss: Loss,
    pub optimizer: Optimizer,
    pub metrics: Vec<Metric>,
}

/// A network of layers.
pub struct Model {
    base: LayerBase,
    pub(crate) inputs: Vec<(String, Vec<usize>)>,
    pub(crate) layers: Vec<Box<dyn Layer>>,
    pub(crate) nodes: Vec<GraphNode>,
    pub(crate) outputs: Vec<Source>,
    pub(crate) sequential: bool,
    namer: Namer,
    pub(crate) rng: Rng,
    pub(crate) compiled: Option<Compiled>,
    /// Whether inference runs Conv2D -> BatchNorm -> [Add] -> [ReLU] chains fused.
    pub(crate) fusion: bool,
    /// The model-wide precision policy its Conv2D and Dense layers follow.
    precision: Precision,
    /// Class names and preprocessing, saved beside the spec.
    info: ModelInfo,
}

impl Model {
    /// An empty Sequential model taking samples of `input_shape` (batch left out).
    /// `seed` drives weight initialisation and dropout.
    pub fn sequential(name: &str, input_shape: &[usize], seed: u64) -> Self {
        let mut m = Model::functional(name, seed);
        m.sequential = true;
        m.inputs
            .push(("input_layer".to_string(), input_shape.to_vec()));
        m.outputs = vec![Source::Input(0)];
        m
    }

    /// An empty functional model; add inputs with [`Model::input`].
    pub fn functional(name: &str, seed: u64) -> Self {
        Model {
            base: LayerBase::new(Some(name)),
            inputs: Vec::new(),
            layers: Vec::new(),
            nodes: Vec::new(),
            outputs: Vec::new(),
            sequential: false,
            namer: Namer::default(),
            rng: Rng::new(seed),
            compiled: None,
            fusion: true,
            precision: Precision::Float32,
            info: ModelInfo::default(),
        }
    }

    /// Class names and preprocessing (saved in the model file).
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Sets the class names and preprocessing saved with the weights.
    pub fn set_info(&mut self, info: ModelInfo) {
        self.info = info;
    }

    /// Declares a named model input of per-sample shape `shape`.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> Result<Source> {
        if shape.contains(&0) {
            return Err(NnError::config(
                name,
                "shape",
                format!("input sizes must be positive, found {shape:?}"),
            ));
        }
        if !self.namer.reserve(name) {
            return Err(NnError::Spec(format!("duplicate name '{name}'")));
        }
        self.inputs.push((name.to_string(), shape.to_vec()));
        Ok(Source::Input(self.inputs.len() - 1))
    }

    /// Appends a layer to a Sequential model, building it on the current output.
    pub fn add(&mut self, layer: impl Layer + 'static) -> Result<Source> {
        self.add_boxed(Box::new(layer))
    }

    pub fn add_boxed(&mut self, layer: Box<dyn Layer>) -> Result<Source> {
        if !self.sequential {
            return Err(NnError::Spec(
                "add() is for Sequential models; use apply() in a functional model".into(),
            ));
        }
        let prev = *self.outputs.first().unwrap_or(&Source::Input(0));
        let out = self.apply_boxed(layer, &[prev])?;
        self.outputs = vec![out];
        Ok(out)
    }

    /// Applies a new layer to earlier outputs (functional API).
    pub fn apply(&mut self, layer: impl Layer + 'static, inputs: &[Source]) -> Result<Source> {
        self.apply_boxed(Box::new(layer), inputs)
    }

    pub fn apply_boxed(&mut self, mut layer: Box<dyn Layer>, inputs: &[Source]) -> Result<Source> {
        if layer.name().is_empty() {
            let n = self.namer.default_name(layer.class_name());
            layer.set_name(&n);
        } else if !self.namer.reserve(layer.name()) {
            return Err(NnError::Spec(format!(
                "duplicate layer name '{}'",
                layer.name()
            )));
        }
        layer.set_model_precision(self.precision);
        self.layers.push(layer);
        let idx = self.layers.len() - 1;
        match self.reuse(idx, inputs) {
            Ok(s) => Ok(s),
            Err(e) => {
                self.layers.pop();
                Err(e)
            }
        }
    }

    /// Applies an existing layer again (weights shared) to other inputs.
    pub fn reuse(&mut self, layer: usize, inputs: &[Source]) -> Result<Source> {
        let shapes = inputs
            .iter()
            .map(|s| self.shape_of(*s))
            .collect::<Result<Vec<_>>>()?;
        let l = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| NnError::Spec(format!("no layer with index {layer}")))?;
        let out = l.build(&shapes, &mut self.rng)?;
        self.nodes.push(GraphNode {
            layer,
            inputs: inputs.to_vec(),
            output_shape: out,
        });
        Ok(Source::Node(self.nodes.len() - 1))
    }

    /// Sets the model outputs (functional API).
    pub fn set_outputs(&mut self, outputs: &[Source]) -> Result<()> {
        for o in outputs {
            self.shape_of(*o)?;
        }
        if outputs.is_empty() {
            return Err(NnError::Spec("a model needs at least one output".into()));
        }
        self.outputs = outputs.to_vec();
        Ok(())
    }

    /// Per-sample shape produced at a source.
    pub fn shape_of(&self, s: Source) -> Result<Vec<usize>> {
        match s {
            Source::Input(i) => self.inputs.get(i).map(|(_, s)| s.clone()),
            Source::Node(i) => self.nodes.get(i).map(|n| n.output_shape.clone()),
        }
        .ok_or_else(|| NnError::Spec(format!("unknown graph source {s:?}")))
    }

    pub fn name(&self) -> &str {
        &self.base.name
    }
    pub fn is_sequential(&self) -> bool {
        self.sequential
    }
    /// The declared inputs: (name, per-sample shape).
    pub fn inputs(&self) -> &[(String, Vec<usize>)] {
        &self.inputs
    }
    /// Per-sample output shapes.
    pub fn output_shapes(&self) -> Vec<Vec<usize>> {
        self.outputs
            .iter()
            .filter_map(|o| self.shape_of(*o).ok())
            .collect()
    }
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }
    pub fn nodes(&self) -> &[GraphNode] {
        &self.nodes
    }
    pub fn layer(&self, name: &str) -> Option<&dyn Layer> {
        self.layers
            .iter()
            .find(|l| l.name() == name)
            .map(|l| l.as_ref())
    }
    pub fn layer_mut(&mut self, name: &str) -> Option<&mut Box<dyn Layer>> {
        self.layers.iter_mut().find(|l| l.name() == name)
    }
    /// Index of a layer by name.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.name() == name)
    }

    /// Freezes or unfreezes one layer (or nested model) by name.
    pub fn set_layer_trainable(&mut self, name: &str, on: bool) -> Result<()> {
        let l = self
            .layer_mut(name)
            .ok_or_else(|| NnError::config(name, "name", "no such layer in the model"))?;
        l.set_trainable(on);
        Ok(())
    }

    /// Every weight with its file name `<layer>.<weight>`, in layer order.
    pub fn named_weights(&self) -> Vec<(String, &Weight)> {
        self.layers
            .iter()
            .flat_map(|l| named_weights_of(l.as_ref()))
            .collect()
    }

    /// The variables the optimizer updates (trainable weights of trainable layers).
    pub fn trainable_params(&self) -> Vec<Param> {
        self.named_weights()
            .into_iter()
            .filter(|(_, w)| w.value.requires_grad())
            .map(|(name, w)| Param {
                name,
                value: w.value.clone(),
            })
            .collect()
    }

    pub fn count_params(&self) -> usize {
        self.layers.iter().map(|l| l.param_count()).sum()
    }
    pub fn count_trainable_params(&self) -> usize {
        self.layers.iter().map(|l| l.trainable_param_count()).sum()
    }

    /// Sets loss, optimizer and metrics for `fit` and `evaluate`.
    pub fn compile(&mut self, loss: Loss, optimizer: Optimizer, metrics: &[Metric]) {
        self.compiled = Some(Compiled {
            loss,
            optimizer,
            metrics: metrics.to_vec(),
        });
    }
    pub fn compiled(&self) -> Option<&Compiled> {
        self.compiled.as_ref()
    }
    pub fn optimizer_mut(&mut self) -> Option<&mut Optimizer> {
        self.compiled.as_mut().map(|c| &mut c.optimizer)
    }

    /// Reseeds the generator used for dropout masks.
    pub fn set_seed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(NnError::Spec(format!(
                "model '{}' takes {} input(s), {} given",
                self.name(),
                self.inputs.len(),
                inputs.len()
            )));
        }
        for ((name, shape), x) in self.inputs.iter().zip(inputs) {
            if x.rank() != shape.len() + 1 || &x.shape()[1..] != shape.as_slice() {
                return Err(NnError::Shape {
                    layer: name.clone(),
                    class: "InputLayer".into(),
                    expected: batch_shape(shape),
                    found: strata_core::fmt_shape(x.shape()),
                });
            }
        }
        Ok(())
    }

    /// Runs the graph. With `logits`, an output layer that ends in a softmax
    /// returns its pre-softmax values instead (for the fused crossentropy).
    pub(crate) fn run(
        &mut self,
        inputs: &[Tensor],
        training: bool,
        logits: bool,
    ) -> Result<Vec<Tensor>> {
        Ok(self
            .run_hooked(inputs, training, logits, &Hooks::default())?
            .0)
    }

    /// [`Model::run`] that also returns the value of node `hooks.tap`, and
    /// takes node `hooks.replace`'s value as given instead of computing it
    /// (how attribution reads and differentiates a layer's output).
    pub(crate) fn run_hooked(
        &mut self,
        inputs: &[Tensor],
        training: bool,
        logits: bool,
        hooks: &Hooks,
    ) -> Result<(Vec<Tensor>, Option<Tensor>)> {
        self.check_inputs(inputs)?;
        // how many times each node's value is still needed, so it can be freed
        let mut uses = vec![0usize; self.nodes.len()];
        for n in &self.nodes {
            for s in &n.inputs {
                if let Source::Node(i) = s {
                    uses[*i] += 1;
                }
            }
        }
        for o in &self.outputs {
            if let Source::Node(i) = o {
                uses[*i] += 1;
            }
        }
        if let Some(t) = hooks.tap.filter(|&t| t < uses.len()) {
            uses[t] += 1;
        }
        let mut tapped = None;
        let mut values: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        let roles = fusion::plan(self, inputs, training);
        let mut ctx = Ctx {
            training,
            rng: &mut self.rng,
        };
        let value = |values: &[Option<Tensor>], s: &Source| match s {
            Source::Input(i) => inputs[*i].clone(),
            Source::Node(i) => values[*i].clone().unwrap_or_else(|| Tensor::zeros(&[0])),
        };
        // a value is dropped as soon as its last consumer has run
        let release = |values: &mut [Option<Tensor>], uses: &mut [usize], s: &Source| {
            if let Source::Node(i) = s {
                uses[*i] -= 1;
                if uses[*i] == 0 {
                    values[*i] = None;
                }
            }
        };
        for (ni, node) in self.nodes.iter().enumerate() {
            if uses[ni] == 0 {
                continue;
            }
            if let Some((r, given)) = &hooks.replace {
                if *r == ni {
                    values[ni] = Some(given.clone());
                    if hooks.tap == Some(ni) {
                        tapped = Some(given.clone());
                    }
                    continue;
                }
            }
            if hooks.tap == Some(ni) && !matches!(roles[ni], fusion::Role::Plain) {
                return Err(NnError::Spec(format!(
                    "node {ni} runs fused: turn fusion off to read its output"
                )));
            }
            match &roles[ni] {
                fusion::Role::Plain => {}
                fusion::Role::Inner => continue,
                role => {
                    let sources = fusion::inputs(role, &self.nodes);
                    let xs: Vec<Tensor> = sources.iter().map(|s| value(&values, s)).collect();
                    for s in &sources {
                        release(&mut values, &mut uses, s);
                    }
                    let y = fusion::run(role, &mut self.layers, &self.nodes, &xs, &mut ctx)?;
                    values[ni] = Some(y);
                    continue;
                }
            }
            let xs: Vec<Tensor> = node.inputs.iter().map(|s| value(&values, s)).collect();
            for s in &node.inputs {
                release(&mut values, &mut uses, s);
            }
            let layer = &mut self.layers[node.layer];
            let is_output = self.outputs.contains(&Source::Node(ni));
            let y = if logits && is_output {
                match layer.forward_logits(&xs, &mut ctx) {
                    Some(r) => r?,
                    None => layer.forward(&xs, &mut ctx)?,
                }
            } else {
                layer.forward(&xs, &mut ctx)?
            };
            if hooks.tap == Some(ni) {
                tapped = Some(y.clone());
            }
            values[ni] = Some(y);
        }
        let outputs = self
            .outputs
            .iter()
            .map(|o| match o {
                Source::Input(i) => Ok(inputs[*i].clone()),
                Source::Node(i) => values[*i]
                    .clone()
                    .ok_or_else(|| NnError::Spec(format!("output node {i} was not computed"))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((outputs, tapped))
    }

    /// The chains a forward call in this mode would fuse (inputs that need no
    /// gradient assumed), each as its layer names joined by " + ", e.g.
    /// `"layer1.0.conv3 + layer1.0.bn3 + layer1.0.add + layer1.0.relu"` in
    /// inference, or `"layer1.0.bn1 + layer1.0.relu1"` while training.
    pub fn fused_chains(&self, training: bool) -> Vec<String> {
        let name = |ni: usize| self.layers[self.nodes[ni].layer].name().to_string();
        let roles = fusion::plan(self, &[], training);
        roles
            .iter()
            .enumerate()
            .filter_map(|(tail, r)| r.chain(tail))
            .map(|nodes| nodes.into_iter().map(name).collect::<Vec<_>>().join(" + "))
            .collect()
    }

    /// Turns fusion on (the default) or off for this model's own graph (a
    /// nested model keeps its own setting). With it on, every Conv2D ->
    /// BatchNormalization -> [Add] -> [ReLU] chain that records no gradient and
    /// whose BatchNorm uses its moving statistics runs as one fused convolution,
    /// bitwise the same outputs only faster; while training, a Conv2D before a
    /// BatchNorm with batch statistics takes those statistics in its epilogue,
    /// the same up to their rounding (see the `fusion` module).
    pub fn set_fusion(&mut self, on: bool) {
        self.fusion = on;
    }

    /// Sets the model-wide precision policy, as Keras's
    /// `set_global_policy("mixed_bfloat16")`: every Conv2D and Dense (nested
    /// models' too, fused chains included) multiplies in it, forward and
    /// backward, unless the layer has its own `dtype`. BatchNormalization,
    /// DepthwiseConv2D, pooling, softmax, the losses and the optimizers stay
    /// float32, and so do the variables and the weights files. Layers added
    /// later take it too. A runtime setting: the spec keeps only the layers'
    /// own `dtype`.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
        for l in &mut self.layers {
            l.set_model_precision(precision);
        }
    }

    /// The model-wide precision policy ([`Model::set_precision`]).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Forward pass on a batch; returns every output.
    pub fn forward(&mut self, inputs: &[Tensor], training: bool) -> Result<Vec<Tensor>> {
        self.run(inputs, training, false)
    }

    /// Whether the first output layer ends in a softmax over its last axis.
    pub fn ends_in_softmax(&self) -> bool {
        let Some(Source::Node(i)) = self.outputs.first() else {
            return false;
        };
        let l = &self.layers[self.nodes[*i].layer];
        if let Some(d) = l.as_any().downcast_ref::<crate::layers::Dense>() {
            return d.activation == crate::activations::Activation::Softmax;
        }
        if let Some(s) = l.as_any().downcast_ref::<crate::layers::Softmax>() {
            return s.axis == -1 || s.axis as usize == self.nodes[*i].output_shape.len();
        }
        if let Some(a) = l.as_any().downcast_ref::<crate::layers::ActivationLayer>() {
            return a.activation == crate::activations::Activation::Softmax;
        }
        false
    }
}

/// `<layer>.<weight>` names of one layer (a nested model lists its own layers).
pub(crate) fn named_weights_of(l: &dyn Layer) -> Vec<(String, &Weight)> {
    if let Some(m) = l.as_any().downcast_ref::<Model>() {
        return m.named_weights();
    }
    l.weights()
        .into_iter()
        .map(|w| (format!("{}.{}", l.name(), w.name), w))
        .collect()
}

/// Rows `idx` of a tensor's first axis, in order.
pub fn gather_rows(t: &Tensor, idx: &[usize]) -> Result<Tensor> {
    let n = t.shape().first().copied().unwrap_or(0);
    let row: usize = t.shape().iter().skip(1).product();
    let d = t.data();
    let mut out = Vec::with_capacity(idx.len() * row);
    for &i in idx {
        if i >= n {
            return Err(NnError::Training(format!(
                "sample index {i} out of range for {n} samples"
            )));
        }
        out.extend_from_slice(&d[i * row..(i + 1) * row]);
    }
    let mut shape = t.shape().to_vec();
    if let Some(first) = shape.first_mut() {
        *first = idx.len();
    }
    Ok(Tensor::from_vec(out, &shape)?)
}

/// A model used as a layer inside a bigger model (a backbone, say).
impl Layer for Model {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        if self.sequential {
            "Sequential"
        } else {
            "Functional"
        }
    }
    fn build(&mut self, inputs: &[Vec<usize>], _rng: &mut Rng) -> Result<Vec<usize>> {
        let want: Vec<&Vec<usize>> = self.inputs.iter().map(|(_, s)| s).collect();
        if inputs.len() != want.len() || inputs.iter().zip(&want).any(|(a, b)| a != *b) {
            return Err(NnError::shape(
                self.name(),
                self.class_name(),
                want.iter()
                    .map(|s| batch_shape(s))
                    .collect::<Vec<_>>()
                    .join(", "),
                inputs.first().map(|v| v.as_slice()).unwrap_or(&[]),
            ));
        }
        if self.outputs.len() != 1 {
            return Err(NnError::config(
                self.name(),
                "outputs",
                "a nested model must have exactly one output",
            ));
        }
        self.shape_of(self.outputs[0])
    }
    fn forward(&mut self, inputs: &[Tensor], ctx: &mut Ctx) -> Result<Tensor> {
        let mut outs = self.run(inputs, ctx.training, false)?;
        outs.pop()
            .ok_or_else(|| NnError::config(self.name(), "outputs", "no output"))
    }
    fn weights(&self) -> Vec<&Weight> {
        self.layers.iter().flat_map(|l| l.weights()).collect()
    }
    fn weights_mut(&mut self) -> Vec<&mut Weight> {
        self.layers
            .iter_mut()
            .flat_map(|l| l.weights_mut())
            .collect()
    }
    fn set_trainable(&mut self, on: bool) {
        self.base.trainable = on;
        for l in &mut self.layers {
            l.set_trainable(on);
        }
    }
    fn trainable_param_count(&self) -> usize {
        self.count_trainable_params()
    }
    fn set_model_precision(&mut self, precision: Precision) {
        self.set_precision(precision);
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activations::Activation;
    use crate::layers::{Blend, Dense, Reshape, Softmax};

    #[test]
    fn sequential_names_shapes_and_counts() {
        let mut m = Model::sequential("m", &[4], 1);
        m.add(Dense::new(8).activation(Activation::Relu)).unwrap();
        m.add(Dense::new(3)).unwrap();
        assert_eq!(m.layers()[1].name(), "dense_1");
        assert_eq!(m.output_shapes(), vec![vec![3]]);
        assert_eq!(m.count_params(), 4 * 8 + 8 + 8 * 3 + 3);
        let y = m.forward(&[Tensor::zeros(&[5, 4])], false).unwrap();
        assert_eq!(y[0].shape(), &[5, 3]);
        let e = m
            .forward(&[Tensor::zeros(&[5, 3])], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected input (None, 4), found (5, 3)"), "{e}");
    }

    #[test]
    fn functional_blend_head_and_shared_layers() {
        let mut m = Model::functional("blend_head", 0);
        let t = m.input("tokens", &[6, 8]).unwrap();
        let a = m.apply(Dense::new(1).named("start_a"), &[t]).unwrap();
        let b = m.apply(Dense::new(1).named("start_b"), &[t]).unwrap();
        let mix = m.apply(Blend::new().named("mix"), &[a, b]).unwrap();
        let flat = m.apply(Reshape::new(&[6]).named("flat"), &[mix]).unwrap();
        let p = m.apply(Softmax::new(-1).named("probs"), &[flat]).unwrap();
        m.set_outputs(&[p]).unwrap();
        assert_eq!(m.count_params(), 9 + 9 + 1);
        assert!(m.ends_in_softmax());
        // reuse start_a on the same input: one weight set, two nodes
        let again = m.reuse(0, &[t]).unwrap();
        assert_eq!(m.shape_of(again).unwrap(), vec![6, 1]);
        assert_eq!(m.count_params(), 19);
        assert!(m.apply(Dense::new(1).named("start_a"), &[t]).is_err());
    }

    #[test]
    fn nested_model_as_a_layer_and_freezing() {
        let mut backbone = Model::sequential("backbone", &[4], 3);
        backbone.add(Dense::new(5)).unwrap();
        let mut m = Model::sequential("full", &[4], 4);
        m.add(backbone).unwrap();
        m.add(Dense::new(2).named("head")).unwrap();
        assert_eq!(m.count_params(), 25 + 12);
        m.set_layer_trainable("backbone", false).unwrap();
        assert_eq!(m.count_trainable_params(), 12);
        let names: Vec<String> = m.trainable_params().into_iter().map(|p| p.name).collect();
        assert_eq!(names, vec!["head.kernel", "head.bias"]);
        let all: Vec<String> = m.named_weights().into_iter().map(|(n, _)| n).collect();
        assert_eq!(all[0], "dense.kernel");
    }
}
