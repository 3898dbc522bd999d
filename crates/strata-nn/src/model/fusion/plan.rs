//! Which nodes run fused: the role of every node for one forward call, by
//! the rules in the module doc.

use strata_core::{is_grad_enabled, Tensor};

use crate::activations::Activation;
use crate::layers::{ActivationLayer, Add, BatchNormalization, Conv2D, Layer};
use crate::model::{Model, Source};

/// One fused chain, by node index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chain {
    pub conv: usize,
    pub bn: usize,
    /// The other input of the Add, if the chain has one.
    pub residual: Option<Source>,
    pub relu: bool,
    /// Every node of the chain, in order (conv, bn, [add], [relu]).
    pub members: Vec<usize>,
}

/// What the executor does with each node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Role {
    /// Runs its layer as usual.
    Plain,
    /// A member of a chain that runs later, at the chain's last node.
    Inner,
    /// The last node of a chain: runs the whole chain.
    Tail(Chain),
    /// A ReLU after a training-mode BatchNorm (node `bn`): runs both as one op
    /// that records its gradient ([`strata_core::Tensor::batch_norm_train_relu`]).
    BnReluTail { bn: usize },
    /// The last node of a training-mode `Conv2D -> BatchNormalization ->
    /// [ReLU]` chain (nodes `conv`, `bn`): the convolution takes the batch
    /// statistics in its epilogue and the BatchNorm (with the ReLU) uses
    /// them, each op recording its gradient.
    ConvBnTrainTail { conv: usize, bn: usize, relu: bool },
    /// The ReLU ending a training-mode `Conv2D -> BatchNormalization -> Add
    /// -> ReLU` chain (nodes `conv`, `bn`, `add`; the Add's other input is
    /// `residual`): the convolution takes the batch statistics in its
    /// epilogue, and one op normalises, adds the residual and applies the
    /// ReLU, recording the gradients of all three.
    ConvBnAddReluTail {
        conv: usize,
        bn: usize,
        add: usize,
        residual: Source,
    },
    /// A ReLU after an Add of two same-shape inputs (node `add`) that no
    /// convolution chain took: both as one op ([`strata_core::Tensor::add_relu`]).
    AddReluTail { add: usize },
}

impl Role {
    /// The nodes of the fused chain that ends at node `tail` with this role,
    /// in order; `None` for a node that runs no chain.
    pub(crate) fn chain(&self, tail: usize) -> Option<Vec<usize>> {
        match self {
            Role::Plain | Role::Inner => None,
            Role::Tail(c) => Some(c.members.clone()),
            Role::BnReluTail { bn } => Some(vec![*bn, tail]),
            Role::ConvBnTrainTail { conv, bn, relu } => Some(match relu {
                true => vec![*conv, *bn, tail],
                false => vec![*conv, *bn],
            }),
            Role::AddReluTail { add } => Some(vec![*add, tail]),
            Role::ConvBnAddReluTail { conv, bn, add, .. } => Some(vec![*conv, *bn, *add, tail]),
        }
    }
}

