//! The `rlhf-judge` binary. `label` has an AI judge decide pairs (a comparisons table's, or a
//! samples table's responses paired per prompt) and writes them as comparisons tagged
//! `ai:<model>`, the judge's confidence kept as the margin (2 × confidence − 1), atomically and only
//! once every pair is judged (the cache makes a killed run resume where it stopped). With `--gold`
//! it also measures the judge against the embedded task's gold rule: agreement on the pairs gold
//! decides, with a bootstrap 95% interval, and how often both orders agree.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use rlhf_data::{read_records, write_records, Comparison, Demonstration, Judge, Preferred};
use rlhf_judge::{comparisons, AiVerdict, JudgeSpec};
use serde_json::json;

#[derive(Parser)]
#[command(name = "rlhf-judge", version, about = "AI feedback: a model judges pairs of responses by a constitution")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Label pairs with an AI judge (both orders asked, averaged) into a comparisons table.
    Label(LabelArgs),
}

#[derive(Args)]
struct LabelArgs {
    /// A comparisons table whose pairs the judge decides afresh.
    #[arg(long, value_name = "FILE", conflicts_with = "samples", required_unless_present = "samples")]
    pairs: Option<PathBuf>,
    /// A samples table (`rlhf-eval generate` output): each prompt's responses, paired in order.
    #[arg(long, value_name = "FILE")]
    samples: Option<PathBuf>,
    /// The comparisons table to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The constitution whose comparison questions the judge answers (configs/constitutions/).
    #[arg(long, value_name = "FILE.toml")]
    constitution: PathBuf,
    /// A local checkpoint as the judge.
    #[arg(long, value_name = "DIR", conflicts_with = "openai", required_unless_present = "openai")]
    local: Option<PathBuf>,
    /// An OpenAI-compatible server as the judge (e.g. http://127.0.0.1:8000/v1); needs --model.
    #[arg(long, value_name = "URL", requires = "model")]
    openai: Option<String>,
    /// The model the server serves (its API key, if it needs one, in RLHF_JUDGE_API_KEY).
    #[arg(long)]
    model: Option<String>,
    /// Requests to the server in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Retries of a request the server refused with 429 or 5xx (or dropped).
    #[arg(long, default_value_t = 5)]
    max_retries: u32,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 120.0)]
    timeout_s: f64,
    /// The judgment cache (default: <out>.cache.jsonl).
    #[arg(long, value_name = "FILE")]
    cache: Option<PathBuf>,
    /// Only the first N pairs (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Seed of the principle drawn per pair.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Measure the judge against this gold judge (`gold`: the embedded task's rule).
    #[arg(long)]
    gold: Option<String>,
    #[command(flatten)]
    device: rlhf_model::DeviceArgs,
}

