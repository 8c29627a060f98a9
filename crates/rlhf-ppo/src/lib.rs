//! `rlhf-ppo`: stage 3 of the RLHF pipeline, reinforcement learning against reward models with a
//! per-token KL penalty to the frozen SFT policy: `maximize E[R(x, y)] − β·KL(π ‖ π_ref)`.
//!
//! PPO with a critic and GAE (Huang et al., "The N Implementation Details of RLHF with PPO";
//! InstructGPT), or the critic-free GRPO and RLOO baselines. [`stage::run`] takes a [`PpoConfig`]
//! (`configs/ppo.toml`) and a run directory and writes `<run>/ppo/`: `config.toml` (resolved),
//! `rollouts.parquet` and `metrics.parquet` (append-only: one part file per iteration),
//! `checkpoints/step-N/` (resume) and `final/` (a Hugging Face checkpoint). The math lives in
//! [`advantage`], [`loss`] and [`kl`]; rewards in [`reward`] (a weighted sum of several, one per
//! objective) and [`constraint`] (a cost kept under a threshold by a Lagrange multiplier, Safe
//! RLHF); sampling and scoring in [`rollout`]; the loop in [`trainer`].

pub mod advantage;
pub mod config;
pub mod constraint;
pub mod kl;
pub mod loss;
pub mod reward;
pub mod rollout;
pub mod stage;
pub mod trainer;

pub use config::PpoConfig;
pub use rlhf_train::{Error, Result, RunOptions};
pub use trainer::TrainSummary;

/// The stage directory inside a run directory.
pub const STAGE_DIR: &str = "ppo";

/// What a stage run did.
pub type Outcome = rlhf_train::Outcome<TrainSummary>;
