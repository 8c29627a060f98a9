//! `rlhf-model`: the engine shared by every RLHF stage.
//!
//! Hugging Face-compatible GPT-2 and Llama-family transformers on libtorch (`tch`), checkpoint
//! directories that load and save in `transformers`, KV-cache generation, log-probs, reward/value
//! heads and LoRA, plus the tokenizer, chat templates and training helpers the trainers share.

pub mod chat;
pub mod device;
pub mod error;
pub mod optim;
pub mod tokenizer;
pub mod train_state;

pub use chat::{ChatMessage, ChatTemplate};
pub use device::{DType, DeviceArgs, DeviceChoice, Placement};
pub use error::{Error, Result};
pub use optim::{AdamW, AdamWConfig, LrSchedule, ScheduleKind};
pub use tokenizer::{PromptResponseIds, SpecialTokens, Tokenizer};
pub use train_state::{TrainRng, TrainState};
