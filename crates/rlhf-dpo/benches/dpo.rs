//! DPO training throughput: the ~10M-parameter Llama of the generate bench (random weights, f32,
//! CPU), micro-batches of 8 pairs (prompt 64 tokens, chosen and rejected 64 tokens each, random ids),
//! sigmoid loss, full fine-tuning with AdamW and clipping, reference log-probs precomputed in one
//! no-grad pass (the cached mode); 12 optimizer steps through the stage's [`Trainer`], the first 2
//! counted as warm-up.
//!
//! `cargo bench -p rlhf-dpo --bench dpo` writes `$RLHF_BENCH_DIR/dpo.json` (default
//! `<workspace>/target/bench/dpo.json`): training pairs/s and tokens/s (median step after warm-up),
//! reference-pass pairs/s, CPU seconds, peak RSS and the thread count (`RLHF_BENCH_THREADS`, default 2).
//! The same workload in plain PyTorch and TRL's `DPOTrainer`: `benches/peers/dpo_trl.py`.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rlhf_bench::{cpu_seconds, median, peak_rss_bytes, write_report};
use rlhf_data::Metric;
use rlhf_dpo::config::{DpoConfig, TrainConfig};
use rlhf_dpo::data::Pair;
use rlhf_dpo::reference::Reference;
use rlhf_dpo::trainer::{TrainJob, Trainer};
use rlhf_dpo::LossConfig;
use rlhf_model::{CausalLm, ModelConfig};
use rlhf_train::{StageDir, TrainRng};
use tch::{Device, Kind};

const PAIRS: usize = 96;
const BATCH: usize = 8;
const STEPS: u64 = 12;
const WARMUP_STEPS: u64 = 2;
const PROMPT_LEN: usize = 64;
const RESPONSE_LEN: usize = 64;
const EOS: i64 = 1;
const PAD: i64 = 0;

/// The benchmark model, `benches/models/llama-8k.json`: the peer script reads the same file.
fn bench_config() -> anyhow::Result<ModelConfig> {
    Ok(ModelConfig::from_file(rlhf_bench::model_file("llama-8k"))?)
}

/// Random pairs; responses end with eos (as the tokenizer rule makes them).
fn random_pairs() -> Vec<Pair> {
    let mut rng = TrainRng::seed_from_u64(0);
    let mut ids = |n: usize, eos: bool| -> Vec<i64> {
        let mut v: Vec<i64> = (0..n).map(|_| rng.random_range(3..8192)).collect();
        if eos {
            *v.last_mut().expect("non-empty") = EOS;
        }
        v
    };
    (0..PAIRS)
        .map(|_| Pair {
            prompt: ids(PROMPT_LEN, false),
            chosen: ids(RESPONSE_LEN, true),
            rejected: ids(RESPONSE_LEN, true),
            reference: None,
            label: None,
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; ignore arguments.
    let threads = std::env::var("RLHF_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    tch::set_num_threads(threads);
    let started = Instant::now();
    tch::manual_seed(0);
    let policy = CausalLm::new(bench_config()?, Device::Cpu, Kind::Float)?;
    let params: i64 = policy.trainable_variables().iter().map(|(_, t)| t.numel() as i64).sum();
    println!("dpo bench: {:.1}M parameters, {threads} threads, {BATCH} pairs/step, prompt {PROMPT_LEN}, responses {RESPONSE_LEN}", params as f64 / 1e6);

    let mut pairs = random_pairs();
    let t0 = Instant::now();
    let reference = Reference::AdaptersOff.score_all(&policy, &pairs, 32, PAD)?;
    let reference_s = t0.elapsed().as_secs_f64();
    for (pair, logps) in pairs.iter_mut().zip(reference) {
        pair.reference = Some(logps);
    }
    let reference_pairs_per_s = PAIRS as f64 / reference_s;
    println!("  reference pass: {reference_pairs_per_s:.1} pairs/s ({reference_s:.2} s for {PAIRS} pairs)");

    let work = tempfile::tempdir()?;
    let train = TrainConfig {
        max_steps: STEPS,
        batch_size: BATCH,
        lr: 1e-5,
        warmup_steps: 0,
        log_every: 1,
        checkpoint_every: 0,
        threads: threads as usize,
        ..DpoConfig::default().train
    };
    let loss = LossConfig::default();
    let dir = StageDir { root: work.path().to_path_buf() };
    let job = TrainJob {
        dir: &dir,
        train: &train,
        loss: &loss,
        seed: 0,
        config_hash: String::new(),
        heldout: Vec::new(),
        pad_id: PAD,
        progress: false,
    };
    let mut trainer = Trainer::new(&policy, None, job)?;
    let (t0, c0) = (Instant::now(), cpu_seconds());
    trainer.train_round(0, pairs, false)?;
    let (train_s, train_cpu_s) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    trainer.finish()?;

    let metrics: Vec<Metric> = rlhf_data::read_records(dir.metrics())?;
    let per_step: Vec<f64> =
        metrics.iter().filter(|m| m.name == "pairs_per_s" && m.step > WARMUP_STEPS).map(|m| m.value).collect();
    let pairs_per_s = median(per_step);
    let tokens_per_pair = (2 * PROMPT_LEN + 2 * RESPONSE_LEN) as f64;
    let measured_pairs = (BATCH as u64 * (STEPS - WARMUP_STEPS)) as f64;
    println!(
        "  training: {pairs_per_s:.1} pairs/s, {:.0} tokens/s (median step after {WARMUP_STEPS} warm-up), {:.2} s wall, {train_cpu_s:.2} s CPU for {STEPS} steps",
        pairs_per_s * tokens_per_pair,
        train_s
    );
    let report = serde_json::json!({
        "bench": "dpo",
        "engine": "rlhf-dpo (tch)",
        "device": "cpu",
        "threads": threads,
        "model": rlhf_bench::model_report("llama-8k", params)?,
        "loss": "sigmoid",
        "batch_pairs": BATCH,
        "prompt_len": PROMPT_LEN,
        "response_len": RESPONSE_LEN,
        "steps": STEPS,
        "warmup_steps": WARMUP_STEPS,
        "train_pairs_per_s": pairs_per_s,
        "train_tokens_per_s": pairs_per_s * tokens_per_pair,
        "train_wall_s": train_s,
        "train_cpu_s": train_cpu_s,
        "train_pairs_per_cpu_s": (BATCH as u64 * STEPS) as f64 / train_cpu_s,
        "measured_pairs": measured_pairs,
        "reference_pairs_per_s": reference_pairs_per_s,
        "wall_time_s": started.elapsed().as_secs_f64(),
        "peak_rss_mb": peak_rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0)),
    });
    write_report("dpo", &report)?;
    Ok(())
}
