//! Running a fused chain at its last node: the values it reads, and its
//! layers (Conv2D, BatchNormalization, Add, ReLU) as one op.

use std::any::Any;

use strata_core::kernels::moments::ChannelMoments;
use strata_core::{Epilogue, Tensor};

use super::{Chain, Role};
use crate::error::{NnError, Result};
use crate::layers::{BatchNormalization, Conv2D, Ctx, Layer};
use crate::model::{GraphNode, Source};

/// The values the chain ending at a node with this `role` reads, in the
/// order [`run`] takes them: the chain's input, then the residual where it
/// adds one. Empty for a node that runs no chain.
pub(crate) fn inputs(role: &Role, nodes: &[GraphNode]) -> Vec<Source> {
    let input = |ni: usize| nodes[ni].inputs[0];
    match role {
        Role::Plain | Role::Inner => Vec::new(),
        Role::Tail(chain) => std::iter::once(input(chain.conv))
            .chain(chain.residual)
            .collect(),
        Role::ConvBnTrainTail { conv, .. } => vec![input(*conv)],
        Role::ConvBnAddReluTail { conv, residual, .. } => vec![input(*conv), *residual],
        Role::BnReluTail { bn } => vec![input(*bn)],
        Role::AddReluTail { add } => nodes[*add].inputs.clone(),
    }
}

/// Runs the chain ending at a node with this `role` on `xs` (its
/// [`inputs`]' values), each op recording its gradient where one is needed.
pub(crate) fn run(
    role: &Role,
    layers: &mut [Box<dyn Layer>],
    nodes: &[GraphNode],
    xs: &[Tensor],
    ctx: &mut Ctx,
) -> Result<Tensor> {
    let layer = |ni: usize| nodes[ni].layer;
    match role {
        Role::Plain | Role::Inner => Err(NnError::Training(
            "a node that ends no fused chain was run as one".into(),
        )),
        Role::Tail(chain) => run_inference_chain(layers, nodes, chain, &xs[0], xs.get(1)),
        Role::ConvBnTrainTail { conv, bn, relu } => {
            let (z, moments) = conv_moments(layers[layer(*conv)].as_ref(), &xs[0])?;
            batch_norm(layers, layer(*bn))?.forward_with_moments(&z, &moments, *relu)
        }
        Role::ConvBnAddReluTail { conv, bn, .. } => {
            let (z, moments) = conv_moments(layers[layer(*conv)].as_ref(), &xs[0])?;
            batch_norm(layers, layer(*bn))?.forward_with_moments_add_relu(&z, &moments, &xs[1])
        }
        Role::BnReluTail { bn } => {
            let bn = batch_norm(layers, layer(*bn))?;
            let fused = match xs {
                [x] => bn.forward_relu(x, ctx.training),
                _ => None,
            };
            match fused {
                Some(y) => y,
                None => Ok(bn.forward(xs, ctx)?.relu()),
            }
        }
        Role::AddReluTail { .. } => Ok(xs[0].add_relu(&xs[1])?),
    }
}

/// An inference chain: the Conv2D with the BatchNorm's affine map, the
/// residual and the ReLU in its epilogue.
fn run_inference_chain(
    layers: &[Box<dyn Layer>],
    nodes: &[GraphNode],
    chain: &Chain,
    x: &Tensor,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let layer = |ni: usize| layers[nodes[ni].layer].as_ref();
    let (conv_l, bn_l) = (layer(chain.conv), layer(chain.bn));
    let conv = conv_l.as_any().downcast_ref::<Conv2D>();
    let bn = bn_l.as_any().downcast_ref::<BatchNormalization>();
    let (Some(conv), Some(bn)) = (conv, bn) else {
        return Err(NnError::Training(format!(
            "fused chain {} -> {} is not a Conv2D and a BatchNormalization",
            conv_l.name(),
            bn_l.name()
        )));
    };
    let (scale, shift) = bn
        .inference_affine()
        .ok_or_else(|| NnError::Training(format!("layer '{}' is not built", bn.name())))?;
    let ep = Epilogue {
        scale: Some(&scale),
        shift: Some(&shift),
        residual,
        relu: chain.relu,
    };
    conv.forward_fused(x, &ep)
}

/// The convolution of a training-mode chain on `x`, with its output's
/// per-channel moments for the BatchNorm after it.
fn conv_moments(conv: &dyn Layer, x: &Tensor) -> Result<(Tensor, ChannelMoments)> {
    match conv.as_any().downcast_ref::<Conv2D>() {
        Some(c) => c.forward_moments(x),
        None => Err(not_fusable(conv.name())),
    }
}

/// The BatchNormalization at `layers[i]`, to run its part of a chain.
fn batch_norm(layers: &mut [Box<dyn Layer>], i: usize) -> Result<&mut BatchNormalization> {
    let name = layers[i].name().to_string();
    let any: &mut dyn Any = layers[i].as_mut();
    any.downcast_mut::<BatchNormalization>()
        .ok_or_else(|| not_fusable(&name))
}

/// The error for a fused node whose layer cannot run the part the plan gave it.
fn not_fusable(layer: &str) -> NnError {
    NnError::Training(format!(
        "layer '{layer}' cannot run its part of a fused chain"
    ))
}
