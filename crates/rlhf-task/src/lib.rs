//! The embedded default task: a small synthetic world in which RLHF can be seen working on a laptop.
//! No libtorch: it builds on `rlhf-data` for the record types and Parquet I/O, and shares its
//! [`Error`](rlhf_data::Error).
//!
//! - [`corpus`]: "web text" dialogues to pretrain a tiny base model on (fluent, unaligned);
//! - [`generate`]: train and held-out prompts, and demonstrations by a decent but imperfect annotator;
//! - [`judge()`]: the gold judge, a readable rule standing in for human judgement;
//! - [`Objective`]: the gold rule's helpful and harmless parts, and weighted mixes of them;
//! - [`Panel`]: simulated annotators labelling pairs by Bradley–Terry with noise, by an objective;
//! - [`write_task`] and [`label_file`]: the tables on disk, behind `rlhf-task generate` and `label`;
//! - [`GoldJudge`] and [`PanelJudge`]: the gold rule and the annotators behind the shared
//!   [`Judge`](rlhf_data::Judge) interface, found by their tags with [`judge_by_name`].
//!
//! Everything is a pure function of a seed (see [`rng`]), so the data regenerates byte-for-byte.

mod annotators;
mod files;
mod generate;
mod judge;
mod judges;
mod objective;
pub mod rng;
mod world;
mod writer;

pub use annotators::{Annotator, LabelStats, Panel};
pub use files::{label_file, write_task, LabelMode, TaskFiles};
pub use generate::{corpus, generate, TaskConfig, TaskData};
pub use judge::{judge, Verdict};
pub use judges::{judge_by_name, GoldJudge, PanelJudge, JUDGE_NAMES};
pub use objective::Objective;
pub use world::{prompt_for, topic_of, Topic, TOPICS};
pub use writer::{Style, ANNOTATOR, WEB_TEXT};
