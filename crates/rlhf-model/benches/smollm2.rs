//! The real model: SmolLM2-135M-Instruct (imported from its GGUF, f32) on the CPU.
//!
//! - Generation tokens/s at batch 1 and 16: the chat prompt of one question, 64 new tokens, sampling
//!   (temperature 1, top-k 50, top-p 0.9), no early stop, KV cache.
//! - One SFT step's tokens/s: 8 rows of a 48-token prompt and a 48-token response (random ids), the
//!   mean NLL of the response tokens, backward, AdamW (lr 1e-5) over every parameter.
//!
//! `cargo xtask bench smollm2` fetches the GGUF, imports it into `$RLHF_BENCH_DIR/smollm2/` and
//! writes `$RLHF_BENCH_DIR/smollm2.json`; `benches/peers/smollm2_transformers.py` runs the same work
//! with transformers `generate` and a plain PyTorch loop on the same imported checkpoint.

use rlhf_bench::{cpu_seconds, peak_rss_bytes, write_report};
use rlhf_model::{
    build_batch, generate_from_tokens, sequence_logprobs, AdamW, AdamWConfig, CausalLm, GenerationConfig,
    LogprobOptions, PaddingSide, Tokenizer,
};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

const NEW_TOKENS: i64 = 64;
const SFT_ROWS: usize = 8;
const SFT_HALF: usize = 48;
const SFT_STEPS: usize = 3;

fn bench_dir() -> PathBuf {
    std::env::var_os("RLHF_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench"))
}

fn main() -> anyhow::Result<()> {
    if let Some(t) = std::env::var("RLHF_BENCH_THREADS").ok().and_then(|t| t.parse().ok()) {
        tch::set_num_threads(t);
    }
    let threads = tch::get_num_threads();
    let gguf = std::env::var_os("RLHF_SMOLLM2_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    let dir = bench_dir().join("smollm2");
    if !dir.join("model.safetensors").is_file() {
        rlhf_model::gguf::import_gguf(&gguf, &dir)?;
    }
    let started = Instant::now();
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let model = CausalLm::from_pretrained(&dir, Device::Cpu, Kind::Float)?;
    let params: i64 = model.var_store().variables().values().map(|t| t.numel() as i64).sum();
    let prompt = tokenizer.encode_generation_prompt("What is the capital of France?")?;
    println!(
        "smollm2 bench: {:.1}M parameters, {threads} threads, prompt {} tokens",
        params as f64 / 1e6,
        prompt.len()
    );

    let mut generation = Vec::new();
    for batch in [1usize, 16] {
        let prompts = vec![prompt.clone(); batch];
        let cfg = GenerationConfig {
            max_new_tokens: NEW_TOKENS,
            top_k: 50,
            top_p: 0.9,
            pad_token_id: tokenizer.pad_id(),
            seed: 1,
            ..GenerationConfig::default()
        };
        generate_from_tokens(&model, &prompts, &GenerationConfig { max_new_tokens: 4, ..cfg.clone() })?;
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let out = generate_from_tokens(&model, &prompts, &cfg)?;
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        assert_eq!(out.tokens.size(), [batch as i64, NEW_TOKENS]);
        let tps = (batch as i64 * NEW_TOKENS) as f64 / wall;
        println!("  generate batch {batch:>2}: {tps:>8.1} tokens/s ({wall:.2} s, {cpu:.2} s CPU)");
        generation.push(serde_json::json!({"batch": batch, "new_tokens": NEW_TOKENS, "tokens_per_s": tps,
            "wall_s": wall, "cpu_s": cpu}));
    }

    tch::manual_seed(0);
    let rows: Vec<(Vec<i64>, Vec<i64>)> = (0..SFT_ROWS)
        .map(|_| {
            let ids = Tensor::randint_low(3, 49152, [2 * SFT_HALF as i64], (Kind::Int64, Device::Cpu));
            let ids: Vec<i64> = Vec::try_from(ids).expect("int64 ids");
            (ids[..SFT_HALF].to_vec(), ids[SFT_HALF..].to_vec())
        })
        .collect();
    let batch = build_batch(&rows, None, tokenizer.pad_id(), PaddingSide::Right, Device::Cpu)?;
    let mut optimizer = AdamW::new(model.var_store(), AdamWConfig::default());
    let mut step_times = Vec::new();
    for step in 0..=SFT_STEPS {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        optimizer.zero_grad();
        let scored = sequence_logprobs(&model, &batch, LogprobOptions::default())?;
        let loss = -(scored.sum.sum(Kind::Float) / scored.count.sum(Kind::Float));
        loss.backward();
        optimizer.step(1e-5)?;
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        if step > 0 {
            step_times.push((wall, cpu));
        }
    }
    let best = step_times.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
    let tokens = (SFT_ROWS * 2 * SFT_HALF) as f64;
    println!(
        "  SFT step {SFT_ROWS} x {} tokens: {:.1} tokens/s ({best:.2} s best of {SFT_STEPS})",
        2 * SFT_HALF,
        tokens / best
    );
    let report = serde_json::json!({
        "bench": "smollm2",
        "engine": "rlhf-model (tch)",
        "device": "cpu",
        "threads": threads,
        "model": {"name": "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to f32)", "parameters": params},
        "prompt_tokens": prompt.len(),
        "generation": generation,
        "sft_step": {"rows": SFT_ROWS, "tokens_per_row": 2 * SFT_HALF, "tokens_per_s": tokens / best,
                     "best_s": best, "steps": step_times.iter().map(|t| t.0).collect::<Vec<_>>()},
        "wall_time_s": started.elapsed().as_secs_f64(),
        "peak_rss_mb": peak_rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0)),
    });
    write_report("smollm2", &report)?;
    Ok(())
}
