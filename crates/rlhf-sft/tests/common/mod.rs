//! Tiny fixtures shared by the integration tests: a base checkpoint pretrained for a few steps by
//! the library itself, small demonstration tables, and a fast SFT config.
#![allow(dead_code, unused_imports)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use rlhf_data::Demonstration;
use rlhf_sft::config::{BaseConfig, BaseModelConfig, CorpusConfig, TokenizerConfig};
use rlhf_sft::{Outcome, SftConfig, TrainConfig};
use rlhf_task::TaskConfig;
use rlhf_train::testing::fast_train;

pub use rlhf_train::testing::cpu;

/// A small task: 200 demonstrations, 40 held out.
pub fn small_task() -> TaskConfig {
    TaskConfig {
        seed: 1,
        heldout_prompts: 30,
        demonstrations: 200,
        heldout_demonstrations: 40,
        corpus_documents: 0,
        chat: false,
    }
}

pub fn small_train(max_steps: u64) -> TrainConfig {
    TrainConfig { max_steps, ..fast_train(TrainConfig::default()) }
}

/// Pretrains a ~50k-parameter Llama for a few steps into `dir`; returns `dir/final`.
pub fn tiny_base(dir: &Path) -> PathBuf {
    let config = BaseConfig {
        seed: 3,
        corpus: CorpusConfig { seed: 2, documents: 400, heldout_documents: 20, max_len: 64 },
        tokenizer: TokenizerConfig { vocab_size: 320 },
        model: BaseModelConfig {
            hidden_size: 32,
            intermediate_size: 64,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 1,
            max_position_embeddings: 256,
            tie_word_embeddings: true,
        },
        train: TrainConfig { lr: 1e-2, batch_size: 16, ..small_train(80) },
    };
    match rlhf_sft::pretrain::pretrain(&config, dir, &cpu()).unwrap() {
        Outcome::Trained { dir, .. } => dir,
        Outcome::AlreadyDone(dir) => dir,
    }
}

/// An SFT config for `base` on the given demonstration files.
pub fn sft_config(base: &Path, demonstrations: &str, heldout: &str, max_steps: u64) -> SftConfig {
    let mut config = SftConfig::default();
    config.model.base = base.to_path_buf();
    config.data.demonstrations = demonstrations.into();
    config.data.heldout = heldout.into();
    config.train = small_train(max_steps);
    config
}

/// Writes demonstrations as JSON Lines `{"prompt": ..., "response": ...}`.
pub fn write_jsonl(path: &Path, demonstrations: &[Demonstration]) {
    let lines: Vec<String> = demonstrations
        .iter()
        .map(|d| serde_json::json!({"prompt": d.prompt, "response": d.response}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Writes the small task's tables into `dir` and returns (demonstrations, held-out) paths.
pub fn small_task_files(dir: &Path) -> (String, String) {
    let files = rlhf_task::write_task(&small_task(), dir).unwrap();
    (files.demonstrations.display().to_string(), files.heldout_demonstrations.display().to_string())
}

/// The small task's demonstrations (train, held-out).
pub fn small_demonstrations() -> (Vec<Demonstration>, Vec<Demonstration>) {
    let data = rlhf_task::generate(&small_task());
    (data.demonstrations, data.heldout_demonstrations)
}
