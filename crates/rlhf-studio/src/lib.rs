//! rlhf-studio: people in the loop. A browser studio where annotators rank a samples table's
//! responses (keys 1–9, ties, skips, rationales, the guidelines on screen), or vote in a blind study
//! between policies (A, B, tie, both bad; sides shuffled), in an order shuffled per annotator, with
//! items shared between annotators (`overlap`) for agreement.
//!
//! [`Studio`] is a studio directory ([`studio`]); [`journal`] keeps every label on disk before it
//! is acknowledged; [`assign`] decides who sees what in which order; [`server`] is the HTTP side
//! (personal links, CSRF, limits, text-only rendering); [`export`] writes the journal as the
//! rankings and comparisons tables `rlhf-reward` and `rlhf-dpo` train on; [`results`] the win
//! rates, Bradley–Terry ratings and agreement statistics (and closes a study); [`runs`] feeds the
//! runs page (every stage's curves, live, and the eval reports); [`engine`] serves a checkpoint to
//! the chat page and the OpenAI-compatible API ([`openai`]), and refills a ranking queue with fresh
//! samples ([`live`]).

pub mod assign;
pub mod engine;
pub mod export;
pub mod items;
pub mod journal;
pub mod live;
pub mod openai;
pub mod results;
pub mod runs;
pub mod server;
pub mod studio;

pub use export::{export, Exported};
pub use results::{results, ResultsOptions};
pub use studio::{Setup, Studio};

use std::path::{Path, PathBuf};

/// Everything that can go wrong, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    #[error("{}: cannot {action}: {source}", path.display())]
    Io { path: PathBuf, action: &'static str, source: std::io::Error },
    #[error(transparent)]
    Data(#[from] rlhf_data::Error),
}

impl Error {
    pub(crate) fn input(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Input { path: path.as_ref().to_path_buf(), message: message.into() }
    }
    pub(crate) fn io(path: impl AsRef<Path>, action: &'static str, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), action, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
