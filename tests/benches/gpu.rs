//! Throughput at GPU scale (docs/gpu.md): SFT, reward-model and DPO optimizer steps through the
//! stages' own trainers, and sampling at batch 1, 32 and 256, on a GPT-2-124M-shaped and a
//! SmolLM2-135M-shaped model (`benches/models/{gpt2-124m,smollm2-135m}.json`, random weights, random
//! token ids), in bf16 with fp32 master weights (`--dtype bf16`) on `RLHF_BENCH_DEVICE` (default
//! `cuda`). `benches/peers/gpu_transformers.py` runs the same shapes through transformers.
//!
//! MFU counts 6 FLOPs per matmul parameter per token plus 12·layers·hidden·sequence for attention
//! (PaLM's convention, as nanoGPT's `estimate_mfu`), against `RLHF_BENCH_PEAK_TFLOPS` (default 989,
//! the H100/H200 SXM dense bf16 peak). Writes `$RLHF_BENCH_DIR/gpu.json`. `RLHF_BENCH_SCALE` (default
//! 1) divides batches, lengths and generation sizes, for a rehearsal on a CPU.

use std::time::Instant;

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use rlhf_bench::{median, write_report};
use rlhf_data::{read_records, Metric};
use rlhf_model::{generate, CausalLm, GenerationConfig, ModelConfig, SequenceClassifier};
use rlhf_train::{MetricsLog, StageDir, TrainRng};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

const MODELS: &[&str] = &["gpt2-124m", "smollm2-135m"];
const STEPS: u64 = 12;
const WARMUP_STEPS: u64 = 2;
const NEW_TOKENS: i64 = 128;
const GENERATION_BATCHES: &[i64] = &[1, 32, 256];
const PAD: i64 = 0;
const EOS: i64 = 2;

/// Sequence shapes, divided by `RLHF_BENCH_SCALE`.
struct Shapes {
    sft_batch: usize,
    sft_prompt: usize,
    sft_response: usize,
    reward_pairs: usize,
    reward_row: usize,
    dpo_pairs: usize,
    dpo_prompt: usize,
    dpo_response: usize,
    prompt: i64,
    new_tokens: i64,
    generation_batches: Vec<i64>,
}

impl Shapes {
    fn scaled(scale: usize) -> Shapes {
        Shapes {
            sft_batch: (32 / scale).max(1),
            sft_prompt: 256 / scale,
            sft_response: 768 / scale,
            reward_pairs: (32 / scale).max(1),
            reward_row: 512 / scale,
            dpo_pairs: (16 / scale).max(1),
            dpo_prompt: 256 / scale,
            dpo_response: 256 / scale,
            prompt: (64 / scale) as i64,
            new_tokens: NEW_TOKENS / scale as i64,
            generation_batches: GENERATION_BATCHES.iter().map(|&b| (b / scale as i64).max(1)).collect(),
        }
    }
}

/// Training FLOPs per token at sequence length `sequence` for a model with `matmul_params`.
fn training_flops_per_token(matmul_params: f64, config: &Value, sequence: usize) -> f64 {
    let layers = config["n_layer"].as_f64().or(config["num_hidden_layers"].as_f64()).unwrap_or(0.0);
    let hidden = config["n_embd"].as_f64().or(config["hidden_size"].as_f64()).unwrap_or(0.0);
    6.0 * matmul_params + 12.0 * layers * hidden * sequence as f64
}

/// Parameters that take part in matmuls: every 2-D weight except the embedding lookup tables, plus
/// the output head when it is tied to the token embedding (`head` = vocab × hidden, or 0).
fn matmul_params(variables: &[(String, Tensor)], head: i64) -> f64 {
    let lookup = |name: &str| ["wte", "wpe", "embed_tokens"].iter().any(|table| name.contains(table));
    let weights: i64 =
        variables.iter().filter(|(name, t)| t.dim() == 2 && !lookup(name)).map(|(_, t)| t.numel() as i64).sum();
    (weights + head) as f64
}

