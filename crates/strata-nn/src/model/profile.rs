//! Per-layer cost and receptive field (`summary`, `explain`): multiply-adds,
//! activation memory, and what of the input image each output value sees.
//!
//! Everything is per sample (batch 1) and comes from the graph's shapes alone.
//!
//! - **Multiply-adds** count the products of inputs with a weight matrix or
//!   kernel, the work of weighted layers:
//!   Conv2D `H_out*W_out*C_out*(kh*kw*C_in/groups)`, DepthwiseConv2D
//!   `H_out*W_out*C_in*depth_multiplier*kh*kw`, Dense `(product of the
//!   leading non-batch axes)*in*units`. Everything else is 0: biases,
//!   BatchNormalization's per-channel affine map, Blend's scalar mix, pools,
//!   activations and merges. torchinfo's "Total mult-adds" counts each weight
//!   tensor once per output position, so it adds the biases and
//!   BatchNormalization's gamma and beta (`2*C` per sample) to these; for
//!   torchvision's ResNet-50 that is 54,120 more of 4.09e9 (0.0013%).
//! - **Activation memory** is a layer's output, float32: `4 * (values per
//!   sample)`. The forward total is the sum over every layer's output (the
//!   inputs apart), what a forward pass writes if nothing is freed.
//!   torchinfo's "Forward/backward pass size" is another figure, twice the
//!   outputs of the layers with weights only (x2 for their gradients);
//!   [`Profile::forward_backward_bytes`] reproduces it.
//! - **Receptive field and jump** on each spatial axis (Araujo et al.,
//!   "Computing Receptive Fields of Convolutional Neural Networks", Distill
//!   2019): an image input has field 1 and jump 1; a window of `k` taps with
//!   stride `s` and dilation `d` (Conv2D, DepthwiseConv2D, MaxPooling2D,
//!   AveragePooling2D) gives `rf_out = rf_in + (d*(k-1)) * jump_in` and
//!   `jump_out = jump_in * s`. Padding moves the window, not its size, so it
//!   changes neither (ZeroPadding2D passes through). Element-wise and
//!   per-pixel layers (BatchNormalization, activations, Dropout, a Dense on
//!   an (H, W, C) tensor, which mixes channels only) pass it through.
//!   A merge (Add, Multiply, Concatenate, Blend) takes the largest field and
//!   the largest jump of its inputs, per axis; ResNet's residual Adds meet
//!   branches with equal jumps, where this is exact (where jumps differ, or
//!   a Concatenate joins along a spatial axis, it is a bound, not one
//!   window). GlobalAveragePooling2D,
//!   GlobalMaxPooling2D, Flatten, a Reshape that changes the shape and a
//!   Softmax over a spatial axis make every value depend on the whole input:
//!   [`Field::Global`] (`null` in JSON, `global` in the table). The field
//!   may exceed the image: it counts the taps, padding included. Another
//!   layer keeps the field if it keeps the height and width, else makes it
//!   global; a nested model is followed inside (its cost is its layers'
//!   sum); tensors no image input leads to have [`Field::NotSpatial`].

use crate::layers::{
    ActivationLayer, Add, AveragePooling2D, BatchNormalization, Blend, Concatenate, Conv2D, Dense,
    DepthwiseConv2D, Dropout, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, Layer,
    MaxPooling2D, Multiply, ReLU, Reshape, Softmax, ZeroPadding2D,
};

use super::{Model, Source};

/// Bytes of one float32 value.
const F32_BYTES: u64 = 4;

/// What one value of a tensor sees of the image it was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Not an image: no (H, W, C) model input leads here.
    NotSpatial,
    /// An (H, W, C) tensor: a value sees a `size[0] x size[1]` window of the
    /// input, and neighbouring values' windows start `jump` pixels apart
    /// (the effective stride), per axis (height, width).
    Window { size: [usize; 2], jump: [usize; 2] },
    /// Every value depends on the whole input.
    Global,
}

