//! Quality of a DPO run on the embedded task, against its starting (SFT) policy: on held-out prompts,
//! one sampled response each from both, judged by the gold judge — win rate (ties count half) and
//! mean scores; the KL to the starting policy as the mean log-ratio `log π(y|x) − log π_sft(y|x)` of
//! the DPO policy's own samples (per response and per token, temperature 1 for an unbiased
//! estimate); and the trends of the training metrics (reward margins, chosen/rejected log-probs).
//!
//! `cargo run --release -p rlhf-dpo --example dpo_quality -- [RUN_DIR] [PROMPTS] [TEMPERATURE]`
//! (defaults: `runs/default`, 200 prompts, temperature 1.0). Reads `RUN_DIR/dpo/config.toml` (the
//! starting policy), `RUN_DIR/data/prompts_heldout.parquet` (else the task's held-out prompts from
//! the config), `RUN_DIR/dpo/final/` and `RUN_DIR/dpo/metrics.parquet`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use rlhf_data::{read_records, Metric, Prompt};
use rlhf_dpo::data::{policy_logps, Pair};
use rlhf_dpo::DpoConfig;
use rlhf_model::{generate_from_tokens, CausalLm, GenerationConfig, Tokenizer};
use tch::{Device, Kind};

const BATCH: usize = 50;
const MAX_NEW_TOKENS: i64 = 96;

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// One sampled response per prompt, as token ids (eos kept) and text.
fn sample(
    model: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[Vec<i64>],
    temperature: f64,
    seed: u64,
) -> Result<Vec<Vec<i64>>> {
    let mut out = Vec::new();
    for (i, chunk) in prompts.chunks(BATCH).enumerate() {
        let cfg = GenerationConfig {
            max_new_tokens: MAX_NEW_TOKENS,
            temperature,
            eos_token_ids: vec![tokenizer.eos_id()],
            pad_token_id: tokenizer.pad_id(),
            seed: seed + i as u64,
            ..GenerationConfig::default()
        };
        out.extend(generate_from_tokens(model, chunk, &cfg)?.rows()?);
    }
    Ok(out)
}

/// Summed log-probs of each (prompt, response) under `model`, and the response token counts.
fn logps(model: &CausalLm, prompts: &[Vec<i64>], responses: &[Vec<i64>], pad: i64) -> Result<(Vec<f64>, Vec<f64>)> {
    let pairs: Vec<Pair> = prompts
        .iter()
        .zip(responses)
        .map(|(p, r)| Pair { prompt: p.clone(), chosen: r.clone(), rejected: r.clone(), reference: None })
        .collect();
    let (mut sums, mut counts) = (Vec::new(), Vec::new());
    for chunk in pairs.chunks(BATCH) {
        let batch: Vec<&Pair> = chunk.iter().collect();
        let scored = tch::no_grad(|| policy_logps(model, &batch, pad))?;
        sums.extend(Vec::<f64>::try_from(scored.chosen.to_kind(Kind::Double))?);
        counts.extend(Vec::<f64>::try_from(scored.chosen_tokens.to_kind(Kind::Double))?);
    }
    Ok((sums, counts))
}

