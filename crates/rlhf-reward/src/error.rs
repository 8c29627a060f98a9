//! The crate's error type: what went wrong, naming the file or setting at fault.

use std::path::PathBuf;

/// Errors raised by `rlhf-reward`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the engine: model, checkpoint, tokenizer, libtorch.
    #[error(transparent)]
    Model(#[from] rlhf_model::Error),
    /// From the trainer core: checkpoints, resume, the training loop's guards.
    #[error(transparent)]
    Train(#[from] rlhf_train::Error),
    /// From the data layer: Parquet tables, configs.
    #[error(transparent)]
    Data(#[from] rlhf_data::Error),
    /// A setting or an input that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// A file or directory that is missing, malformed or does not belong to this run.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

impl From<tch::TchError> for Error {
    fn from(err: tch::TchError) -> Self {
        Error::Model(err.into())
    }
}

impl Error {
    pub(crate) fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::File { path: path.into(), message: message.into() }
    }
}

/// Shorthand for `std::result::Result<T, rlhf_reward::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