impl Field {
    /// The field of a model input of per-sample shape `shape`.
    fn of_input(shape: &[usize]) -> Field {
        if shape.len() == 3 {
            Field::Window {
                size: [1, 1],
                jump: [1, 1],
            }
        } else {
            Field::NotSpatial
        }
    }

    /// After a window of `kernel` taps, `strides` and `dilation` per axis.
    fn windowed(
        self,
        kernel: (usize, usize),
        strides: (usize, usize),
        dilation: (usize, usize),
    ) -> Field {
        let Field::Window { size, jump } = self else {
            return self;
        };
        let k = [kernel.0, kernel.1];
        let s = [strides.0, strides.1];
        let d = [dilation.0, dilation.1];
        let axis = |a: usize| {
            let span = d[a].max(1).saturating_mul(k[a].saturating_sub(1));
            (
                size[a].saturating_add(span.saturating_mul(jump[a])),
                jump[a].saturating_mul(s[a].max(1)),
            )
        };
        let (h, w) = (axis(0), axis(1));
        Field::Window {
            size: [h.0, w.0],
            jump: [h.1, w.1],
        }
    }

    /// The whole input, for a tensor traced to an image.
    fn whole(self) -> Field {
        match self {
            Field::NotSpatial => Field::NotSpatial,
            _ => Field::Global,
        }
    }

    /// Where several inputs meet: the largest field and jump per axis;
    /// global if any input is.
    fn merge(fields: &[Field]) -> Field {
        fields
            .iter()
            .fold(Field::NotSpatial, |acc, f| match (acc, *f) {
                (Field::Global, _) | (_, Field::Global) => Field::Global,
                (Field::NotSpatial, f) => f,
                (acc, Field::NotSpatial) => acc,
                (Field::Window { size: a, jump: ja }, Field::Window { size: b, jump: jb }) => {
                    Field::Window {
                        size: [a[0].max(b[0]), a[1].max(b[1])],
                        jump: [ja[0].max(jb[0]), ja[1].max(jb[1])],
                    }
                }
            })
    }

    /// The receptive field per spatial axis `[h, w]`, where it is a window.
    pub fn size(&self) -> Option<[usize; 2]> {
        match self {
            Field::Window { size, .. } => Some(*size),
            _ => None,
        }
    }

    /// The jump (effective stride) per spatial axis `[h, w]`, where the field is a window.
    pub fn jump(&self) -> Option<[usize; 2]> {
        match self {
            Field::Window { jump, .. } => Some(*jump),
            _ => None,
        }
    }

    /// `7x7`, `global`, or `-` (not an image), as the table prints the field.
    pub fn size_text(&self) -> String {
        match self {
            Field::Window { size, .. } => format!("{}x{}", size[0], size[1]),
            Field::Global => "global".into(),
            Field::NotSpatial => "-".into(),
        }
    }

    /// `2x2`, or `-` where the field is not a window.
    pub fn jump_text(&self) -> String {
        match self {
            Field::Window { jump, .. } => format!("{}x{}", jump[0], jump[1]),
            _ => "-".into(),
        }
    }
}

/// The cost and field of one graph node (one application of a layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeProfile {
    /// Multiply-adds per sample (weighted layers only, see the module docs).
    pub macs: u64,
    /// The output's bytes per sample (float32).
    pub activation_bytes: u64,
    /// The part of `activation_bytes` torchinfo counts: outputs of layers with weights.
    pub weighted_output_bytes: u64,
    /// The output's receptive field.
    pub field: Field,
}

/// The cost and receptive field of every node of a model, per sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// One entry per graph node, in [`Model::nodes`] order.
    pub nodes: Vec<NodeProfile>,
    /// The model inputs' bytes per sample (torchinfo's "Input size").
    pub input_bytes: u64,
}

impl Profile {
    /// Multiply-adds of a forward pass per sample (torchinfo: "Total mult-adds").
    pub fn total_macs(&self) -> u64 {
        self.nodes
            .iter()
            .fold(0u64, |a, n| a.saturating_add(n.macs))
    }
    /// Every layer's output per sample, summed: the forward activation memory.
    pub fn activation_bytes(&self) -> u64 {
        self.nodes
            .iter()
            .fold(0u64, |a, n| a.saturating_add(n.activation_bytes))
    }
    /// torchinfo's "Forward/backward pass size": twice the outputs of the
    /// layers with weights (their outputs and the gradients of those).
    pub fn forward_backward_bytes(&self) -> u64 {
        self.nodes
            .iter()
            .fold(0u64, |a, n| a.saturating_add(n.weighted_output_bytes))
            .saturating_mul(2)
    }
}

