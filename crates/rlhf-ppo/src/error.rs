//! The crate's error type: what went wrong, naming the file, setting or quantity at fault.

use std::path::PathBuf;

/// Errors raised by `rlhf-ppo`.
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
    /// A file or directory that is missing or unusable.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// A training checkpoint that does not belong to this run.
    #[error("{}: {message}", path.display())]
    Resume { path: PathBuf, message: String },
    /// The numerical guard stopped the run (`on_nonfinite = "abort"`, or a state about to be saved).
    #[error("non-finite {quantity} at iteration {iteration}; stopped without saving it (lower train.lr, or set on_nonfinite = \"skip\")")]
    NonFinite { quantity: String, iteration: u64 },
}

impl From<tch::TchError> for Error {
    fn from(err: tch::TchError) -> Self {
        Error::Model(err.into())
    }
}

/// Shorthand for `std::result::Result<T, rlhf_ppo::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
