//! `rlhf-reward`: stage 2 of the RLHF pipeline, a reward model trained on preferences.
//!
//! The reward model is the policy's transformer (the SFT model by default) with a scalar `score`
//! head, saved as a Hugging Face `*ForSequenceClassification` checkpoint that transformers loads
//! with the same scores. It is trained with the Bradley–Terry loss on comparisons and rankings
//! (a ranking of K responses: one forward pass, the loss averaged over its K·(K−1)/2 pairs), with
//! optional margins and label smoothing ([`loss`]); after training its rewards are normalised to
//! mean 0 and std 1 on SFT samples or the training responses; several seeds make an ensemble.
//! [`stage::run`] runs the stage into `<run-dir>/rm/`; [`RewardModel`] loads the result (one
//! checkpoint or an ensemble) and scores `(prompt, response)` pairs for PPO and evaluation;
//! [`table::score_table`] adds a `reward` column to a Parquet table.

pub mod config;
pub mod data;
pub mod loss;
pub mod model;
pub mod stage;
pub mod table;
pub mod trainer;

pub use config::{Combine, RewardConfig};
pub use model::RewardModel;
pub use rlhf_train::{Error, Result, RunOptions};
pub use trainer::{Evaluation, TrainSummary};

/// What a stage run did.
pub type Outcome = rlhf_train::Outcome<Vec<TrainSummary>>;
