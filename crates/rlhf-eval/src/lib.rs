//! `rlhf-eval`: evaluation of the pipeline's models, and sampling responses from a policy
//! ([`generate`]), e.g. SFT samples for labelling into comparisons.
//!
//! [`report`] evaluates every policy of a run directory on held-out prompts and [`render`] writes
//! `<run>/eval/` (report.md, report.html, headline.md, metrics.parquet, PNG [`plots`]; with policies
//! at several KLs, the [`overopt`] analysis); [`score`]
//! backs the `logprobs` and `compare` tools; the judges they name (the report's gold judge,
//! `compare --judge`) come from `rlhf_train::judges`; [`run_diff`] checks that two runs hold the same
//! results (`diff-runs`). The library takes config
//! structs and writes files; the binary only parses the command line.

pub mod config;
pub mod generate;
pub mod overopt;
pub mod plots;
pub mod render;
pub mod report;
pub mod run_diff;
pub mod score;
pub use rlhf_stats as stats;

pub use rlhf_train::{Error, Result};
