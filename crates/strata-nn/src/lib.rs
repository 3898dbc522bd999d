//! strata-nn: Keras-style layers, losses, metrics, optimizers and models
//! (Sequential and functional graphs, summary, fit/evaluate/predict, weights files),
//! and attribution (saliency, Grad-CAM, layer outputs).

pub mod activations;
pub mod attribution;
pub mod data_parallel;
pub mod distributed;
pub mod error;
pub mod explain;
mod grad_buckets;
pub mod initializers;
pub mod layers;
pub mod losses;
pub mod metrics;
pub mod model;
pub mod optimizers;
pub mod weight;

pub use activations::Activation;
pub use error::{NnError, Result};
pub use initializers::Initializer;
pub use layers::{Ctx, Layer};
pub use losses::{Loss, Targets};
pub use metrics::Metric;
pub use model::{
    BatchSource, FitConfig, History, Model, ModelInfo, PartBatch, Preprocessing, Source,
    SourceBatch, Verbosity,
};
pub use optimizers::{LearningRateSchedule, Optimizer, Param};
pub use weight::Weight;
