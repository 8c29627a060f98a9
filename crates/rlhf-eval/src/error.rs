//! The crate's error type: what went wrong, naming the file or setting at fault.

/// Errors raised by `rlhf-eval`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the engine: model, checkpoint, tokenizer, libtorch.
    #[error(transparent)]
    Model(#[from] rlhf_model::Error),
    /// From the trainer core: checkpoints, resume, the training loop's guards.
    #[error(transparent)]
    Train(#[from] rlhf_train::Error),
    /// From the data layer: Parquet tables, judges.
    #[error(transparent)]
    Data(#[from] rlhf_data::Error),
    /// A judge setting (`gold_judge`, `--judge`) names no judge this tool knows.
    #[error("{setting} = {name:?}: no such judge; accepted: {}", accepted.join(", "))]
    UnknownJudge { setting: &'static str, name: String, accepted: Vec<String> },
    /// A judge setting names a judge that only compares responses, where scores are needed.
    #[error("{setting} = {name:?}: this judge only compares two responses and gives no scores; accepted: {}", accepted.join(", "))]
    NotAScorer { setting: &'static str, name: String, accepted: Vec<String> },
    /// A setting or an input that cannot be used.
    #[error("{0}")]
    Invalid(String),
}

/// Shorthand for `std::result::Result<T, rlhf_eval::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
