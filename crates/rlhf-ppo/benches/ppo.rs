//! PPO iteration throughput at the default config's sizes with random weights: the embedded task's
//! base-model shape (Llama, hidden 192, 4 layers) as policy (with the default shared value head) and
//! reference, a reward model of the same shape, `configs/ppo.toml`'s rollout and update sizes
//! (32 prompts, 48 new tokens, 2 epochs of minibatches of 16). Random weights rarely sample eos, so
//! responses run to the full 48 tokens: a worst case for length.
//!
//! `cargo bench -p rlhf-ppo --bench ppo` writes `$RLHF_BENCH_DIR/ppo.json` (default
//! `<workspace>/target/bench/ppo.json`): samples/s of a full iteration (generation, scoring, update),
//! the share of the iteration spent generating, and the split of the time. The first iteration is a
//! warm-up and not counted; `samples_per_cpu_s` (all iterations over the process's CPU time) is
//! steadier on a busy machine. `RLHF_BENCH_THREADS` sets libtorch's threads (default 2).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rlhf_bench::{cpu_seconds, write_report};
use rlhf_data::{read_records, Metric};
use rlhf_model::config::{LlamaConfig, ModelConfig, TokenIds};
use rlhf_model::{CausalLm, Placement, SequenceClassifier, SpecialTokens, Tokenizer};
use rlhf_ppo::config::RewardModelEntry;
use rlhf_ppo::{PpoConfig, RunOptions};
use rlhf_task::TaskConfig;
use tch::{Device, Kind};

const ITERATIONS: u64 = 3;

/// The base model's shape (configs/base.toml) for the tokenizer's vocabulary.
fn model_config(tokenizer: &Tokenizer) -> ModelConfig {
    let mut arch = LlamaConfig::new(tokenizer.vocab_size() as i64, 192, 512, 4, 4, 4);
    arch.max_position_embeddings = 512;
    arch.tie_word_embeddings = true;
    let mut config = ModelConfig::llama(arch);
    config.eos_token_id = Some(TokenIds::One(tokenizer.eos_id()));
    config.pad_token_id = Some(tokenizer.pad_id());
    config
}

/// Random policy and reward model with a BPE tokenizer (vocabulary as the base model's).
fn models(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let tokenizer = Tokenizer::train_bpe(&rlhf_task::corpus(0, 2000), 1024, &SpecialTokens::default())?;
    let tokenizer_dir = dir.join("tokenizer");
    tokenizer.save(&tokenizer_dir)?;
    tch::manual_seed(0);
    let mut policy = CausalLm::new(model_config(&tokenizer), Device::Cpu, Kind::Float)?;
    policy.set_source_dir(Some(tokenizer_dir.clone()));
    policy.save_pretrained(dir.join("policy"))?;
    let mut reward = SequenceClassifier::new(model_config(&tokenizer), Device::Cpu, Kind::Float)?;
    reward.set_source_dir(Some(tokenizer_dir));
    reward.save_pretrained(dir.join("reward"))?;
    Ok((dir.join("policy"), dir.join("reward")))
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; ignore arguments.
    let threads: usize = std::env::var("RLHF_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let tmp = std::env::temp_dir().join(format!("rlhf-ppo-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let (policy, reward) = models(&tmp)?;

    let mut config = PpoConfig::default();
    config.model.policy = policy.clone();
    config.model.reference = policy;
    config.reward.models = vec![RewardModelEntry { path: reward, weight: 1.0 }];
    let task =
        TaskConfig { corpus_documents: 0, demonstrations: 0, heldout_demonstrations: 0, ..TaskConfig::default() };
    config.data.prompts = rlhf_task::write_task(&task, &tmp.join("data"))?.train_prompts.display().to_string();
    config.ppo.iterations = ITERATIONS;
    config.train.checkpoint_every = 0;
    config.train.threads = threads;
    let options = RunOptions { placement: Placement { device: Device::Cpu, kind: Kind::Float }, progress: false };
    let (started, cpu_started) = (Instant::now(), cpu_seconds());
    rlhf_ppo::stage::run(&config, &tmp.join("run"), &options)?;
    let (wall, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu_started);

    let metrics: Vec<Metric> = read_records(tmp.join("run/ppo/metrics.parquet"))?;
    let measured = |name: &str| -> f64 {
        let values: Vec<f64> = metrics.iter().filter(|m| m.name == name && m.step > 1).map(|m| m.value).collect();
        values.iter().sum::<f64>() / values.len().max(1) as f64
    };
    let samples_per_iteration = (config.ppo.prompts_per_iteration * config.ppo.group_size) as f64;
    let (generation, scoring, training) =
        (measured("time/generation_s"), measured("time/scoring_s"), measured("time/training_s"));
    let report = serde_json::json!({
        "bench": "ppo",
        "workload": {
            "model": "llama hidden 192, 4 layers, 4 heads (policy + value head, reference, reward model), random weights",
            "samples_per_iteration": samples_per_iteration,
            "max_new_tokens": config.generation.max_new_tokens,
            "epochs": config.ppo.epochs,
            "minibatch_size": config.ppo.minibatch_size,
            "iterations_measured": ITERATIONS - 1,
        },
        "samples_per_s": measured("perf/samples_per_s"),
        "tokens_per_s": measured("perf/tokens_per_s"),
        "generation_share": measured("time/generation_share"),
        "seconds_per_iteration": { "generation": generation, "scoring": scoring, "training": training },
        "response_length": measured("response/length"),
        "peak_rss_mb": measured("perf/peak_memory_bytes") / (1024.0 * 1024.0),
        "threads": threads,
        "wall_s": wall,
        "cpu_s": cpu,
        "samples_per_cpu_s": samples_per_iteration * ITERATIONS as f64 / cpu,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    write_report("ppo", &report)?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}
