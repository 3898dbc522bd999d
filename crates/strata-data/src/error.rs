//! One error type for strata-data: every variant names the file (or the
//! dataset operation) and the field that was wrong.

use std::path::Path;

use strata_core::CoreError;

/// Errors of reading, validating and batching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("{path}: I/O error: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file's content does not follow its format (IDX, .npy, SHA256SUMS).
    #[error("{path}: invalid {field}: {message}")]
    Format {
        path: String,
        field: String,
        message: String,
    },
    /// The decompressed bytes do not hash to the published SHA-256.
    #[error("{path}: SHA-256 mismatch: expected {expected}, found {found}")]
    Checksum {
        path: String,
        expected: String,
        found: String,
    },
    /// Shapes or lengths that do not fit together.
    #[error("{what}: expected {expected}, found {found}")]
    Shape {
        what: String,
        expected: String,
        found: String,
    },
    /// An argument outside what the operation accepts.
    #[error("{what}: invalid {field}: {message}")]
    Argument {
        what: String,
        field: String,
        message: String,
    },
    /// An image file that could not be decoded.
    #[error("{path}: cannot decode image: {message}")]
    Image { path: String, message: String },
    /// An error from a tensor operation.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// The result type of strata-data.
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
    pub(crate) fn format(
        path: impl std::fmt::Display,
        field: impl std::fmt::Display,
        message: impl std::fmt::Display,
    ) -> Self {
        DataError::Format {
            path: path.to_string(),
            field: field.to_string(),
            message: message.to_string(),
        }
    }
    pub(crate) fn shape(
        what: impl std::fmt::Display,
        expected: impl std::fmt::Display,
        found: impl std::fmt::Display,
    ) -> Self {
        DataError::Shape {
            what: what.to_string(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }
    pub(crate) fn arg(
        what: impl std::fmt::Display,
        field: impl std::fmt::Display,
        message: impl std::fmt::Display,
    ) -> Self {
        DataError::Argument {
            what: what.to_string(),
            field: field.to_string(),
            message: message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_and_field() {
        let e = DataError::format("a.npy", "header.shape", "negative dimension");
        assert_eq!(
            e.to_string(),
            "a.npy: invalid header.shape: negative dimension"
        );
        let e = DataError::io(
            "x/y.idx",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert!(e.to_string().starts_with("x/y.idx: I/O error"));
    }
}