/// The output head's size when it is the tied token embedding, else 0 (the head is then a 2-D weight).
fn tied_head(config: &Value) -> i64 {
    let vocab = config["vocab_size"].as_i64().unwrap_or(0);
    let hidden = config["n_embd"].as_i64().or(config["hidden_size"].as_i64()).unwrap_or(0);
    if config["tie_word_embeddings"].as_bool().unwrap_or(true) {
        vocab * hidden
    } else {
        0
    }
}

/// The per-step `name` metric after the warm-up steps, from a metrics file.
fn measured(path: &std::path::Path, name: &str) -> Result<f64> {
    let metrics: Vec<Metric> = read_records(path)?;
    Ok(median(metrics.iter().filter(|m| m.name == name && m.step > WARMUP_STEPS).map(|m| m.value).collect()))
}

struct Bench {
    device: Device,
    peak_flops: f64,
    shapes: Shapes,
    vocab: i64,
    rng: TrainRng,
}

impl Bench {
    fn tokens(&mut self, n: usize) -> Vec<i64> {
        let vocab = self.vocab;
        (0..n).map(|_| self.rng.random_range(3..vocab)).collect()
    }

    fn mfu(&self, tokens_per_s: f64, flops_per_token: f64) -> f64 {
        tokens_per_s * flops_per_token / self.peak_flops
    }

    fn sft(&mut self, config: &ModelConfig, raw: &Value, work: &std::path::Path) -> Result<Value> {
        let (batch, prompt, response) = (self.shapes.sft_batch, self.shapes.sft_prompt, self.shapes.sft_response);
        let examples: Vec<rlhf_sft::data::Example> = (0..batch * STEPS as usize)
            .map(|_| rlhf_sft::data::Example {
                prompt: self.tokens(prompt),
                target: self.tokens(response),
                prompt_targets: Vec::new(),
            })
            .collect();
        let model = CausalLm::new(config.clone(), self.device, Kind::BFloat16)?;
        let flops = training_flops_per_token(
            matmul_params(&model.trainable_variables(), tied_head(raw)),
            raw,
            prompt + response,
        );
        let train = rlhf_sft::TrainConfig {
            max_steps: STEPS,
            batch_size: batch,
            grad_accum: 1,
            warmup_steps: 0,
            log_every: 1,
            eval_every: 0,
            checkpoint_every: 0,
            ..rlhf_sft::SftConfig::default().train
        };
        let dir = StageDir { root: work.join("sft") };
        let job = rlhf_sft::trainer::TrainJob {
            stage: "bench",
            dir: &dir,
            config: &train,
            seed: 0,
            config_hash: String::new(),
            train: &examples,
            eval: &[],
            pad_id: PAD,
            progress: false,
        };
        rlhf_sft::trainer::train(&model, &job)?;
        // The loop's tokens/s counts the tokens of the padded batch: prompt + response (+ eos).
        let tokens_per_s = measured(&dir.metrics(), "tokens_per_s")?;
        Ok(json!({"batch": batch, "sequence": prompt + response, "tokens_per_s": tokens_per_s,
                  "flops_per_token": flops, "mfu": self.mfu(tokens_per_s, flops)}))
    }

