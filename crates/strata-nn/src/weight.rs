//! A named weight of a layer (Keras names: kernel, bias, gamma, moving_mean, ...).

use strata_core::Tensor;

/// One variable of a layer. `trainable` is false for statistics such as
/// `moving_mean`, which the optimizer never touches; freezing a layer clears
/// `requires_grad` on its trainable weights too.
#[derive(Clone, Debug)]
pub struct Weight {
    pub name: &'static str,
    pub value: Tensor,
    pub trainable: bool,
}

impl Weight {
    pub fn new(name: &'static str, value: Tensor, trainable: bool) -> Self {
        value.set_requires_grad(trainable);
        Weight {
            name,
            value,
            trainable,
        }
    }
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
    pub fn numel(&self) -> usize {
        self.value.numel()
    }
}
