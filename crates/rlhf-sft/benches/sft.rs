//! SFT training throughput: the training loop ([`rlhf_sft::trainer::train`]) on the default base
//! model size and SFT batch, with random weights and synthetic demonstrations of fixed length
//! (random prompt and response tokens), on the CPU with the config's thread count.
//!
//! `cargo bench -p rlhf-sft --bench sft` writes the figures as JSON to `$RLHF_BENCH_DIR/sft.json`
//! (default `<workspace>/target/bench/sft.json`). `RLHF_BENCH_STEPS` changes the measured steps.
//! `benches/peers/sft_trl.py` runs the same shapes through PyTorch and TRL.

use std::time::Instant;

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use rlhf_bench::{cpu_seconds, write_report};
use rlhf_data::Metric;
use rlhf_model::device::{peak_host_memory_bytes, seed_everything};
use rlhf_model::CausalLm;
use rlhf_sft::config::BaseModelConfig;
use rlhf_sft::data::Example;
use rlhf_sft::trainer::{self, TrainJob};
use rlhf_sft::{SftConfig, TrainConfig};
use rlhf_train::{StageDir, TrainRng};

const VOCAB: i64 = 1024;
const PROMPT_TOKENS: usize = 32;
const RESPONSE_TOKENS: usize = 64;
const WARMUP_STEPS: u64 = 3;

fn main() -> Result<()> {
    let steps: u64 = match std::env::var("RLHF_BENCH_STEPS") {
        Ok(steps) => steps.parse().context("RLHF_BENCH_STEPS")?,
        Err(_) => 30,
    };
    let sft = SftConfig::default();
    let config = TrainConfig {
        max_steps: WARMUP_STEPS + steps,
        log_every: 1,
        eval_every: 0,
        checkpoint_every: 0,
        ..sft.train.clone()
    };
    let mut rng = TrainRng::seed_from_u64(0);
    let mut tokens = |n: usize| (0..n).map(|_| rng.random_range(1..VOCAB)).collect::<Vec<i64>>();
    let examples: Vec<Example> = (0..config.batch_size * 64)
        .map(|_| Example { prompt: tokens(PROMPT_TOKENS), target: tokens(RESPONSE_TOKENS), prompt_targets: Vec::new() })
        .collect();

    seed_everything(0);
    let sizes = BaseModelConfig::default();
    let model =
        CausalLm::new(rlhf_sft::pretrain::model_config(&sizes, VOCAB, 0, 1), tch::Device::Cpu, tch::Kind::Float)?;
    let params: usize = model.trainable_variables().iter().map(|(_, t)| t.numel()).sum();
    let work = tempfile::tempdir()?;
    let dir = StageDir { root: work.path().to_path_buf() };
    let job = TrainJob {
        stage: "bench",
        dir: &dir,
        config: &config,
        seed: 0,
        config_hash: String::new(),
        train: &examples,
        eval: &[],
        pad_id: 1,
        progress: false,
    };
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    trainer::train(&model, &job)?;
    let (seconds, cpu_seconds) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu_start);

    // Per-step throughput after the warmup steps, from the loop's own metrics.
    let metrics: Vec<Metric> = rlhf_data::read_records(dir.metrics())?;
    let measured: Vec<f64> =
        metrics.iter().filter(|m| m.name == "tokens_per_s" && m.step > WARMUP_STEPS).map(|m| m.value).collect();
    let step_tokens = (config.batch_size * (PROMPT_TOKENS + RESPONSE_TOKENS)) as f64;
    let mean_step_s = measured.iter().map(|t| step_tokens / t).sum::<f64>() / measured.len() as f64;
    let report = serde_json::json!({
        "bench": "sft training steps (random weights, synthetic demonstrations)",
        "model": {"arch": "llama", "params": params, "vocab_size": VOCAB, "hidden_size": sizes.hidden_size,
                  "intermediate_size": sizes.intermediate_size, "num_layers": sizes.num_layers, "num_heads": sizes.num_heads},
        "batch_size": config.batch_size,
        "prompt_tokens": PROMPT_TOKENS,
        "response_tokens": RESPONSE_TOKENS,
        "threads": config.threads,
        "steps": steps,
        "step_ms": mean_step_s * 1e3,
        "tokens_per_s": step_tokens / mean_step_s,
        "response_tokens_per_s": (config.batch_size * RESPONSE_TOKENS) as f64 / mean_step_s,
        "wall_seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "tokens_per_cpu_s": config.max_steps as f64 * step_tokens / cpu_seconds.max(1e-9),
        "peak_rss_bytes": peak_host_memory_bytes(),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    println!("{report:#}");
    write_report("sft", &report)?;
    Ok(())
}
