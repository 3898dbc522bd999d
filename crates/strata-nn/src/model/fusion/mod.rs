//! Inference fusion: a `Conv2D -> BatchNormalization -> [Add] -> [ReLU]` chain runs
//! as one convolution whose epilogue applies the BatchNorm's affine map, the
//! residual and the ReLU to each chunk of output rows while it is still in cache
//! ([`strata_core::Tensor::conv2d_fused`]), instead of four ops that each sweep a
//! whole activation and allocate another. ResNet's every block is made of such
//! chains.
//!
//! A chain is fused only when the result is bitwise what the separate layers give
//! and nothing is lost: the BatchNorm uses its moving statistics (inference, or
//! frozen), no gradient could flow through any of its members (no graph is
//! recorded, or nothing upstream and no weight in it requires grad), the Conv2D's
//! own activation is linear, the ReLU is a plain `Activation("relu")`, and every
//! intermediate value has exactly one consumer and is not a model output. The
//! chain then runs at its last node's place in the graph, where both the conv's
//! input and the residual are available.
//!
//! While training, a Conv2D (linear, one input) whose only consumer is a
//! BatchNorm with batch statistics takes those statistics in its epilogue,
//! each block of output rows summed while it is in cache
//! (`conv2d_moments`), and the BatchNorm, with a ReLU after it where there is
//! one, uses them (`batch_norm_train_with`) instead of a sweep of its own over
//! the activation. Both ops record their gradients as the separate layers do;
//! the statistics differ from the BatchNorm's own by rounding only (other
//! partial sums), so such a training step matches the unfused one to
//! rounding, not bitwise, and stays bitwise the same from run to run. A
//! BatchNorm with batch statistics followed by a ReLU runs as one op too
//! (`batch_norm_train_relu`): the ReLU's sweep and its buffer go, and the
//! backward takes its mask from the BatchNorm's input. So does an Add of
//! two same-shape inputs followed by a ReLU (`add_relu`), a residual block's
//! end: one sweep writes the output and the ReLU's mask, with no sum between.
//! Where that Add takes a training-mode BatchNorm fed by a Conv2D, the
//! BatchNorm, the Add and the ReLU are one op (`batch_norm_train_add_relu`):
//! the sweep that normalises also adds the residual and applies the ReLU,
//! so the normalised values are neither written out nor read back.
//!
//! [`plan`] gives each node its [`Role`]; the model runs plain nodes itself and
//! hands every chain's last node to [`run`], which reads [`inputs`] and runs
//! the chain's layers as one op.

mod plan;
mod run;

pub(crate) use plan::{plan, Chain, Role};
pub(crate) use run::{inputs, run};
