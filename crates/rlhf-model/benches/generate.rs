//! Generation throughput: a ~10M-parameter Llama-style model (random weights), batch 1 and 32,
//! 128 new tokens, sampling (temperature 1, top-k 50, top-p 0.9), with and without the KV cache.
//!
//! `cargo bench -p rlhf-model --bench generate` writes `$RLHF_BENCH_DIR/generate.json` (default
//! `<workspace>/target/bench/generate.json`) with tokens/s per case, the cache speed-up, wall time,
//! peak RSS and the thread count. `RLHF_BENCH_THREADS` sets libtorch's intra-op threads.
//! The same workload in transformers: `benches/peers/generate_transformers.py`.

use rlhf_bench::{cpu_seconds, peak_rss_bytes, write_report};
use rlhf_model::{generate, CausalLm, GenerationConfig, ModelConfig};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

const PROMPT_LEN: i64 = 16;
const NEW_TOKENS: i64 = 128;

/// The benchmark model, `benches/models/llama-8k.json`: the peer script reads the same file.
fn bench_config() -> anyhow::Result<ModelConfig> {
    Ok(ModelConfig::from_file(rlhf_bench::model_file("llama-8k"))?)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; ignore arguments.
    if let Some(t) = std::env::var("RLHF_BENCH_THREADS").ok().and_then(|t| t.parse().ok()) {
        tch::set_num_threads(t);
    }
    let threads = tch::get_num_threads();
    let started = Instant::now();
    tch::manual_seed(0);
    let model = CausalLm::new(bench_config()?, Device::Cpu, Kind::Float)?;
    let params: i64 = model.var_store().variables().values().map(|t| t.numel() as i64).sum();
    println!(
        "generate bench: {:.1}M parameters, {threads} threads, prompt {PROMPT_LEN}, {NEW_TOKENS} new tokens",
        params as f64 / 1e6
    );

    let mut cases = Vec::new();
    let mut speedups = serde_json::Map::new();
    for batch in [1i64, 32] {
        let prompt = Tensor::randint_low(3, 8192, [batch, PROMPT_LEN], (Kind::Int64, Device::Cpu));
        let mut per_mode = Vec::new();
        for use_cache in [true, false] {
            let cfg = GenerationConfig {
                max_new_tokens: NEW_TOKENS,
                do_sample: true,
                temperature: 1.0,
                top_k: 50,
                top_p: 0.9,
                eos_token_ids: vec![],
                pad_token_id: 0,
                seed: 1,
                use_cache,
            };
            // Warm-up (allocator, kernels) on a short run.
            generate(&model, &prompt, None, &GenerationConfig { max_new_tokens: 8, ..cfg.clone() })?;
            // Slow configurations run once, fast ones a few times (best run reported).
            let runs = if use_cache { 3 } else { 1 };
            let mut best = f64::INFINITY;
            let mut best_cpu = f64::INFINITY;
            let mut total = 0.0;
            for _ in 0..runs {
                let (t0, c0) = (Instant::now(), cpu_seconds());
                let out = generate(&model, &prompt, None, &cfg)?;
                let dt = t0.elapsed().as_secs_f64();
                assert_eq!(out.tokens.size(), [batch, NEW_TOKENS]);
                best = best.min(dt);
                best_cpu = best_cpu.min(cpu_seconds() - c0);
                total += dt;
            }
            let tps = (batch * NEW_TOKENS) as f64 / best;
            println!(
                "  batch {batch:>2} cache {use_cache:<5}: {tps:>9.1} tokens/s ({best:.3} s best of {runs}, {best_cpu:.3} s CPU)"
            );
            per_mode.push(tps);
            cases.push(serde_json::json!({
                "batch": batch,
                "use_cache": use_cache,
                "new_tokens": NEW_TOKENS,
                "tokens_per_s": tps,
                "best_s": best,
                "mean_s": total / runs as f64,
                "cpu_s": best_cpu,
                "tokens_per_cpu_s": (batch * NEW_TOKENS) as f64 / best_cpu,
                "runs": runs,
            }));
        }
        let speedup = per_mode[0] / per_mode[1];
        println!("  batch {batch:>2} KV-cache speed-up: {speedup:.2}x");
        speedups.insert(format!("batch_{batch}"), speedup.into());
    }
    let report = serde_json::json!({
        "bench": "generate",
        "engine": "rlhf-model (tch)",
        "device": "cpu",
        "threads": threads,
        "model": rlhf_bench::model_report("llama-8k", params)?,
        "prompt_len": PROMPT_LEN,
        "new_tokens": NEW_TOKENS,
        "sampling": {"do_sample": true, "temperature": 1.0, "top_k": 50, "top_p": 0.9},
        "cases": cases,
        "cache_speedup": speedups,
        "wall_time_s": started.elapsed().as_secs_f64(),
        "peak_rss_mb": peak_rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0)),
    });
    write_report("generate", &report)?;
    Ok(())
}
