//! `rlhf-judge`: AI feedback. A [`Constitution`] (principles, each with a critique request, a
//! revision request and a comparison question) and [`AiJudge`], the shared
//! [`Judge`](rlhf_data::Judge) interface over a language model asked the comparison question: a
//! local checkpoint ([`LocalModel`]) or any OpenAI-compatible chat server ([`OpenAiModel`]: vLLM,
//! SGLang, llama.cpp, Ollama, `rlhf-studio serve`).
//!
//! As in Lee et al. (2023, "RLAIF"), the preference is read from the probabilities of the answer
//! tokens `A` and `B`, and each pair is asked in both orders and the two averaged, which cancels
//! the judge's position bias; the averaged probability is the label's confidence. Every answer is
//! cached on disk ([`cache`]) by (model, principle, prompt, first, second), so a rerun costs nothing.
//!
//! [`Reviser`] is Constitutional AI's supervised phase: answer, then critique and revise by the
//! constitution's requests, N rounds ([`revise`]).

pub mod ai;
pub mod cache;
pub mod constitution;
pub mod local;
pub mod openai;
pub mod revise;
pub mod spec;

pub use ai::{comparisons, AiJudge, AiVerdict, Letters};
pub use constitution::{Constitution, Principle};
pub use local::LocalModel;
pub use openai::{OpenAiModel, OpenAiSettings};
pub use revise::{ReviseSettings, Revised, Reviser};
pub use spec::JudgeSpec;

use std::path::PathBuf;

/// Everything that can go wrong, each naming the file or the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    #[error("{url}: {message}")]
    Server { url: String, message: String },
    #[error(transparent)]
    Data(#[from] rlhf_data::Error),
    #[error(transparent)]
    Model(#[from] rlhf_model::Error),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
