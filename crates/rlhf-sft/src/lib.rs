//! `rlhf-sft`: stage 1 of the RLHF pipeline, supervised fine-tuning on demonstrations with the loss
//! on response tokens only ([`sft::run`]), and the embedded task's base model ([`pretrain::pretrain`]):
//! a BPE tokenizer and a small transformer pretrained on the task's corpus.
//!
//! Both are one training loop ([`trainer::train`]) over [`data::Example`]s; pretraining is SFT with
//! nothing masked. The library takes config structs ([`config`]) and writes a stage directory; the
//! `rlhf-sft` binary parses the command line and chooses device and dtype.
//!
//! Precision: the model trains in the dtype it is built in (`--dtype f32|bf16|f16`; log-probs and
//! the loss are always f32). There is no bf16 autocast: tch 0.24's `autocast` turns on libtorch's
//! CUDA autocast at its default dtype, fp16, with no way to select bf16 and no gradient scaler, so
//! mixed precision through it would be unsafe for training; use `--dtype bf16` on a GPU instead.

pub mod config;
pub mod data;
mod error;
pub mod pretrain;
pub mod sft;
pub mod trainer;

use std::path::PathBuf;

pub use config::{BaseConfig, SftConfig, TrainConfig};
pub use error::{Error, Result};
pub use trainer::{Evaluation, TrainSummary};

/// How to run, as chosen by the caller (not part of the config).
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Device and dtype of the model.
    pub placement: rlhf_model::Placement,
    /// Draw a progress bar (the binary sets it when stderr is a terminal).
    pub progress: bool,
}

/// What a stage run did.
#[derive(Debug)]
pub enum Outcome {
    /// The stage directory already held its final model; nothing was done.
    AlreadyDone(PathBuf),
    /// Trained (from scratch or from a checkpoint) and saved the final model to `dir`.
    Trained { dir: PathBuf, summary: TrainSummary },
}
