//! Shared by the integration tests: fixtures, a tiny random policy checkpoint with a trained BPE
//! tokenizer, easy comparisons on the embedded task's prompts, and a fast config.
#![allow(dead_code, unused_imports)] // each test binary uses its own subset
#![allow(clippy::field_reassign_with_default)] // test configs: defaults with a few fields set

use std::path::{Path, PathBuf};

use rlhf_data::Comparison;
use rlhf_model::config::ArchConfig;
use rlhf_reward::config::TrainConfig;
use rlhf_reward::RewardConfig;
use rlhf_task::TaskConfig;
use rlhf_train::testing::{fast_train, save_random_policy, task_tokenizer, tiny_llama};

pub use rlhf_train::testing::cpu;

/// A fixture directory of this crate.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Saves a ~40k-parameter random Llama policy with a BPE tokenizer trained on the task's corpus
/// into `dir`; `vocab_rows` overrides the embedding size (to make a mismatched checkpoint).
pub fn tiny_policy_with(dir: &Path, vocab_rows: Option<i64>) -> PathBuf {
    let tokenizer = task_tokenizer(0, 320);
    let mut config = tiny_llama(&tokenizer, 2, 128);
    if let (Some(rows), ArchConfig::Llama(arch)) = (vocab_rows, &mut config.arch) {
        arch.vocab_size = rows;
    }
    save_random_policy(dir, config, &tokenizer, 5)
}

pub fn tiny_policy(dir: &Path) -> PathBuf {
    tiny_policy_with(dir, None)
}

/// Comparisons on the task's training prompts that a tiny model learns quickly: the chosen
/// response is polite and positive, the rejected one negative (the gold judge agrees).
pub fn easy_comparisons(n: usize) -> Vec<Comparison> {
    let prompts = rlhf_task::generate(&TaskConfig {
        seed: 1,
        heldout_prompts: 10,
        demonstrations: 0,
        heldout_demonstrations: 0,
        corpus_documents: 0,
        chat: false,
    })
    .train_prompts;
    let good = ["lovely", "wonderful", "bright", "gentle", "charming"];
    let bad = ["dull", "ugly", "boring", "awful", "gloomy"];
    (0..n)
        .map(|i| {
            let prompt = &prompts[(i * 7) % prompts.len()].prompt;
            let topic = rlhf_task::topic_of(prompt).expect("a task prompt").name;
            Comparison {
                id: format!("c{i}"),
                prompt: prompt.clone(),
                chosen: format!(" Sure! The {topic} is {}.", good[i % good.len()]),
                rejected: format!(" The {topic} is {}.", bad[(i / 5) % bad.len()]),
                ..Comparison::default()
            }
        })
        .collect()
}

/// A config that trains in seconds: `policy` and `comparisons` as given (absolute paths).
pub fn fast_config(policy: &Path, comparisons: &Path, max_steps: u64) -> RewardConfig {
    let mut config = RewardConfig::default();
    config.gold_judge = "gold".into();
    config.model.policy = policy.to_path_buf();
    config.data.comparisons = comparisons.display().to_string();
    config.data.heldout_fraction = 0.25;
    config.train = TrainConfig { max_steps, ..fast_train(RewardConfig::default().train) };
    config
}