    fn reward(&mut self, config: &ModelConfig, raw: &Value, work: &std::path::Path) -> Result<Value> {
        let (pairs, row) = (self.shapes.reward_pairs, self.shapes.reward_row);
        let train: Vec<rlhf_reward::data::TokenizedPreference> = (0..pairs * STEPS as usize)
            .map(|_| {
                let prompt = self.tokens(row / 2);
                let rows =
                    (0..2).map(|_| [prompt.clone(), self.tokens(row - row / 2 - 1), vec![EOS]].concat()).collect();
                rlhf_reward::data::TokenizedPreference {
                    rows,
                    pairs: vec![rlhf_reward::data::Pair { better: 0, worse: 1, margin: 0.0 }],
                }
            })
            .collect();
        let model = SequenceClassifier::new(config.clone(), self.device, Kind::BFloat16)?;
        let variables: Vec<(String, Tensor)> = model.var_store().variables().into_iter().collect();
        let flops = training_flops_per_token(matmul_params(&variables, 0), raw, row);
        let train_config = rlhf_reward::config::TrainConfig {
            max_steps: STEPS,
            batch_size: pairs,
            warmup_steps: 0,
            log_every: 1,
            eval_every: 0,
            checkpoint_every: 0,
            ..rlhf_reward::RewardConfig::default().train
        };
        let root = work.join("reward");
        let metrics_file = root.join("metrics.parquet");
        let heldout = rlhf_reward::trainer::HeldOut::new(&[], None);
        let job = rlhf_reward::trainer::TrainJob {
            checkpoints: &root.join("checkpoints"),
            config_file: &root.join("config.toml"),
            metric_prefix: "",
            train_config: &train_config,
            loss: &rlhf_reward::config::LossConfig::default(),
            seed: 0,
            config_hash: "bench",
            train: &train,
            heldout: &heldout,
            pad_id: PAD,
            progress: false,
        };
        rlhf_reward::trainer::train(&model, &job, MetricsLog::open(&metrics_file, "reward")?)?;
        let tokens_per_s = measured(&metrics_file, "pairs_per_s")? * 2.0 * row as f64;
        Ok(json!({"pairs": pairs, "sequence": row, "tokens_per_s": tokens_per_s,
                  "flops_per_token": flops, "mfu": self.mfu(tokens_per_s, flops)}))
    }

    fn dpo(&mut self, config: &ModelConfig, raw: &Value, work: &std::path::Path) -> Result<Value> {
        let (batch, prompt, response) = (self.shapes.dpo_pairs, self.shapes.dpo_prompt, self.shapes.dpo_response);
        let mut pairs: Vec<rlhf_dpo::data::Pair> = (0..batch * STEPS as usize)
            .map(|_| rlhf_dpo::data::Pair {
                prompt: self.tokens(prompt),
                chosen: [self.tokens(response - 1), vec![EOS]].concat(),
                rejected: [self.tokens(response - 1), vec![EOS]].concat(),
                reference: None,
                label: None,
            })
            .collect();
        let policy = CausalLm::new(config.clone(), self.device, Kind::BFloat16)?;
        let flops = training_flops_per_token(
            matmul_params(&policy.trainable_variables(), tied_head(raw)),
            raw,
            prompt + response,
        );
        let started = Instant::now();
        let reference = rlhf_dpo::reference::Reference::AdaptersOff.score_all(&policy, &pairs, batch, PAD)?;
        let reference_pairs_per_s = pairs.len() as f64 / started.elapsed().as_secs_f64();
        for (pair, logps) in pairs.iter_mut().zip(reference) {
            pair.reference = Some(logps);
        }
        let train = rlhf_dpo::config::TrainConfig {
            max_steps: STEPS,
            batch_size: batch,
            warmup_steps: 0,
            log_every: 1,
            checkpoint_every: 0,
            ..rlhf_dpo::config::DpoConfig::default().train
        };
        let dir = StageDir { root: work.join("dpo") };
        let job = rlhf_dpo::trainer::TrainJob {
            dir: &dir,
            train: &train,
            loss: &rlhf_dpo::LossConfig::default(),
            seed: 0,
            config_hash: String::new(),
            heldout: Vec::new(),
            pad_id: PAD,
            progress: false,
        };
        let mut trainer = rlhf_dpo::trainer::Trainer::new(&policy, None, job)?;
        trainer.train_round(0, pairs, false)?;
        trainer.finish()?;
        let tokens_per_s = measured(&dir.metrics(), "pairs_per_s")? * 2.0 * (prompt + response) as f64;
        Ok(json!({"pairs": batch, "sequence": prompt + response, "tokens_per_s": tokens_per_s,
                  "flops_per_token": flops, "mfu": self.mfu(tokens_per_s, flops),
                  "reference_pairs_per_s": reference_pairs_per_s}))
    }

