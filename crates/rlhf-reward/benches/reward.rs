//! Reward-model training throughput at the default size and batch: the embedded task's base model
//! (Llama, hidden 192, 4 layers, 4 heads, vocab 1024, tied embeddings; random weights, f32, CPU)
//! with a score head, micro-batches of 16 comparisons whose responses are 64-token rows
//! (prompt 16 + response 48, random ids), Bradley–Terry loss, full fine-tuning with AdamW and
//! clipping; 14 optimizer steps through the stage's trainer, the first 2 counted as warm-up.
//!
//! `cargo bench -p rlhf-reward --bench reward` writes `$RLHF_BENCH_DIR/reward.json` (default
//! `<workspace>/target/bench/reward.json`): training pairs/s and tokens/s (median step after
//! warm-up), CPU seconds, peak RSS and the thread count (`RLHF_BENCH_THREADS`, default 2).
//! The same workload in plain PyTorch and TRL's `RewardTrainer`: `benches/peers/reward_trl.py`.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rlhf_bench::{cpu_seconds, median, write_report};
use rlhf_data::{read_records, Metric};
use rlhf_model::{LlamaConfig, ModelConfig, SequenceClassifier, TokenIds};
use rlhf_reward::config::{LossConfig, TrainConfig};
use rlhf_reward::data::{Pair, TokenizedPreference};
use rlhf_reward::trainer::{self, HeldOut, TrainJob};
use rlhf_reward::RewardConfig;
use rlhf_train::{MetricsLog, TrainRng};
use tch::{Device, Kind};

const BATCH: usize = 16;
const STEPS: u64 = 14;
const WARMUP_STEPS: u64 = 2;
const PROMPT_LEN: usize = 16;
const RESPONSE_LEN: usize = 48;
const VOCAB: i64 = 1024;
const EOS: i64 = 0;
const PAD: i64 = 1;

/// The default base model (configs/base.toml) as a reward model; shared with the peer script.
fn bench_config() -> ModelConfig {
    let mut l = LlamaConfig::new(VOCAB, 192, 512, 4, 4, 4);
    l.max_position_embeddings = 512;
    l.tie_word_embeddings = true;
    let mut config = ModelConfig::llama(l);
    config.eos_token_id = Some(TokenIds::One(EOS));
    config.pad_token_id = Some(PAD);
    config
}

/// Random comparisons: rows `prompt ++ response ++ [eos]` of 64 tokens, no padding.
fn comparisons(n: usize) -> Vec<TokenizedPreference> {
    let mut rng = TrainRng::seed_from_u64(0);
    let mut tokens = |len: usize| -> Vec<i64> { (0..len).map(|_| rng.random_range(2..VOCAB)).collect() };
    (0..n)
        .map(|_| {
            let prompt = tokens(PROMPT_LEN);
            let rows = (0..2).map(|_| [prompt.clone(), tokens(RESPONSE_LEN - 1), vec![EOS]].concat()).collect();
            TokenizedPreference { rows, pairs: vec![Pair { better: 0, worse: 1, margin: 0.0 }] }
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let threads: usize = std::env::var("RLHF_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let started = Instant::now();
    tch::manual_seed(0);
    let model = SequenceClassifier::new(bench_config(), Device::Cpu, Kind::Float)?;
    let params: i64 = model.var_store().variables().values().map(|t| t.numel() as i64).sum();
    println!(
        "reward bench: {:.2}M parameters, {threads} threads, batch {BATCH} pairs of {} tokens",
        params as f64 / 1e6,
        PROMPT_LEN + RESPONSE_LEN
    );

    let train = comparisons(BATCH * STEPS as usize);
    let config = TrainConfig {
        max_steps: STEPS,
        batch_size: BATCH,
        warmup_steps: 0,
        log_every: 1,
        eval_every: 0,
        checkpoint_every: 0,
        threads,
        ..RewardConfig::default().train
    };
    let tmp = std::env::temp_dir().join(format!("rlhf-reward-bench-{}", std::process::id()));
    let metrics = MetricsLog::open(tmp.join("metrics.parquet"), "reward")?;
    let heldout = HeldOut::new(&[], None);
    let job = TrainJob {
        checkpoints: &tmp.join("checkpoints"),
        config_file: &tmp.join("config.toml"),
        metric_prefix: "",
        train_config: &config,
        loss: &LossConfig::default(),
        seed: 0,
        config_hash: "bench",
        train: &train,
        heldout: &heldout,
        pad_id: PAD,
        progress: false,
    };
    let cpu_before = cpu_seconds();
    trainer::train(&model, &job, metrics)?;
    let cpu = cpu_seconds() - cpu_before;
    let per_step: Vec<f64> = read_records::<Metric>(tmp.join("metrics.parquet"))?
        .iter()
        .filter(|m| m.name == "pairs_per_s" && m.step > WARMUP_STEPS)
        .map(|m| m.value)
        .collect();
    let pairs_per_s = median(per_step);
    let tokens_per_s = pairs_per_s * 2.0 * (PROMPT_LEN + RESPONSE_LEN) as f64;
    let peak_rss_mb = rlhf_model::device::peak_host_memory_bytes().map(|b| b as f64 / (1 << 20) as f64);
    println!("  {pairs_per_s:.1} pairs/s ({tokens_per_s:.0} tokens/s), peak RSS {peak_rss_mb:.0?} MB, {cpu:.1} CPU s");

    let report = serde_json::json!({
        "bench": "reward",
        "engine": "rlhf-reward (tch)",
        "device": "cpu",
        "threads": threads,
        "model": {
            "family": "llama", "parameters": params, "vocab_size": VOCAB, "hidden_size": 192,
            "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
            "num_key_value_heads": 4, "tie_word_embeddings": true, "dtype": "float32",
        },
        "batch_pairs": BATCH,
        "prompt_len": PROMPT_LEN,
        "response_len": RESPONSE_LEN,
        "steps": STEPS,
        "warmup_steps": WARMUP_STEPS,
        "pairs_per_s": pairs_per_s,
        "tokens_per_s": tokens_per_s,
        "cpu_seconds": cpu,
        "peak_rss_mb": peak_rss_mb,
        "wall_time_s": started.elapsed().as_secs_f64(),
    });
    write_report("reward", &report)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
