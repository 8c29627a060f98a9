//! `rlhf-model`: the engine shared by every RLHF stage.
//!
//! Hugging Face-compatible GPT-2 and Llama-family transformers on libtorch (`tch`), checkpoint
//! directories that load and save in `transformers`, KV-cache generation, log-probs, reward/value
//! heads and LoRA, plus the tokenizer, chat templates and training helpers the trainers share.

pub mod error;

pub use error::{Error, Result};