/// (id, prompt, first, second) of every pair to judge.
fn read_pairs(args: &LabelArgs) -> anyhow::Result<Vec<(String, String, String, String)>> {
    let mut pairs = Vec::new();
    if let Some(path) = &args.pairs {
        let rows: Vec<Comparison> = read_records(path)?;
        pairs.extend(rows.into_iter().map(|c| (c.id, c.prompt, c.chosen, c.rejected)));
    } else if let Some(path) = &args.samples {
        let rows: Vec<Demonstration> = read_records(path)?;
        let mut groups: Vec<(String, String, Vec<String>)> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for row in rows {
            let slot = *index.entry(row.id.clone()).or_insert_with(|| {
                groups.push((row.id.clone(), row.prompt.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[slot].2.push(row.response);
        }
        for (id, prompt, responses) in groups {
            for (k, pair) in responses.chunks_exact(2).enumerate().filter(|(_, p)| p[0] != p[1]) {
                pairs.push((format!("{id}-pair{k}"), prompt.clone(), pair[0].clone(), pair[1].clone()));
            }
        }
    }
    if args.limit > 0 {
        pairs.truncate(args.limit);
    }
    let source = args.pairs.as_ref().or(args.samples.as_ref()).expect("clap requires one");
    if pairs.is_empty() {
        bail!("{}: no pairs to judge", source.display());
    }
    Ok(pairs)
}

fn label(args: LabelArgs) -> anyhow::Result<()> {
    let pairs = read_pairs(&args)?;
    let gold = args
        .gold
        .as_deref()
        .map(|name| rlhf_task::judge_by_name(name, 0).with_context(|| format!("--gold {name}: no such judge")))
        .transpose()?;
    let spec = JudgeSpec {
        local: args.local.clone().unwrap_or_default(),
        openai_url: args.openai.clone().unwrap_or_default(),
        openai_model: args.model.clone().unwrap_or_default(),
        api_key_env: "RLHF_JUDGE_API_KEY".into(),
        concurrency: args.concurrency,
        max_retries: args.max_retries,
        timeout_s: args.timeout_s,
        constitution: args.constitution.clone(),
        cache: args.cache.clone().unwrap_or_else(|| with_suffix(&args.out, ".cache.jsonl")),
        seed: args.seed,
    };
    let judge = spec.build(args.device.resolve()?)?;
    let cached = judge.cached();
    let started = std::time::Instant::now();
    let items: Vec<(&str, &str, &str)> =
        pairs.iter().map(|(_, p, a, b)| (p.as_str(), a.as_str(), b.as_str())).collect();
    let verdicts = judge.verdicts(&items)?;
    let (comparisons, undecided) = comparisons(&pairs, &verdicts, &judge.name());
    write_records(&args.out, &comparisons)?;
    println!(
        "rlhf-judge: {} pairs judged by {} ({cached} answers were cached) in {:.1} s: {} comparisons, {undecided} undecided -> {}",
        pairs.len(),
        judge.name(),
        started.elapsed().as_secs_f64(),
        comparisons.len(),
        args.out.display()
    );
    if let Some(gold) = gold {
        let report = agreement(gold.as_ref(), &items, &verdicts)?;
        let path = with_suffix(&args.out, ".agreement.json");
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        println!("rlhf-judge: against {}: {report}", gold.name());
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The judge's agreement with `gold` on the pairs gold decides (an undecided verdict counts half),
/// with a bootstrap 95% interval, and both orders' consistency.
fn agreement(
    gold: &dyn Judge,
    items: &[(&str, &str, &str)],
    verdicts: &[AiVerdict],
) -> anyhow::Result<serde_json::Value> {
    let truth = gold.compare(items)?;
    let mut agreed = Vec::new();
    for (t, v) in truth.iter().zip(verdicts) {
        let p = v.p_first();
        match t.preferred {
            Preferred::First => agreed.push(if p > 0.5 {
                1.0
            } else if p < 0.5 {
                0.0
            } else {
                0.5
            }),
            Preferred::Second => agreed.push(if p < 0.5 {
                1.0
            } else if p > 0.5 {
                0.0
            } else {
                0.5
            }),
            Preferred::Neither => {}
        }
    }
    let consistent: Vec<f64> =
        verdicts.iter().filter_map(AiVerdict::consistent).map(|c| f64::from(u8::from(c))).collect();
    let (low, high) = rlhf_stats::bootstrap_interval(&agreed, 2000, 0);
    let first_bias: Vec<f64> = verdicts.iter().filter_map(|v| Some((v.p_ab? + v.p_ba?) / 2.0)).collect();
    Ok(json!({
        "pairs": items.len(),
        "decided_by_gold": agreed.len(),
        "agreement": rlhf_stats::mean(agreed.iter().copied()),
        "agreement_ci95": [low, high],
        "both_orders_consistent": rlhf_stats::mean(consistent.iter().copied()),
        "mean_p_a": rlhf_stats::mean(first_bias.iter().copied()),
    }))
}

fn run_cli(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Label(args) => label(args),
    }
}

rlhf_data::binary_main!("info", run_cli);
