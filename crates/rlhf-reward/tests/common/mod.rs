//! Shared by the integration tests: fixtures, a tiny random policy checkpoint with a trained BPE
//! tokenizer, easy comparisons on the embedded task's prompts, and a fast config.
#![allow(dead_code)] // each test binary uses its own subset
#![allow(clippy::field_reassign_with_default)] // test configs: defaults with a few fields set

use std::path::{Path, PathBuf};

use rlhf_data::Comparison;
use rlhf_model::config::{LlamaConfig, ModelConfig, TokenIds};
use rlhf_model::{CausalLm, DType, DeviceArgs, DeviceChoice, SpecialTokens, Tokenizer};
use rlhf_reward::config::TrainConfig;
use rlhf_reward::{RewardConfig, RunOptions};
use rlhf_task::TaskConfig;

pub fn cpu() -> RunOptions {
    let device = DeviceArgs { device: DeviceChoice::Cpu, dtype: DType::F32 };
    RunOptions { placement: device.resolve().unwrap(), progress: false }
}

/// A fixture directory of this crate.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Saves a ~40k-parameter random Llama policy with a BPE tokenizer trained on the task's corpus
/// into `dir`; `vocab_rows` overrides the embedding size (to make a mismatched checkpoint).
pub fn tiny_policy_with(dir: &Path, vocab_rows: Option<i64>) -> PathBuf {
    let corpus = rlhf_task::corpus(0, 300);
    let tokenizer = Tokenizer::train_bpe(&corpus, 320, &SpecialTokens::default()).unwrap();
    let vocab = vocab_rows.unwrap_or(tokenizer.vocab_size() as i64);
    let mut arch = LlamaConfig::new(vocab, 32, 64, 2, 2, 1);
    arch.max_position_embeddings = 128;
    arch.tie_word_embeddings = true;
    let mut config = ModelConfig::llama(arch);
    config.eos_token_id = Some(TokenIds::One(tokenizer.eos_id()));
    config.pad_token_id = Some(tokenizer.pad_id());
    tch::manual_seed(5);
    let model = CausalLm::new(config, tch::Device::Cpu, tch::Kind::Float).unwrap();
    model.save_pretrained(dir).unwrap();
    tokenizer.save(dir).unwrap();
    dir.to_path_buf()
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
    config.train = TrainConfig {
        max_steps,
        batch_size: 8,
        lr: 3e-3,
        warmup_steps: 2,
        log_every: 1,
        eval_every: 0,
        checkpoint_every: 0,
        threads: 1,
        ..RewardConfig::default().train
    };
    config
}