fn trend(rows: &[Metric], name: &str) -> String {
    let values: Vec<&Metric> = rows.iter().filter(|m| m.name == name).collect();
    match (values.first(), values.last()) {
        (Some(a), Some(b)) => format!("{name}: {:.3} (step {}) -> {:.3} (step {})", a.value, a.step, b.value, b.step),
        _ => format!("{name}: -"),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run_dir = PathBuf::from(args.first().map_or("runs/default", String::as_str));
    let n: usize = args.get(1).map_or(Ok(200), |v| v.parse()).context("PROMPTS")?;
    let temperature: f64 = args.get(2).map_or(Ok(1.0), |v| v.parse()).context("TEMPERATURE")?;
    tch::set_num_threads(2);

    let config: DpoConfig = rlhf_data::config::load_config(Some(&run_dir.join("dpo/config.toml")), &[])?;
    let sft_dir = &config.model.policy;
    let tokenizer = Tokenizer::from_dir(sft_dir)?;
    let sft = CausalLm::from_pretrained(sft_dir, Device::Cpu, Kind::Float)?;
    let dpo = CausalLm::from_pretrained(run_dir.join("dpo/final"), Device::Cpu, Kind::Float)?;
    let heldout_file = run_dir.join("data/prompts_heldout.parquet");
    let heldout: Vec<Prompt> = if heldout_file.is_file() {
        read_records(&heldout_file)?
    } else {
        rlhf_task::generate(&Default::default()).heldout_prompts
    };
    let prompts: Vec<String> = heldout.into_iter().take(n).map(|p| p.prompt).collect();
    let ids = prompts.iter().map(|p| tokenizer.encode(p)).collect::<rlhf_model::Result<Vec<_>>>()?;

    let dpo_samples = sample(&dpo, &tokenizer, &ids, temperature, 1)?;
    let sft_samples = sample(&sft, &tokenizer, &ids, temperature, 1)?;
    let text =
        |rows: &[Vec<i64>]| rows.iter().map(|r| tokenizer.decode(r, true)).collect::<rlhf_model::Result<Vec<_>>>();
    let (dpo_text, sft_text) = (text(&dpo_samples)?, text(&sft_samples)?);
    let gold = |texts: &[String]| -> Vec<f64> {
        prompts.iter().zip(texts).map(|(p, r)| rlhf_task::judge(p, r).score).collect()
    };
    let (dpo_gold, sft_gold) = (gold(&dpo_text), gold(&sft_text));
    let wins: f64 = dpo_gold
        .iter()
        .zip(&sft_gold)
        .map(|(d, s)| {
            if d > s {
                1.0
            } else if d == s {
                0.5
            } else {
                0.0
            }
        })
        .sum();
    let win_rate = wins / prompts.len() as f64;

    let unit = if temperature == 1.0 { dpo_samples.clone() } else { sample(&dpo, &tokenizer, &ids, 1.0, 2)? };
    let (dpo_logp, tokens) = logps(&dpo, &ids, &unit, tokenizer.pad_id())?;
    let (sft_logp, _) = logps(&sft, &ids, &unit, tokenizer.pad_id())?;
    let ratios: Vec<f64> = dpo_logp.iter().zip(&sft_logp).map(|(d, s)| d - s).collect();
    let kl_per_response = mean(&ratios);
    let kl_per_token = ratios.iter().sum::<f64>() / tokens.iter().sum::<f64>();
    let length = |rows: &[Vec<i64>]| mean(&rows.iter().map(|r| r.len() as f64).collect::<Vec<_>>());

    println!("{} held-out prompts, temperature {temperature}", prompts.len());
    println!("win rate vs SFT (gold judge, ties half): {:.1}%", 100.0 * win_rate);
    println!("gold score: dpo {:.3}, sft {:.3} (best 5.5)", mean(&dpo_gold), mean(&sft_gold));
    println!("response tokens: dpo {:.1}, sft {:.1}", length(&dpo_samples), length(&sft_samples));
    println!("KL(dpo || sft) on dpo samples at temperature 1: {kl_per_response:.3} nats per response, {kl_per_token:.4} per token");
    let rows: Vec<Metric> = read_records(run_dir.join("dpo/metrics.parquet"))?;
    for name in [
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "eval_rewards/margins",
        "eval_rewards/accuracies",
        "eval_logps/chosen",
        "eval_logps/rejected",
        "online/gold_score",
    ] {
        println!("{}", trend(&rows, name));
    }
    for i in 0..3.min(prompts.len()) {
        println!("  {:?}\n    dpo {:?}\n    sft {:?}", prompts[i], dpo_text[i], sft_text[i]);
    }
    Ok(())
}
