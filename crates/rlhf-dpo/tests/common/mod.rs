//! Tiny fixtures shared by the integration tests: a ~40k-parameter Llama policy with a BPE tokenizer
//! trained on the embedded task's corpus (random weights: DPO only needs a differentiable policy),
//! comparisons labelled by the task's simulated annotators, and a fast config.
#![allow(dead_code, unused_imports)] // each test binary uses its own subset
#![allow(clippy::field_reassign_with_default)] // test configs: defaults with a few fields set

use std::path::{Path, PathBuf};

use rlhf_data::{write_records, Comparison};
use rlhf_dpo::config::{DpoConfig, TrainConfig};
use rlhf_task::{Objective, Panel, TaskConfig};
use rlhf_train::testing::{fast_train, save_random_policy, task_tokenizer, tiny_llama};

pub use rlhf_train::testing::{cpu, trained};

pub fn small_task() -> TaskConfig {
    TaskConfig {
        seed: 1,
        heldout_prompts: 30,
        demonstrations: 240,
        heldout_demonstrations: 0,
        corpus_documents: 0,
        chat: false,
    }
}

/// A random tiny Llama with a tokenizer trained on the task's corpus, saved to `dir` (seeded).
pub fn tiny_policy(dir: &Path, seed: i64) -> PathBuf {
    let tokenizer = task_tokenizer(2, 300);
    save_random_policy(dir, tiny_llama(&tokenizer, 2, 256), &tokenizer, seed)
}

/// Comparisons on the small task: each demonstration's response against a rude answer to another
/// prompt (an easy preference for a tiny model to pick up), labelled by the simulated annotators.
pub fn comparisons(n: usize) -> Vec<Comparison> {
    let demos = rlhf_task::generate(&small_task()).demonstrations;
    let pairs: Vec<(String, String, String, String)> = demos
        .iter()
        .zip(demos.iter().cycle().skip(1))
        .take(n)
        .enumerate()
        .map(|(i, (d, other))| {
            (format!("pair-{i:04}"), d.prompt.clone(), d.response.clone(), format!(" Whatever.{}", other.response))
        })
        .collect();
    Panel::default().label_pairs(Objective::OVERALL, 7, &pairs).0
}

pub fn write_comparisons(path: &Path, rows: &[Comparison]) -> PathBuf {
    write_records(path, rows).unwrap();
    path.to_path_buf()
}

/// A fast config training `policy` on `comparisons` (absolute paths).
pub fn config(policy: &Path, comparisons: &Path) -> DpoConfig {
    let mut config = DpoConfig::default();
    config.gold_judge = "gold".into();
    config.model.policy = policy.to_path_buf();
    config.data.comparisons = comparisons.to_path_buf();
    config.data.heldout_fraction = 0.2;
    config.data.max_prompt_len = 64;
    config.data.max_response_len = 64;
    let task_dir = policy.parent().expect("a policy directory in a directory").join("task");
    config.online.prompts = rlhf_task::write_task(&small_task(), &task_dir).unwrap().train_prompts;
    config.online.max_new_tokens = 24;
    config.train = TrainConfig { epochs: 2, log_every: 2, ..fast_train(DpoConfig::default().train) };
    config
}
