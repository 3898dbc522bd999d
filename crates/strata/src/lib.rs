//! strata: convolutional networks you can see into.
//!
//! One import for everything: tensors and autograd ([`core`]), Keras-style
//! layers, models and training ([`nn`]), datasets ([`data`]) and the model zoo
//! ([`zoo`]). The most used names are in [`prelude`].

pub use strata_core as core;
pub use strata_data as data;
pub use strata_nn as nn;
pub use strata_zoo as zoo;

pub mod demos;
pub mod parity;

/// The names most programs need.
pub mod prelude {
    pub use strata_core::ops::{Conv2dConfig, Padding};
    pub use strata_core::{no_grad, Rng, Tensor};
    pub use strata_nn::layers::*;
    pub use strata_nn::{
        Activation, FitConfig, Initializer, Layer, Loss, Metric, Model, Optimizer, Targets,
        Verbosity,
    };
}
