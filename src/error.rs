//! The one error type of the library.
//!
//! Every fallible path that a user can reach (input files, genotypes, configuration, command-line
//! values) returns [`NasError`] with enough context to fix the problem without reading the code:
//! the file or field, what was expected and what was found.

use std::path::PathBuf;

/// Errors returned by nasrs.
#[derive(Debug, thiserror::Error)]
pub enum NasError {
    /// A file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A data file exists but its content is not what its format requires (wrong magic number,
    /// truncated payload, wrong record size, bad CSV row, ...).
    #[error("{}: {message}", path.display())]
    Format {
        /// The file involved.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },

    /// A dataset could not be found where it was looked for.
    #[error("dataset {dataset} not found: {message}")]
    MissingDataset {
        /// The dataset name (`cifar10`, `mnist`, ...).
        dataset: String,
        /// Where it was looked for and how to provide it.
        message: String,
    },

    /// A genotype (JSON or DARTS text) is malformed or describes an impossible cell.
    #[error("genotype {location}: {message}")]
    Genotype {
        /// Where the problem is: a source name with line and column, or a field path.
        location: String,
        /// What was expected and what was found.
        message: String,
    },

    /// A setting is impossible or inconsistent with another.
    #[error("invalid setting `{field}`: {message}")]
    Config {
        /// The setting (command-line flag or config field) at fault.
        field: String,
        /// What was expected and what was found.
        message: String,
    },

    /// Training diverged or a tensor operation failed.
    #[error("{0}")]
    Numerical(String),
}

impl NasError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NasError::Io {
            path: path.into(),
            source,
        }
    }

    /// A format error in `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        NasError::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A configuration error on `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        NasError::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A genotype error at `location`.
    pub fn genotype(location: impl Into<String>, message: impl Into<String>) -> Self {
        NasError::Genotype {
            location: location.into(),
            message: message.into(),
        }
    }
}

/// Result with [`NasError`].
pub type Result<T> = std::result::Result<T, NasError>;
