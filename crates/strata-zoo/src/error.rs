//! The zoo's one error type: an unknown or misconfigured model, or an error
//! from strata-nn while building or loading one.

use strata_nn::NnError;

#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// A model name the zoo does not know.
    #[error("unknown model '{name}'; known models: {}", known.join(", "))]
    UnknownModel { name: String, known: Vec<String> },
    /// An option a model cannot take (bad depth, zero classes, ...).
    #[error("model '{model}': invalid {field}: {message}")]
    Config {
        model: String,
        field: String,
        message: String,
    },
    /// Building, running or loading weights failed in strata-nn.
    #[error(transparent)]
    Nn(#[from] NnError),
}

impl ZooError {
    pub(crate) fn config(model: &str, field: &str, message: impl Into<String>) -> Self {
        ZooError::Config {
            model: model.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, ZooError>;
