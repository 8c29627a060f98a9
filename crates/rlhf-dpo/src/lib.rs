//! `rlhf-dpo`: the RLHF stage that skips the reward model and the RL loop — DPO and its family
//! (IPO, conservative DPO, hinge, SimPO, plus an optional RPO term) on comparisons, offline or in
//! online rounds that sample from the policy and have the pairs labelled.
//!
//! [`stage::run`] takes a [`DpoConfig`] (`configs/dpo.toml`) and a run directory and writes
//! `<run>/dpo/`: `config.toml` (resolved), `checkpoints/step-N/` (resume), `metrics.parquet` (the
//! TRL metrics as `rlhf_data::Metric` rows) and `final/` (a Hugging Face checkpoint). Reference
//! log-probs are cached beside each comparisons file ([`reference`]). The losses live in [`loss`],
//! the training loop in [`trainer`], online rounds in [`online`].

pub mod config;
pub mod data;
pub mod loss;
pub mod online;
pub mod reference;
pub mod stage;
pub mod trainer;

pub use config::DpoConfig;
pub use loss::{LossConfig, LossKind};
pub use rlhf_train::{Error, Result, RunOptions};
pub use trainer::{PreferenceStats, TrainSummary};

/// The stage directory inside a run directory.
pub const STAGE_DIR: &str = "dpo";

/// What a stage run did.
pub type Outcome = rlhf_train::Outcome<TrainSummary>;
