//! Quality of a PPO/GRPO/RLOO run on the embedded task against its reference (SFT) policy: on
//! held-out prompts, one sampled response each from both (the run's generation settings), judged
//! by the gold judge — win rate (ties count half), mean gold score — and by the run's reward
//! model(s) (mean proxy score, before shaping); the KL to the reference as the mean
//! `Σ_t log π(y_t|·) − log π_ref(y_t|·)` over the trained policy's own samples (what the KL
//! controller targets); response length and eos rate.
//!
//! `cargo run --release -p rlhf-ppo --example ppo_quality -- [RUN_DIR] [STAGE_DIR] [PROMPTS]`
//! (defaults: `runs/default`, `ppo`, 200). Reads `RUN_DIR/STAGE_DIR/config.toml` and `final/`,
//! and `RUN_DIR/data/prompts_heldout.parquet` (else the task's held-out prompts).

use std::path::PathBuf;

use anyhow::{Context, Result};
use rlhf_data::{read_records, Metric, Prompt};
use rlhf_model::{CausalLm, GenerationConfig, Tokenizer};
use rlhf_ppo::reward::RewardModels;
use rlhf_ppo::rollout::{policy_pass, sample, Critic, Layout, Sample};
use rlhf_ppo::PpoConfig;
use rlhf_train::resolve;
use tch::{Device, Kind};

const BATCH: usize = 50;

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Summed response log-probs of each sample under `model`.
fn sequence_logprobs(model: &CausalLm, samples: &[Sample], pad: i64, temperature: f64) -> Result<Vec<f64>> {
    let mut sums = Vec::new();
    for chunk in samples.chunks(BATCH) {
        let layout = Layout::new(chunk, pad, Device::Cpu);
        let pass = tch::no_grad(|| policy_pass(model, &Critic::None, &layout, temperature, false))?;
        sums.extend(Vec::<f64>::try_from(pass.logprobs.sum_dim_intlist([1i64].as_slice(), false, Kind::Double))?);
    }
    Ok(sums)
}

/// Summary of one policy's samples.
struct Side {
    samples: Vec<Sample>,
    text: Vec<String>,
    gold: Vec<f64>,
    proxy: Vec<f64>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run_dir = PathBuf::from(args.first().map_or("runs/default", String::as_str));
    let stage = args.get(1).map_or("ppo", String::as_str);
    let n: usize = args.get(2).map_or(Ok(200), |v| v.parse()).context("PROMPTS")?;
    tch::set_num_threads(2);

    let stage_dir = run_dir.join(stage);
    let config: PpoConfig = rlhf_data::config::load_config(Some(&stage_dir.join("config.toml")), &[])?;
    let reference_dir = resolve(&run_dir, &config.model.reference);
    let tokenizer = Tokenizer::from_dir(&reference_dir)?;
    let reference = CausalLm::from_pretrained(&reference_dir, Device::Cpu, Kind::Float)?;
    let policy = CausalLm::from_pretrained(stage_dir.join("final"), Device::Cpu, Kind::Float)?;
    let placement = rlhf_model::Placement { device: Device::Cpu, kind: Kind::Float };
    let rewards = RewardModels::load(&config.reward, &run_dir, placement)?;
    let heldout_file = run_dir.join("data/prompts_heldout.parquet");
    let heldout: Vec<Prompt> = if heldout_file.is_file() {
        read_records(&heldout_file)?
    } else {
        rlhf_task::generate(&Default::default()).heldout_prompts
    };
    let prompts: Vec<String> = heldout.into_iter().take(n).map(|p| p.prompt).collect();
    let ids = prompts.iter().map(|p| tokenizer.encode(p)).collect::<rlhf_model::Result<Vec<_>>>()?;
    let rows: Vec<(usize, &[i64])> = ids.iter().enumerate().map(|(i, p)| (i, p.as_slice())).collect();

