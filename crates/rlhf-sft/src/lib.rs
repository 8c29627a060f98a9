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
pub mod pretrain;
pub mod sft;
pub mod trainer;

pub use config::{BaseConfig, SftConfig, TrainConfig};
pub use rlhf_train::{Error, Result, RunOptions};
pub use trainer::{Evaluation, TrainSummary};

/// What a stage run did.
pub type Outcome = rlhf_train::Outcome<TrainSummary>;
