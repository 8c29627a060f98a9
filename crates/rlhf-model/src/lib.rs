//! `rlhf-model`: the engine shared by every RLHF stage.
//!
//! Hugging Face-compatible GPT-2 and Llama-family transformers on libtorch (`tch`), checkpoint
//! directories that load and save in `transformers`, KV-cache generation, log-probs, reward/value
//! heads and LoRA, plus the tokenizer, chat templates, the optimizer and schedules the trainers share.

pub mod cache;
pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod error;
pub mod generate;
pub mod generation_config;
pub mod gguf;
pub mod gpt2;
pub mod heads;
mod layers;
pub mod llama;
pub mod logprobs;
pub mod lora;
pub mod model;
pub mod optim;
pub mod reward;
pub mod tokenizer;

pub use cache::KvCache;
pub use chat::{ChatMessage, ChatTemplate};
pub use config::{ArchConfig, Gpt2Config, LlamaConfig, ModelConfig, RewardNormalization, TokenIds};
pub use device::{DType, DeviceArgs, DeviceChoice, Placement};
pub use error::{Error, Result};
pub use generate::{
    end_token_ids, generate, generate_from_tokens, generate_streaming, keep_last_tokens, Generation, GenerationConfig,
};
pub use generation_config::GenerationDefaults;
pub use heads::{SequenceClassifier, ValueHead};
pub use layers::{position_ids_from_mask, Linear};
pub use logprobs::{build_batch, sequence_logprobs, LogprobOptions, PaddingSide, SequenceLogprobs, TokenBatch};
pub use lora::{Lora, LoraConfig};
pub use model::{CausalLm, ModelOutput, Transformer};
pub use optim::{AdamW, AdamWConfig, LrSchedule, ScheduleKind};
pub use reward::{Combine, RewardEnsemble, RewardModel};
pub use tokenizer::{ChatMode, PromptResponseIds, SpecialTokens, Tokenizer};