    let temperature = config.generation.temperature;
    let generation = GenerationConfig {
        max_new_tokens: config.generation.max_new_tokens,
        temperature,
        top_k: config.generation.top_k,
        top_p: config.generation.top_p,
        eos_token_ids: vec![tokenizer.eos_id()],
        pad_token_id: tokenizer.pad_id(),
        seed: 12_345,
        ..GenerationConfig::default()
    };
    let side = |model: &CausalLm| -> Result<Side> {
        let samples = sample(model, &rows, &generation, BATCH)?;
        let text = samples
            .iter()
            .map(|s| {
                let body =
                    if s.has_eos { &s.response_tokens[..s.response_tokens.len() - 1] } else { &s.response_tokens[..] };
                tokenizer.decode(body, true)
            })
            .collect::<rlhf_model::Result<Vec<_>>>()?;
        let pairs: Vec<(&str, &str)> =
            prompts.iter().map(String::as_str).zip(text.iter().map(String::as_str)).collect();
        let gold = pairs.iter().map(|(p, r)| rlhf_task::judge(p, r).score).collect();
        let proxy = rewards.score(&pairs)?.into_iter().map(f64::from).collect();
        Ok(Side { samples, text, gold, proxy })
    };
    let (trained, sft) = (side(&policy)?, side(&reference)?);
    let wins: f64 = trained
        .gold
        .iter()
        .zip(&sft.gold)
        .map(|(a, b)| {
            if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            }
        })
        .sum();
    let pad = tokenizer.pad_id();
    let kl: Vec<f64> = sequence_logprobs(&policy, &trained.samples, pad, temperature)?
        .iter()
        .zip(sequence_logprobs(&reference, &trained.samples, pad, temperature)?)
        .map(|(a, b)| a - b)
        .collect();
    let length = |s: &Side| mean(&s.samples.iter().map(|x| x.response_tokens.len() as f64).collect::<Vec<_>>());
    let eos = |s: &Side| mean(&s.samples.iter().map(|x| f64::from(u8::from(x.has_eos))).collect::<Vec<_>>());

    println!(
        "{stage}: {} held-out prompts, advantage {:?}, temperature {temperature}",
        prompts.len(),
        config.advantage
    );
    println!("win rate vs SFT (gold judge, ties half): {:.1}%", 100.0 * wins / prompts.len() as f64);
    println!("gold score: {stage} {:.3}, sft {:.3} (best 5.5)", mean(&trained.gold), mean(&sft.gold));
    println!("proxy reward: {stage} {:.3}, sft {:.3}", mean(&trained.proxy), mean(&sft.proxy));
    println!(
        "KL({stage} || sft) on its samples: {:.3} nats per response (controller target {}, {})",
        mean(&kl),
        config.kl.target,
        if config.kl.adaptive { "adaptive" } else { "fixed beta" }
    );
    println!(
        "response tokens: {stage} {:.1}, sft {:.1}; eos rate {:.2} vs {:.2}",
        length(&trained),
        length(&sft),
        eos(&trained),
        eos(&sft)
    );
    let metrics: Vec<Metric> = read_records(stage_dir.join("metrics.parquet"))?;
    for name in [
        "objective/score",
        "objective/gold",
        "objective/kl",
        "objective/kl_coef",
        "response/length",
        "perf/samples_per_s",
        "time/generation_share",
    ] {
        let values: Vec<&Metric> = metrics.iter().filter(|m| m.name == name).collect();
        if let (Some(a), Some(b)) = (values.first(), values.last()) {
            println!("{name}: {:.3} (iteration {}) -> {:.3} (iteration {})", a.value, a.step, b.value, b.step);
        }
    }
    for ((prompt, ours), theirs) in prompts.iter().zip(&trained.text).zip(&sft.text).take(3) {
        println!("  {prompt:?}\n    {stage} {ours:?}\n    sft {theirs:?}");
    }
    Ok(())
}