    /// Sampled tokens/s (temperature 1, top-k 50, top-p 0.9, KV cache, no early stop), best of 2.
    fn generation(&mut self, config: &ModelConfig) -> Result<Value> {
        let model = CausalLm::new(config.clone(), self.device, Kind::BFloat16)?;
        let mut cases = Vec::new();
        let new_tokens = self.shapes.new_tokens;
        for batch in self.shapes.generation_batches.clone() {
            let prompt = Tensor::randint_low(3, self.vocab, [batch, self.shapes.prompt], (Kind::Int64, self.device));
            let run = GenerationConfig {
                max_new_tokens: new_tokens,
                do_sample: true,
                temperature: 1.0,
                top_k: 50,
                top_p: 0.9,
                eos_token_ids: vec![],
                pad_token_id: PAD,
                seed: 1,
                use_cache: true,
            };
            generate(&model, &prompt, None, &GenerationConfig { max_new_tokens: 8, ..run.clone() })?;
            let mut best = f64::INFINITY;
            for _ in 0..2 {
                let started = Instant::now();
                let out = generate(&model, &prompt, None, &run)?;
                anyhow::ensure!(out.tokens.size() == [batch, new_tokens], "generated {:?}", out.tokens.size());
                best = best.min(started.elapsed().as_secs_f64());
            }
            let tokens_per_s = (batch * new_tokens) as f64 / best;
            println!("  generate batch {batch:>3}: {tokens_per_s:>10.0} tokens/s");
            cases.push(json!({"batch": batch, "new_tokens": new_tokens, "tokens_per_s": tokens_per_s, "best_s": best}));
        }
        Ok(Value::Array(cases))
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().map_err(|_| anyhow::anyhow!("{name}={value:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

fn main() -> Result<()> {
    let device = match std::env::var("RLHF_BENCH_DEVICE").as_deref() {
        Ok("cpu") => Device::Cpu,
        _ if tch::Cuda::is_available() => Device::Cuda(0),
        _ => anyhow::bail!("the gpu bench needs a CUDA device (docs/gpu.md); RLHF_BENCH_DEVICE=cpu rehearses it"),
    };
    let peak_tflops: f64 = env_or("RLHF_BENCH_PEAK_TFLOPS", 989.0)?;
    let scale: usize = env_or("RLHF_BENCH_SCALE", 1)?;
    let started = Instant::now();
    let mut models = serde_json::Map::new();
    for name in MODELS {
        let file = rlhf_bench::model_file(name);
        let raw: Value =
            serde_json::from_str(&std::fs::read_to_string(&file)?).with_context(|| file.display().to_string())?;
        let mut config = ModelConfig::from_file(&file)?;
        config.pad_token_id = Some(PAD);
        tch::manual_seed(0);
        let mut bench = Bench {
            device,
            peak_flops: peak_tflops * 1e12,
            shapes: Shapes::scaled(scale),
            vocab: raw["vocab_size"].as_i64().context("vocab_size")?,
            rng: TrainRng::seed_from_u64(0),
        };
        let work = tempfile::tempdir()?;
        println!("gpu bench: {name} on {device:?}, bf16 (fp32 master weights)");
        let mut report = serde_json::Map::new();
        for (stage, result) in [
            ("sft", bench.sft(&config, &raw, work.path())),
            ("reward", bench.reward(&config, &raw, work.path())),
            ("dpo", bench.dpo(&config, &raw, work.path())),
        ] {
            let result = result.with_context(|| format!("{name} {stage}"))?;
            println!(
                "  {stage:<6}: {:>9.0} tokens/s, MFU {:.1}%",
                result["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
                100.0 * result["mfu"].as_f64().unwrap_or(f64::NAN)
            );
            report.insert(stage.to_string(), result);
        }
        report.insert("generate".into(), bench.generation(&config).with_context(|| format!("{name} generate"))?);
        report.insert("config".into(), raw);
        models.insert(name.to_string(), Value::Object(report));
    }
    let report = json!({
        "bench": "gpu",
        "engine": "rlhf-rs (tch)",
        "device": format!("{device:?}"),
        "dtype": "bf16 compute, fp32 master weights and optimizer state",
        "peak_tflops": peak_tflops,
        "scale": scale,
        "steps": STEPS,
        "warmup_steps": WARMUP_STEPS,
        "models": models,
        "wall_time_s": started.elapsed().as_secs_f64(),
    });
    write_report("gpu", &report)?;
    Ok(())
}