/// `a * b * ...` without overflow.
fn product(dims: impl IntoIterator<Item = usize>) -> u64 {
    dims.into_iter()
        .fold(1u64, |a, d| a.saturating_mul(d as u64))
}

/// Multiply-adds and output field of `layer` on inputs of these shapes and fields.
fn layer_cost(
    layer: &dyn Layer,
    inputs: &[Vec<usize>],
    fields: &[Field],
    output: &[usize],
) -> (u64, Field) {
    let any = layer.as_any();
    let input = inputs.first().map(Vec::as_slice).unwrap_or(&[]);
    let through = Field::merge(fields);
    let out_hw = product(output.iter().take(2).copied());
    let c_in = input.get(2).copied().unwrap_or(0);
    if let Some(c) = any.downcast_ref::<Conv2D>() {
        let (kh, kw) = c.kernel_size;
        let per_output = product([kh, kw, c_in / c.groups.max(1)]);
        let macs = out_hw
            .saturating_mul(c.filters as u64)
            .saturating_mul(per_output);
        return (
            macs,
            through.windowed(c.kernel_size, c.strides, c.dilation_rate),
        );
    }
    if let Some(d) = any.downcast_ref::<DepthwiseConv2D>() {
        let (kh, kw) = d.kernel_size;
        let macs = out_hw.saturating_mul(product([c_in, d.depth_multiplier, kh, kw]));
        return (
            macs,
            through.windowed(d.kernel_size, d.strides, d.dilation_rate),
        );
    }
    if let Some(p) = any.downcast_ref::<MaxPooling2D>() {
        return (0, through.windowed(p.pool_size, p.strides, (1, 1)));
    }
    if let Some(p) = any.downcast_ref::<AveragePooling2D>() {
        return (0, through.windowed(p.pool_size, p.strides, (1, 1)));
    }
    if let Some(d) = any.downcast_ref::<Dense>() {
        let rows = product(input.iter().take(input.len().saturating_sub(1)).copied());
        let fan_in = input.last().copied().unwrap_or(0);
        let macs = rows.saturating_mul(product([fan_in, d.units]));
        return (macs, through);
    }
    if any.is::<GlobalAveragePooling2D>() || any.is::<GlobalMaxPooling2D>() || any.is::<Flatten>() {
        return (0, through.whole());
    }
    if any.is::<Reshape>() {
        let same = input == output;
        return (0, if same { through } else { through.whole() });
    }
    if let Some(s) = any.downcast_ref::<Softmax>() {
        // Keras numbering: axis 0 is the batch, 1 and 2 the spatial axes of (H, W, C)
        let rank = input.len() as isize + 1;
        let axis = if s.axis < 0 { s.axis + rank } else { s.axis };
        let spatial = input.len() == 3 && (axis == 1 || axis == 2);
        return (0, if spatial { through.whole() } else { through });
    }
    let per_pixel = any.is::<BatchNormalization>()
        || any.is::<ActivationLayer>()
        || any.is::<ReLU>()
        || any.is::<Dropout>()
        || any.is::<ZeroPadding2D>()
        || any.is::<Add>()
        || any.is::<Multiply>()
        || any.is::<Concatenate>()
        || any.is::<Blend>();
    // another layer keeps the field only if it keeps every input's height and width
    let keeps_grid =
        output.len() == 3 && inputs.iter().all(|s| s.len() == 3 && s[..2] == output[..2]);
    (
        0,
        if per_pixel || keeps_grid {
            through
        } else {
            through.whole()
        },
    )
}

