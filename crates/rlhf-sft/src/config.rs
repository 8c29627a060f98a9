//! The configs of the two trainings this crate runs: [`BaseConfig`] (pretraining the embedded task's
//! base model, `configs/base.toml`) and [`SftConfig`] (`configs/sft.toml`). Both share
//! [`TrainConfig`], the settings of the one language-model training loop ([`crate::trainer`]).
//! Every struct denies unknown fields and has defaults equal to the shipped TOML files.

use std::path::PathBuf;

use rlhf_data::task::TaskConfig;
use rlhf_model::{AdamWConfig, LoraConfig, ScheduleKind};
use serde::{Deserialize, Serialize};

/// Optimisation and bookkeeping of one training run. Fields missing from a `[train]` table take
/// these defaults (SFT's); pretraining's differ in a few (see [`BaseConfig::default`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps; 0 = as many as `epochs` passes over the training data take.
    pub max_steps: u64,
    /// Passes over the training examples (used when `max_steps` is 0).
    pub epochs: u64,
    /// Examples per micro-batch (batches are bucketed by length to limit padding).
    pub batch_size: usize,
    /// Micro-batches per optimizer step; the loss is the mean over all their target tokens.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// Learning-rate curve after warmup: "cosine" or "constant".
    pub schedule: ScheduleKind,
    /// Final learning rate of the cosine, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Clip gradients to this global L2 norm (0 = no clipping; the norm is still logged).
    pub max_grad_norm: f64,
    /// AdamW moments, epsilon and decoupled weight decay.
    pub adamw: AdamWConfig,
    /// Log and record metrics every this many steps.
    pub log_every: u64,
    /// Held-out loss/perplexity every this many steps (0 = only before the first and after the last step).
    pub eval_every: u64,
    /// Examples per evaluation batch.
    pub eval_batch_size: usize,
    /// Save a resumable checkpoint every this many steps (0 = never).
    pub checkpoint_every: u64,
    /// Newest checkpoints kept on disk.
    pub keep_checkpoints: usize,
    /// libtorch intra-op threads (0 = libtorch's choice). A fixed count keeps CPU runs bit-reproducible.
    pub threads: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            max_steps: 0,
            epochs: 2,
            batch_size: 16,
            grad_accum: 1,
            lr: 5e-4,
            warmup_steps: 20,
            schedule: ScheduleKind::Cosine,
            min_lr_ratio: 0.1,
            max_grad_norm: 1.0,
            adamw: AdamWConfig { weight_decay: 0.0, ..AdamWConfig::default() },
            log_every: 10,
            eval_every: 100,
            eval_batch_size: 32,
            checkpoint_every: 100,
            keep_checkpoints: 2,
            threads: 2,
        }
    }
}

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
    /// Seed of `rlhf_data::task::corpus`.
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
    /// Sizes of the embedded task, used where `data` says "task".
    pub task: TaskConfig,
    pub train: TrainConfig,
}

/// The model to fine-tune.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftModelConfig {
    /// A Hugging Face checkpoint directory (config.json, model.safetensors, tokenizer.json).
    pub base: PathBuf,
}

/// LoRA instead of full fine-tuning; the adapters are merged into the saved model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSection {
    pub enabled: bool,
    pub r: i64,
    pub alpha: f64,
    pub dropout: f64,
    /// Module names (`q_proj`, `c_attn`, ...); those absent from the model are ignored.
    pub target_modules: Vec<String>,
}

impl Default for LoraSection {
    fn default() -> Self {
        LoraSection {
            enabled: false,
            r: 8,
            alpha: 16.0,
            dropout: 0.0,
            target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "c_attn"].map(String::from).to_vec(),
        }
    }
}

impl LoraSection {
    /// The adapter config, when enabled.
    pub fn to_lora(&self) -> Option<LoraConfig> {
        self.enabled.then(|| LoraConfig {
            r: self.r,
            alpha: self.alpha,
            dropout: self.dropout,
            target_modules: self.target_modules.clone(),
        })
    }
}

/// Where the demonstrations come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftDataConfig {
    /// A demonstrations Parquet file, or "task": the embedded task's, written to
    /// `<run-dir>/data/demonstrations.parquet` when missing.
    pub demonstrations: String,
    /// Held-out demonstrations for the eval loss: a Parquet file, "task"
    /// (`<run-dir>/data/heldout_demonstrations.parquet`) or "" for none.
    pub heldout: String,
    /// Longer `prompt ++ response ++ eos` sequences are cut to this many tokens.
    pub max_seq_len: usize,
}

/// The value of [`SftDataConfig`] fields that selects the embedded task.
pub const TASK: &str = "task";

impl Default for SftModelConfig {
    fn default() -> Self {
        SftModelConfig { base: PathBuf::from("runs/default/base/final") }
    }
}

impl Default for SftDataConfig {
    fn default() -> Self {
        SftDataConfig { demonstrations: TASK.into(), heldout: TASK.into(), max_seq_len: 256 }
    }
}
