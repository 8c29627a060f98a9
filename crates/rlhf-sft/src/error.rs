//! The crate's error type: what went wrong, naming the file or setting at fault.

use std::path::PathBuf;

/// Errors raised by `rlhf-sft`.
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
    /// A setting or an input that cannot be trained on.
    #[error("{0}")]
    Invalid(String),
    /// A training checkpoint that does not belong to this run.
    #[error("{}: {message}", path.display())]
    Resume { path: PathBuf, message: String },
}

/// Shorthand for `std::result::Result<T, rlhf_sft::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
