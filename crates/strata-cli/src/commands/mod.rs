//! One file per subcommand.

pub mod evaluate;
pub mod explain;
pub mod filters;
pub mod plot;
pub mod predict;
pub mod summary;
pub mod train;
