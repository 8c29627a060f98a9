//! `rlhf-train`: the trainer core between the engine (`rlhf-model`) and the stages.
//!
//! - [`stage`]: the stage contract in one place — the stage directory's layout ([`StageDir`]:
//!   `final/`, `checkpoints/`, `metrics.parquet`, `config.toml`, and one meaning of "finished"),
//!   relative paths resolved against the run directory, [`RunOptions`] and [`Outcome`];
//! - [`config`]: the `[train]` and `[lora]` tables and the numerical guard's setting, with one
//!   validation style ([`config::ensure`]);
//! - [`train_state`]: resumable checkpoints (tensors, optimizer, RNG, data position, config hash);
//! - [`batching`]: seeded, resumable micro-batch streams;
//! - [`trainer`]: the gradient-descent loop (micro-batches, accumulation, clipping, schedule,
//!   evaluation cadence, NaN guard, progress bar, metrics, checkpoints, resume); a stage implements
//!   [`TrainStep`] for its own forward, loss and metrics;
//! - [`judges`]: judges named in configuration (`gold`, `sim:panel`, `rm:<dir>`) behind
//!   `rlhf_data::Judge`, a reward model among them ([`judges::RewardJudge`]);
//! - [`cli`]: what every stage binary's command line shares, and the entry point;
//! - [`testing`]: what the stages' kill-and-resume tests share;
//! - [`dist`] (`rlhf-dist`): the processes of a data-parallel run; [`Trainer`] reduces the
//!   gradients and only rank 0 writes ([`is_writer`]).
//!
//! Stages depend on this crate and never on each other.

pub mod batching;
pub mod cli;
pub mod config;
mod error;
pub mod judges;
mod metrics_log;
pub mod stage;
pub mod testing;
pub mod train_state;
pub mod trainer;

/// The collectives of a data-parallel run (re-exported: stages depend on this crate only).
pub use rlhf_dist as dist;

pub use config::{LoraSection, OnNonFinite, TrainConfig};
pub use error::{Error, Result};
pub use metrics_log::{measures_the_machine, MetricsLog};
pub use stage::{is_writer, resolve, saved, Outcome, RunOptions, StageDir, StageLock};
pub use train_state::{TrainRng, TrainState};
pub use trainer::{
    gather, progress_bar, seed_for, trainable_variables, IntervalSums, Phase, StepBatches, StepWork, TrainSpec,
    TrainStep, TrainSummary, Trainer,
};