impl Model {
    /// Multiply-adds, activation memory and receptive field of every node.
    pub fn profile(&self) -> Profile {
        let fields: Vec<Field> = self
            .inputs
            .iter()
            .map(|(_, s)| Field::of_input(s))
            .collect();
        let nodes = self.profile_nodes(&fields);
        let input_bytes = self.inputs.iter().fold(0u64, |a, (_, s)| {
            a.saturating_add(product(s.iter().copied()).saturating_mul(F32_BYTES))
        });
        Profile { nodes, input_bytes }
    }

    /// The receptive field at a source (an input or a node's output).
    pub fn field_of(&self, profile: &Profile, s: Source) -> Field {
        match s {
            Source::Input(i) => self
                .inputs
                .get(i)
                .map_or(Field::NotSpatial, |(_, shape)| Field::of_input(shape)),
            Source::Node(i) => profile.nodes.get(i).map_or(Field::NotSpatial, |n| n.field),
        }
    }

    /// Every node's profile with the model inputs' fields given (a nested
    /// model starts from the fields of the outer tensors it is applied to).
    fn profile_nodes(&self, input_fields: &[Field]) -> Vec<NodeProfile> {
        let mut out: Vec<NodeProfile> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let fields: Vec<Field> = node
                .inputs
                .iter()
                .map(|s| match s {
                    Source::Input(i) => input_fields.get(*i).copied().unwrap_or(Field::NotSpatial),
                    Source::Node(i) => out.get(*i).map_or(Field::NotSpatial, |n| n.field),
                })
                .collect();
            let Some(layer) = self.layers.get(node.layer) else {
                out.push(NodeProfile {
                    macs: 0,
                    activation_bytes: 0,
                    weighted_output_bytes: 0,
                    field: Field::NotSpatial,
                });
                continue;
            };
            let output = &node.output_shape;
            let own_bytes = product(output.iter().copied()).saturating_mul(F32_BYTES);
            let mut p = if let Some(inner) = layer.as_any().downcast_ref::<Model>() {
                // a nested model: the sums of its own layers, and its output's field
                let nodes = inner.profile_nodes(&fields);
                let sum = |f: fn(&NodeProfile) -> u64| {
                    nodes.iter().fold(0u64, |a, n| a.saturating_add(f(n)))
                };
                let field = match inner.outputs.first() {
                    Some(Source::Node(i)) => nodes.get(*i).map_or(Field::NotSpatial, |n| n.field),
                    Some(Source::Input(i)) => fields.get(*i).copied().unwrap_or(Field::NotSpatial),
                    None => Field::NotSpatial,
                };
                NodeProfile {
                    macs: sum(|n| n.macs),
                    activation_bytes: sum(|n| n.activation_bytes),
                    weighted_output_bytes: sum(|n| n.weighted_output_bytes),
                    field,
                }
            } else {
                let inputs: Vec<Vec<usize>> = node
                    .inputs
                    .iter()
                    .map(|s| self.shape_of(*s).unwrap_or_default())
                    .collect();
                let (macs, field) = layer_cost(layer.as_ref(), &inputs, &fields, output);
                NodeProfile {
                    macs,
                    activation_bytes: own_bytes,
                    weighted_output_bytes: if layer.param_count() > 0 {
                        own_bytes
                    } else {
                        0
                    },
                    field,
                }
            };
            // a window is a place in an (H, W, C) tensor; any other shape sees all of it
            if output.len() != 3 && matches!(p.field, Field::Window { .. }) {
                p.field = Field::Global;
            }
            out.push(p);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::layers::Conv2D;
    use crate::model::model_from_spec;

    /// Each layer's (first node's) profile by layer name.
    fn by_name(m: &Model) -> std::collections::HashMap<String, NodeProfile> {
        let p = m.profile();
        m.nodes()
            .iter()
            .zip(p.nodes)
            .rev()
            .map(|(n, p)| (m.layers()[n.layer].name().to_string(), p))
            .collect()
    }

    fn window(size: [usize; 2], jump: [usize; 2]) -> Field {
        Field::Window { size, jump }
    }

    #[test]
    fn a_chain_with_strides_dilation_and_padding() {
        let m = model_from_spec(
            &json!({"input_shape": [32, 32, 1], "layers": [
            {"type": "Conv2D", "name": "c1", "filters": 2, "kernel_size": 3},
            {"type": "Conv2D", "name": "c2", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
            {"type": "ZeroPadding2D", "name": "zp", "padding": 1},
            {"type": "Conv2D", "name": "c3", "filters": 3, "kernel_size": 3, "dilation_rate": 2},
            {"type": "MaxPooling2D", "name": "mp", "pool_size": 2},
            {"type": "BatchNormalization", "name": "bn"},
            {"type": "Activation", "name": "act", "activation": "relu"},
            {"type": "Flatten", "name": "flat"},
            {"type": "Dense", "name": "fc", "units": 5}]}),
            0,
        )
        .unwrap();
        let p = by_name(&m);
        let f = |n: &str| p[n].field;
        // rf_out = rf_in + d*(k-1)*jump_in, jump_out = jump_in*s, from rf 1, jump 1:
        // c1 3x3 s1:          1 + 2*1 = 3,   jump 1        (32 -> 30)
        // c2 3x3 s2 "same":   3 + 2*1 = 5,   jump 1*2 = 2  (30 -> 15)
        // zp: padding moves windows, not their size: 5, jump 2 (15 -> 17)
        // c3 3x3 dilation 2:  k_eff = 2*(3-1)+1 = 5; 5 + 4*2 = 13, jump 2 (17 -> 13)
        // mp 2x2 s2:          13 + 1*2 = 15, jump 2*2 = 4 (13 -> 6)
        assert_eq!(f("c1"), window([3, 3], [1, 1]));
        assert_eq!(f("c2"), window([5, 5], [2, 2]));
        assert_eq!(f("zp"), window([5, 5], [2, 2]));
        assert_eq!(f("c3"), window([13, 13], [2, 2]));
        assert_eq!(f("mp"), window([15, 15], [4, 4]));
        assert_eq!(f("bn"), f("mp"));
        assert_eq!(f("act"), f("mp"));
        assert_eq!(f("flat"), Field::Global);
        assert_eq!(f("fc"), Field::Global);
        // multiply-adds: H_out*W_out*C_out*(kh*kw*C_in); Dense in*units
        // c1 30*30*2*(9*1) = 16,200; c2 15*15*4*(9*2) = 16,200;
        // c3 13*13*3*(9*4) = 18,252; fc (6*6*3)*5 = 540; the rest 0
        let macs: Vec<u64> = ["c1", "c2", "zp", "c3", "mp", "bn", "act", "flat", "fc"]
            .iter()
            .map(|n| p[*n].macs)
            .collect();
        assert_eq!(macs, [16_200, 16_200, 0, 18_252, 0, 0, 0, 0, 540]);
        assert_eq!(m.profile().total_macs(), 51_192);
        // outputs, float32: c1 30*30*2 = 1800 values, fc 5
        assert_eq!(p["c1"].activation_bytes, 7_200);
        assert_eq!(p["zp"].activation_bytes, 17 * 17 * 4 * 4);
        assert_eq!(p["fc"].activation_bytes, 20);
        // torchinfo's forward/backward size: 2 x outputs of layers with weights
        // (c1, c2, c3, bn, fc): 2*4*(1800 + 900 + 507 + 108 + 5)
        assert_eq!(m.profile().forward_backward_bytes(), 8 * 3_320);
        assert_eq!(m.profile().input_bytes, 32 * 32 * 4);
    }

    #[test]
    fn each_axis_has_its_own_field_and_jump() {
        let m = model_from_spec(
            &json!({"input_shape": [20, 20, 2], "layers": [
            {"type": "Conv2D", "name": "a", "filters": 3, "kernel_size": [1, 5], "strides": [2, 1]},
            {"type": "AveragePooling2D", "name": "b", "pool_size": [3, 1], "strides": [1, 2]},
            {"type": "DepthwiseConv2D", "name": "d", "kernel_size": 3, "dilation_rate": [1, 2],
             "depth_multiplier": 2, "padding": "same"},
            {"type": "GlobalAveragePooling2D", "name": "g", "keepdims": true}]}),
            0,
        )
        .unwrap();
        let p = by_name(&m);
        // a (1, 5) s (2, 1): h 1, jump 2; w 1 + 4 = 5, jump 1   (20x20 -> 10x16)
        // b (3, 1) s (1, 2): h 1 + 2*2 = 5, jump 2; w 5, jump 2  (-> 8x8)
        // d 3x3 dilation (1, 2): h 5 + 2*2 = 9; w k_eff 5: 5 + 4*2 = 13; jumps 2
        assert_eq!(p["a"].field, window([1, 5], [2, 1]));
        assert_eq!(p["b"].field, window([5, 5], [2, 2]));
        assert_eq!(p["d"].field, window([9, 13], [2, 2]));
        // keepdims leaves a 1x1 grid, but each value has seen everything
        assert_eq!(p["g"].field, Field::Global);
        // a: 10*16*3*(1*5*2) = 4,800; d: 8*8*(3 channels * 2)*(3*3) = 3,456
        assert_eq!((p["a"].macs, p["b"].macs, p["d"].macs), (4_800, 0, 3_456));
    }

    #[test]
    fn merges_take_the_largest_field_and_a_nested_model_its_own() {
        // a: 1x1 s2 on 8x8 -> 4x4, field 1, jump 2; b: 5x5 s1 -> 4x4, field 5, jump 1
        let m = model_from_spec(
            &json!({"inputs": {"x": [8, 8, 1], "v": [3]}, "layers": [
            {"name": "a", "type": "Conv2D", "filters": 1, "kernel_size": 1, "strides": 2, "inputs": ["x"]},
            {"name": "b", "type": "Conv2D", "filters": 1, "kernel_size": 5, "inputs": ["x"]},
            {"name": "sum", "type": "Add", "inputs": ["a", "b"]},
            {"name": "cat", "type": "Concatenate", "inputs": ["a", "sum"]},
            {"name": "h", "type": "Dense", "units": 2, "inputs": ["v"]}],
            "outputs": ["cat", "h"]}),
            0,
        )
        .unwrap();
        let p = by_name(&m);
        assert_eq!(p["sum"].field, window([5, 5], [2, 2]));
        assert_eq!(p["cat"].field, window([5, 5], [2, 2]));
        // a Dense on an (H, W, C) tensor mixes channels only; on a vector input
        // there is no image at all
        assert_eq!(p["h"].field, Field::NotSpatial);
        assert_eq!(p["h"].macs, 6);

        let mut inner = Model::sequential("inner", &[8, 8, 2], 0);
        inner
            .add(Conv2D::new(4, (3, 3)).strides(2).named("k"))
            .unwrap();
        let mut outer = Model::functional("outer", 0);
        let x = outer.input("x", &[10, 10, 1]).unwrap();
        let y = outer
            .apply(Conv2D::new(2, (3, 3)).named("first"), &[x])
            .unwrap();
        let z = outer.apply(inner, &[y]).unwrap();
        let first = outer.layer_index("first").unwrap();
        let w = outer.reuse(first, &[x]).unwrap();
        outer.set_outputs(&[z, w]).unwrap();
        let p = outer.profile();
        // first 3x3: 3, jump 1; the nested 3x3 s2: 3 + 2 = 5, jump 2 (8x8 -> 3x3)
        assert_eq!(p.nodes[1].field, window([5, 5], [2, 2]));
        assert_eq!(p.nodes[1].macs, 3 * 3 * 4 * (9 * 2));
        assert_eq!(p.nodes[1].activation_bytes, 3 * 3 * 4 * 4);
        let j = outer.summary_json();
        // the layer applied twice: its cost summed, a field per application
        assert_eq!(j["layers"][0]["macs"], 2 * 8 * 8 * 2 * 9);
        assert_eq!(j["layers"][0]["receptive_field"], json!([[3, 3], [3, 3]]));
        assert_eq!(j["layers"][1]["receptive_field"], json!([5, 5]));
        assert_eq!(j["layers"][1]["jump"], json!([2, 2]));
    }
}
