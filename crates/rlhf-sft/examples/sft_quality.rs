//! Quality of the base and SFT models of a run on the embedded task: held-out response perplexity
//! and the gold judge's mean score of sampled responses to held-out prompts, next to the
//! demonstrations' own mean score.
//!
//! `cargo run --release -p rlhf-sft --example sft_quality -- RUN_DIR [BASE_DIR] [TEMPERATURE] [PROMPTS]`
//! (defaults: `runs/default`, `runs/default/base/final`, temperature 0.7, 200 prompts). The run
//! directory needs the task's `data/` tables (written by `rlhf-sft train`); a missing `sft/final/`
//! is skipped, so the base model can be checked on its own.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rlhf_data::{read_records, Demonstration};
use rlhf_model::{generate_from_tokens, CausalLm, GenerationConfig, Tokenizer};
use rlhf_sft::data::tokenize_demonstrations;
use rlhf_sft::sft::STAGE_DIR;
use rlhf_sft::trainer::evaluate;

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

fn report(name: &str, dir: &Path, heldout: &[Demonstration], temperature: f64, prompts: usize) -> Result<()> {
    let tokenizer = Tokenizer::from_dir(dir)?;
    let model = CausalLm::from_pretrained(dir, tch::Device::Cpu, tch::Kind::Float)?;
    let (examples, _) = tokenize_demonstrations(&tokenizer, heldout, 256)?;
    let eval = evaluate(&model, &examples, 64, tokenizer.pad_id())?;

    let mut seen = std::collections::BTreeSet::new();
    let unique: Vec<&str> =
        heldout.iter().map(|d| d.prompt.as_str()).filter(|p| seen.insert(*p)).take(prompts).collect();
    let mut scores = Vec::new();
    let mut samples = Vec::new();
    for (i, chunk) in unique.chunks(50).enumerate() {
        let ids = chunk.iter().map(|p| tokenizer.encode(p)).collect::<rlhf_model::Result<Vec<_>>>()?;
        let cfg = GenerationConfig {
            max_new_tokens: 96,
            temperature,
            eos_token_ids: vec![tokenizer.eos_id()],
            pad_token_id: tokenizer.pad_id(),
            seed: i as u64,
            ..GenerationConfig::default()
        };
        let generation = tch::no_grad(|| generate_from_tokens(&model, &ids, &cfg))?;
        for (prompt, row) in chunk.iter().zip(generation.rows()?) {
            let response = tokenizer.decode(&row, true)?;
            scores.push(rlhf_task::judge(prompt, &response).score);
            samples.push((prompt.to_string(), response));
        }
    }
    println!(
        "{name}: held-out response loss {:.4}, perplexity {:.3} ({} tokens); gold judge mean {:.3} over {} prompts (temperature {temperature})",
        eval.loss,
        eval.ppl,
        eval.tokens,
        mean(scores.iter().copied()),
        scores.len()
    );
    for (prompt, response) in samples.iter().take(3) {
        println!("  {prompt:?} -> {response:?}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run_dir = PathBuf::from(args.first().map_or("runs/default", String::as_str));
    let base = PathBuf::from(args.get(1).map_or("runs/default/base/final", String::as_str));
    let temperature: f64 = args.get(2).map_or(Ok(0.7), |t| t.parse()).context("temperature")?;
    let prompts: usize = args.get(3).map_or(Ok(200), |n| n.parse()).context("prompts")?;
    tch::set_num_threads(2);

    let files = rlhf_task::TaskFiles::in_dir(&run_dir.join("data"));
    let demos: Vec<Demonstration> = read_records(&files.demonstrations)?;
    let heldout: Vec<Demonstration> = read_records(&files.heldout_demonstrations)?;
    let demo_score = mean(demos.iter().map(|d| rlhf_task::judge(&d.prompt, &d.response).score));
    let heldout_score = mean(heldout.iter().map(|d| rlhf_task::judge(&d.prompt, &d.response).score));
    println!("demonstrations: gold judge mean {demo_score:.3} (train), {heldout_score:.3} (held-out)");
    report("base", &base, &heldout, temperature, prompts)?;
    let sft = rlhf_train::StageDir::new(&run_dir, STAGE_DIR).final_dir();
    if sft.is_dir() {
        report("sft", &sft, &heldout, temperature, prompts)?;
    }
    Ok(())
}
