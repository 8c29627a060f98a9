//! The configs of the two trainings this crate runs: [`BaseConfig`] (pretraining the embedded task's
//! base model, `configs/base.toml`) and [`SftConfig`] (`configs/sft.toml`). Both share
//! `rlhf_train`'s [`TrainConfig`], the settings of the one language-model training loop
//! ([`crate::trainer`]). Every struct denies unknown fields and has defaults equal to the shipped TOML files.

use std::path::PathBuf;

pub use rlhf_train::{LoraSection, TrainConfig};
use serde::{Deserialize, Serialize};

/// Pretraining of the embedded task's base model (`rlhf-sft pretrain`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaseConfig {
    /// Seeds the weight initialisation and the data order.
    pub seed: u64,
    pub corpus: CorpusConfig,
    pub tokenizer: TokenizerConfig,
    pub model: BaseModelConfig,
    pub train: TrainConfig,
}

/// The task's web-text corpus, as pretraining data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorpusConfig {
    /// Seed of `rlhf_task::corpus`.
    pub seed: u64,
    /// Documents generated; the last `heldout_documents` are kept for evaluation.
    pub documents: usize,
    pub heldout_documents: usize,
    /// Each document, followed by eos, is one training row; longer ones are cut to this many tokens.
    pub max_len: usize,
}

/// The byte-level BPE tokenizer trained on the corpus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    /// Upper bound on the vocabulary, the 256 bytes and the special tokens included.
    pub vocab_size: usize,
}

/// Sizes of the Llama-style base model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaseModelConfig {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub max_position_embeddings: i64,
    /// Share the input embedding with the LM head.
    pub tie_word_embeddings: bool,
}

impl Default for CorpusConfig {
    fn default() -> Self {
        CorpusConfig { seed: 0, documents: 40_000, heldout_documents: 500, max_len: 256 }
    }
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig { vocab_size: 1024 }
    }
}

impl Default for BaseModelConfig {
    fn default() -> Self {
        BaseModelConfig {
            hidden_size: 192,
            intermediate_size: 512,
            num_layers: 4,
            num_heads: 4,
            num_kv_heads: 4,
            max_position_embeddings: 512,
            tie_word_embeddings: true,
        }
    }
}

impl Default for BaseConfig {
    fn default() -> Self {
        BaseConfig {
            seed: 0,
            corpus: CorpusConfig::default(),
            tokenizer: TokenizerConfig::default(),
            model: BaseModelConfig::default(),
            train: TrainConfig {
                max_steps: 600,
                epochs: 1,
                lr: 2e-3,
                warmup_steps: 30,
                eval_every: 0,
                checkpoint_every: 200,
                ..TrainConfig::default()
            },
        }
    }
}

/// Supervised fine-tuning (`rlhf-sft train`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    /// Seeds the data order, LoRA initialisation and dropout.
    pub seed: u64,
    pub model: SftModelConfig,
    pub lora: LoraSection,
    pub data: SftDataConfig,
    pub train: TrainConfig,
}

/// The model to fine-tune.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftModelConfig {
    /// A Hugging Face checkpoint directory (config.json, model.safetensors, tokenizer.json);
    /// relative paths are under the run directory.
    pub base: PathBuf,
    /// Put prompts and responses through the tokenizer's chat template: "auto" (when it has one)
    /// or "none" (the plain text).
    pub chat_template: rlhf_model::ChatMode,
}

/// Where the demonstrations come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftDataConfig {
    /// The demonstrations table (relative to the run directory; `rlhf-task generate` writes the
    /// embedded task's as `data/demonstrations.parquet`).
    pub demonstrations: String,
    /// Held-out demonstrations for the eval loss (`data/demonstrations_heldout.parquet` for the
    /// embedded task), or "" for none.
    pub heldout: String,
    /// Longer `prompt ++ response ++ eos` sequences are cut to this many tokens.
    pub max_seq_len: usize,
}

impl Default for SftModelConfig {
    fn default() -> Self {
        SftModelConfig { base: PathBuf::from("base/final"), chat_template: rlhf_model::ChatMode::Auto }
    }
}

impl Default for SftDataConfig {
    fn default() -> Self {
        SftDataConfig {
            demonstrations: "data/demonstrations.parquet".into(),
            heldout: "data/demonstrations_heldout.parquet".into(),
            max_seq_len: 256,
        }
    }
}
