//! One file per subcommand.

pub mod activations;
pub mod evaluate;
pub mod explain;
pub mod export;
pub mod filters;
pub mod gradcam;
pub mod graph;
pub mod import;
pub mod plot;
pub mod predict;
pub mod saliency;
pub mod summary;
pub mod train;
