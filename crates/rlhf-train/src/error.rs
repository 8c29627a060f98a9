//! The crate's error type: what went wrong, naming the file, setting or quantity at fault.

use std::path::PathBuf;

/// Errors raised by `rlhf-train`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the engine: model, tokenizer, libtorch.
    #[error(transparent)]
    Model(#[from] rlhf_model::Error),
    /// From the data layer: Parquet tables, configs.
    #[error(transparent)]
    Data(#[from] rlhf_data::Error),
    /// Reading or writing a file or directory failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed (or serialized).
    #[error("{}: invalid JSON: {source}", .path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A training checkpoint that is incomplete or does not belong to this run or model.
    #[error("{}: {message}", .path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// A setting that cannot be trained with.
    #[error("{0}")]
    Invalid(String),
    /// The numerical guard stopped the run (`on_nonfinite = "abort"`, or a state about to be saved).
    #[error(
        "non-finite {quantity} at step {step}; stopped without saving it (lower the learning rate, or set on_nonfinite = \"skip\")"
    )]
    NonFinite { quantity: String, step: u64 },
}

impl From<tch::TchError> for Error {
    fn from(err: tch::TchError) -> Self {
        Error::Model(err.into())
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub(crate) fn checkpoint(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Checkpoint { path: path.into(), message: message.to_string() }
    }
}

/// Shorthand for `std::result::Result<T, rlhf_train::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
