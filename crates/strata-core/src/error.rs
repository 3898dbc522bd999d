//! One error type for the core: every variant names the op and what was wrong.

use std::fmt;

/// A shape written the way users read it: `(2, 3, 4)`.
pub fn fmt_shape(shape: &[usize]) -> String {
    match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Errors of tensor operations. Every variant carries the op's name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    /// Operand shapes that do not fit the op.
    #[error("{op}: expected {expected}, found {found}")]
    Shape {
        op: String,
        expected: String,
        found: String,
    },
    /// An argument outside what the op accepts (an axis, a stride, a rate).
    #[error("{op}: invalid {field}: {message}")]
    Argument {
        op: String,
        field: String,
        message: String,
    },
    /// Misuse of automatic differentiation (backward of a non-scalar, ...).
    #[error("autograd: {0}")]
    Autograd(String),
}

impl CoreError {
    pub fn shape(
        op: impl fmt::Display,
        expected: impl fmt::Display,
        found: impl fmt::Display,
    ) -> Self {
        CoreError::Shape {
            op: op.to_string(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }
    pub fn arg(
        op: impl fmt::Display,
        field: impl fmt::Display,
        message: impl fmt::Display,
    ) -> Self {
        CoreError::Argument {
            op: op.to_string(),
            field: field.to_string(),
            message: message.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;