/// The role of every node for one forward call.
pub(crate) fn plan(model: &Model, inputs: &[Tensor], training: bool) -> Vec<Role> {
    let n = model.nodes.len();
    let mut roles = vec![Role::Plain; n];
    if !model.fusion {
        return roles;
    }
    let need = need_grad(model, inputs);
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (ni, node) in model.nodes.iter().enumerate() {
        for s in &node.inputs {
            if let Source::Node(j) = s {
                consumers[*j].push(ni);
            }
        }
    }
    // the one consumer of node j, if j feeds exactly one node and is not an output
    let only_consumer = |j: usize| -> Option<usize> {
        let out = model.outputs.contains(&Source::Node(j));
        (consumers[j].len() == 1 && !out).then(|| consumers[j][0])
    };
    let layer_of = |ni: usize| model.layers[model.nodes[ni].layer].as_any();
    for conv in 0..n {
        let Some(c) = layer_of(conv).downcast_ref::<Conv2D>() else {
            continue;
        };
        if c.activation != Activation::Linear || model.nodes[conv].inputs.len() != 1 || need[conv] {
            continue;
        }
        let Some(bn) = only_consumer(conv) else {
            continue;
        };
        let Some(b) = layer_of(bn).downcast_ref::<BatchNormalization>() else {
            continue;
        };
        if !b.uses_moving_statistics(training) || need[bn] {
            continue;
        }
        let mut chain = Chain {
            conv,
            bn,
            residual: None,
            relu: false,
            members: Vec::new(),
        };
        let mut tail = bn;
        let mut members = vec![conv, bn];
        if let Some(add) = only_consumer(tail) {
            let ins = &model.nodes[add].inputs;
            let is_add = layer_of(add).downcast_ref::<Add>().is_some();
            let other = ins.iter().find(|s| **s != Source::Node(tail));
            // an Add fed by two chains belongs to the first one (the other ends at its BN)
            if is_add && ins.len() == 2 && !need[add] && roles[add] == Role::Plain {
                if let Some(other) = other {
                    chain.residual = Some(*other);
                    tail = add;
                    members.push(add);
                }
            }
        }
        if let Some(relu) = only_consumer(tail) {
            let is_relu = layer_of(relu)
                .downcast_ref::<ActivationLayer>()
                .is_some_and(|a| a.activation == Activation::Relu);
            if is_relu && !need[relu] && roles[relu] == Role::Plain {
                chain.relu = true;
                tail = relu;
                members.push(relu);
            }
        }
        for &m in &members {
            roles[m] = Role::Inner;
        }
        chain.members = members;
        roles[tail] = Role::Tail(chain);
    }
    // the plain one-input ReLU that alone consumes node j, if no chain took it
    let relu_after = |roles: &[Role], j: usize| -> Option<usize> {
        let relu = only_consumer(j)?;
        let is_relu = layer_of(relu)
            .downcast_ref::<ActivationLayer>()
            .is_some_and(|a| a.activation == Activation::Relu);
        let free = roles[relu] == Role::Plain && model.nodes[relu].inputs.len() == 1;
        (is_relu && free).then_some(relu)
    };
    // the two-input Add that alone consumes node j, then the ReLU that alone
    // consumes the Add, both free: (add, relu, the Add's other input)
    let add_relu_after = |roles: &[Role], j: usize| -> Option<(usize, usize, Source)> {
        let add = only_consumer(j)?;
        let ins = &model.nodes[add].inputs;
        let is_add = layer_of(add).downcast_ref::<Add>().is_some();
        if !is_add || ins.len() != 2 || roles[add] != Role::Plain {
            return None;
        }
        let other = *ins.iter().find(|s| **s != Source::Node(j))?;
        let relu = relu_after(roles, add)?;
        Some((add, relu, other))
    };
    // training-mode Conv2D -> BatchNorm [-> ReLU]: the batch statistics from
    // the convolution's epilogue
    for conv in 0..n {
        let Some(c) = layer_of(conv).downcast_ref::<Conv2D>() else {
            continue;
        };
        let single = model.nodes[conv].inputs.len() == 1;
        if c.activation != Activation::Linear || !single || roles[conv] != Role::Plain {
            continue;
        }
        let Some(bn) = only_consumer(conv) else {
            continue;
        };
        let is_train_bn = layer_of(bn)
            .downcast_ref::<BatchNormalization>()
            .is_some_and(|b| !b.uses_moving_statistics(training));
        if !is_train_bn || roles[bn] != Role::Plain || model.nodes[bn].inputs.len() != 1 {
            continue;
        }
        roles[conv] = Role::Inner;
        // an Add of this and another value of the same node kind, then a ReLU
        if let Some((add, relu, residual)) = add_relu_after(&roles, bn) {
            roles[bn] = Role::Inner;
            roles[add] = Role::Inner;
            roles[relu] = Role::ConvBnAddReluTail {
                conv,
                bn,
                add,
                residual,
            };
            continue;
        }
        match relu_after(&roles, bn) {
            Some(relu) => {
                roles[bn] = Role::Inner;
                roles[relu] = Role::ConvBnTrainTail {
                    conv,
                    bn,
                    relu: true,
                };
            }
            None => {
                roles[bn] = Role::ConvBnTrainTail {
                    conv,
                    bn,
                    relu: false,
                }
            }
        }
    }
    // training-mode BatchNorm -> ReLU: one op, gradient and all
    for bn in 0..n {
        let Some(b) = layer_of(bn).downcast_ref::<BatchNormalization>() else {
            continue;
        };
        if roles[bn] != Role::Plain || b.uses_moving_statistics(training) {
            continue;
        }
        if let Some(relu) = relu_after(&roles, bn) {
            roles[bn] = Role::Inner;
            roles[relu] = Role::BnReluTail { bn };
        }
    }
    // Add -> ReLU (a residual block's end while training): one op
    for add in 0..n {
        let is_add = layer_of(add).downcast_ref::<Add>().is_some();
        if !is_add || roles[add] != Role::Plain || model.nodes[add].inputs.len() != 2 {
            continue;
        }
        if let Some(relu) = relu_after(&roles, add) {
            roles[add] = Role::Inner;
            roles[relu] = Role::AddReluTail { add };
        }
    }
    roles
}

/// Per node: whether its output could require grad (a conservative answer: an
/// input that requires grad, or any weight of its layer that does, taints it).
fn need_grad(model: &Model, inputs: &[Tensor]) -> Vec<bool> {
    let mut need = vec![false; model.nodes.len()];
    if !is_grad_enabled() {
        return need;
    }
    for (ni, node) in model.nodes.iter().enumerate() {
        let from_inputs = node.inputs.iter().any(|s| match s {
            Source::Input(i) => inputs.get(*i).is_some_and(|t| t.requires_grad()),
            Source::Node(j) => need[*j],
        });
        let from_weights = weights_need_grad(model.layers[node.layer].as_ref());
        need[ni] = from_inputs || from_weights;
    }
    need
}

/// Whether any weight of a layer (of every layer, for a nested model) requires grad.
fn weights_need_grad(l: &dyn Layer) -> bool {
    match l.as_any().downcast_ref::<Model>() {
        Some(m) => m.layers.iter().any(|l| weights_need_grad(l.as_ref())),
        None => l.weights().iter().any(|w| w.value.requires_grad()),
    }
}
