//! Record types, Parquet contracts and dataset import for rlhf-rs. No libtorch.
//!
//! Stages meet only through files. Each table is one [`Record`] kind ([`Prompt`],
//! [`Demonstration`], [`Comparison`], [`Ranking`], [`Feedback`], [`Rollout`], [`Metric`]) with a versioned
//! Arrow schema, stored as zstd Parquet written atomically ([`write_records`], [`RecordWriter`])
//! and read back with its schema checked ([`read_records`], [`RecordReader`], [`read_table`]).
//! Extra columns survive: readers hand back the original batches, and [`append_column`] adds one.
//!
//! A table is one file, except those a stage appends to while it trains (PPO's `rollouts.parquet`,
//! the training stages' `metrics.parquet`): an [`AppendTable`] is a directory of part files
//! `part-00000.parquet`, `part-00001.parquet`, … (one per flush, each written atomically with the
//! same schema and metadata), the dataset layout pandas (`pd.read_parquet(dir)`), pyarrow
//! (`pq.read_table(dir)`), polars (`pl.read_parquet(dir + "/*.parquet")`) and DuckDB
//! (`read_parquet('dir/*.parquet')`) read as one table. Every reader here reads either form as one
//! table: a directory's parts in order, hidden files (`.`, `_`) skipped (a stage's metrics table,
//! `rlhf_train::MetricsLog`, is one).
//!
//! Prompts may be conversations ([`conversation`]): the tables that hold prompts (version 2) have an
//! optional `prompt_messages` column beside the plain `prompt`, and [`AsPrompt`] hands either to a
//! tokenizer.
//!
//! [`import()`] turns JSON Lines or Parquet in the common Hugging Face layouts into these tables;
//! [`expand_ranking`] turns a ranking of K responses into K·(K−1)/2 comparisons;
//! [`unpair_comparisons`] turns comparisons into unpaired labels (KTO's data);
//! [`inspect`] and [`validate_table`] back the `rlhf-data inspect` and `validate` commands.
//! Every failure is an [`Error`] whose message names the file and the line, row or column.
//!
//! [`Judge`] is the one interface every source of feedback implements (the embedded task's gold rule
//! and simulated annotators in `rlhf-task`, reward models, AI judges, people): it scores responses
//! and/or prefers one of two with a confidence ([`Judgment`]).

mod append_table;
mod arrays;
pub mod atomic;
pub mod cli;
pub mod config;
pub mod conversation;
mod error;
mod feedback;
mod import;
mod inspect;
pub mod journal;
mod judge;
mod layouts;
mod parquet_io;
mod ranking;
mod records;
mod schema;

pub use append_table::AppendTable;
pub use conversation::{AsPrompt, ChatMessage, PromptText};
pub use error::{Error, Location, Result};
pub use feedback::unpair_comparisons;
pub use import::{import, ImportOptions, ImportSummary};
pub use inspect::{inspect, TableSummary};
pub use judge::{judgments_from_scores, Judge, Judgment, Preferred};
pub use layouts::Format;
pub use parquet_io::{
    append_column, concat_tables, read_records, read_table, validate_table, write_records, EncodedRowGroup,
    RecordChunk, RecordReader, RecordWriter, RowGroupEncoder, Table, TableReader, TableWriter, BATCH_ROWS,
};
pub use ranking::{expand_ranking, expand_rankings};
pub use records::{
    Comparison, Demonstration, Feedback, Kind, Metric, Prompt, Ranking, Record, Revision, Rollout, Verdict,
};
pub use schema::{render_schema, schema_tag, type_name, SCHEMA_KEY};
