//! The crate's error type: what went wrong, naming the file, setting or quantity at fault.

use std::path::PathBuf;

/// Errors raised by `rlhf-train` and by the stages built on it (one type: a stage adds no variants of its own).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the engine: model, tokenizer, libtorch.
    #[error(transparent)]
    Model(#[from] rlhf_model::Error),
    /// From the collectives of a data-parallel run (a peer that stopped, a bad launch).
    #[error(transparent)]
    Distributed(#[from] rlhf_dist::Error),
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
    /// A file or directory a stage needs is missing or unusable.
    #[error("{}: {message}", .path.display())]
    File { path: PathBuf, message: String },
    /// A training checkpoint that is incomplete or does not belong to this run or model.
    #[error("{}: {message}", .path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// A setting that cannot be trained with, or an input that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// A judge name that is no judge; `accepted` lists what the setting takes.
    #[error("{setting} = {name:?}: no such judge; accepted: {}", accepted.join(", "))]
    UnknownJudge { setting: &'static str, name: String, accepted: Vec<String> },
    /// A judge that only compares where scores are needed.
    #[error("{setting} = {name:?}: this judge only compares two responses and gives no scores; accepted: {}", accepted.join(", "))]
    NotAScorer { setting: &'static str, name: String, accepted: Vec<String> },
    /// The numerical guard stopped the run (`on_nonfinite = "abort"`, or a state about to be saved).
    #[error(
        "non-finite {quantity} at {at}; stopped without saving it (lower train.lr, or set on_nonfinite = \"skip\")"
    )]
    NonFinite { quantity: String, at: String },
}

impl From<tch::TchError> for Error {
    fn from(err: tch::TchError) -> Self {
        Error::Model(err.into())
    }
}

impl Error {
    /// A [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    /// A [`Error::File`] for `path`.
    pub fn file(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::File { path: path.into(), message: message.to_string() }
    }
    /// A [`Error::Checkpoint`] for `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Checkpoint { path: path.into(), message: message.to_string() }
    }
    /// A [`Error::NonFinite`]: `quantity` went NaN or infinite at `unit` (`"step"`, `"iteration"`) `index`.
    pub fn non_finite(quantity: impl Into<String>, unit: &str, index: u64) -> Self {
        Error::NonFinite { quantity: quantity.into(), at: format!("{unit} {index}") }
    }
}

/// Shorthand for `std::result::Result<T, rlhf_train::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
