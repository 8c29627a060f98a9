//! The `rlhf-judge` binary. `label` has an AI judge decide pairs (a comparisons table's, or a
//! samples table's responses paired per prompt) and writes them as comparisons tagged
//! `ai:<model>`, the judge's confidence kept as the margin (2 × confidence − 1), atomically and only
//! once every pair is judged (the cache makes a killed run resume where it stopped). With
//! `--against gold` (or `sim:panel`, the simulated annotators) it also measures the judge against that
//! judge: agreement on the pairs it decides, with a bootstrap 95% interval, and how often both
//! orders agree. `revise` is Constitutional AI's supervised phase: answers, critiques and revisions
//! into a revisions table, SFT demonstrations and (revision ≻ initial) comparisons; with
//! `--against gold`, how often the revision beats the initial answer.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use rlhf_data::{read_records, write_records, Comparison, Demonstration, Judge, Preferred, Prompt, Revision};
use rlhf_judge::{comparisons, revise, AiVerdict, JudgeSpec, ReviseSettings, Reviser};
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
    /// Constitutional AI: answer each prompt, then critique and revise by the constitution.
    Revise(ReviseArgs),
}

#[derive(Args)]
struct ReviseArgs {
    /// A prompts table.
    #[arg(long, value_name = "FILE")]
    prompts: PathBuf,
    /// The checkpoint that answers, critiques and revises.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The constitution whose critique and revision requests it follows (configs/constitutions/).
    #[arg(long, value_name = "FILE.toml")]
    constitution: PathBuf,
    /// The revisions table to write (initial answer, principles, critiques, revisions).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Also write each prompt's latest revision as an SFT demonstration.
    #[arg(long, value_name = "FILE")]
    demonstrations: Option<PathBuf>,
    /// Also write (latest revision ≻ initial answer) as comparisons.
    #[arg(long, value_name = "FILE")]
    comparisons: Option<PathBuf>,
    /// Critique-and-revise rounds per prompt (a principle drawn per round).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Only the first N prompts (0: all).
    #[arg(long, default_value_t = 0)]
    max_prompts: usize,
    /// Tokens per answer, critique and revision.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: i64,
    /// Temperature of the initial answer (0: greedy).
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Temperature of critiques and revisions (0: greedy, which makes a small model copy the answer
    /// or loop).
    #[arg(long, default_value_t = 0.7)]
    revise_temperature: f64,
    /// Prompts per generation batch (and per journal entry).
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The journal a killed run resumes from (default: <out>.journal.jsonl).
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// The model's name in what it writes (`ai:<name>`; default: the checkpoint directory's).
    #[arg(long, default_value = "")]
    name: String,
    /// Measure how often the latest revision beats the initial answer by these judges (`gold`,
    /// `sim:panel`); repeatable.
    #[arg(long, value_name = "JUDGE")]
    against: Vec<String>,
    #[command(flatten)]
    device: rlhf_model::DeviceArgs,
}

#[derive(Args)]
struct LabelArgs {
    /// A comparisons table whose pairs the judge decides afresh.
    #[arg(long, value_name = "FILE", conflicts_with = "samples", required_unless_present = "samples")]
    pairs: Option<PathBuf>,
    /// A samples table (`rlhf-eval generate` output): each prompt's responses, paired in order.
    #[arg(long, value_name = "FILE")]
    samples: Option<PathBuf>,
    /// With --samples: every pair of a prompt's distinct responses, not consecutive ones.
    #[arg(long, requires = "samples")]
    all_pairs: bool,
    /// The comparisons table to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The constitution whose comparison questions the judge answers (configs/constitutions/).
    #[arg(long, value_name = "FILE.toml")]
    constitution: PathBuf,
    /// A local checkpoint as the judge.
    #[arg(long, value_name = "DIR", conflicts_with = "openai", required_unless_present = "openai")]
    local: Option<PathBuf>,
    /// The local judge's name in what it labels (`ai:<name>`; default: the checkpoint directory's).
    #[arg(long, default_value = "", requires = "local")]
    name: String,
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
    /// Measure the judge against these judges (`gold`: the embedded task's rule; `sim:panel`: its
    /// simulated annotators); repeatable.
    #[arg(long, value_name = "JUDGE")]
    against: Vec<String>,
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
            let indices: Vec<(usize, usize)> = if args.all_pairs {
                (0..responses.len()).flat_map(|i| (i + 1..responses.len()).map(move |j| (i, j))).collect()
            } else {
                (0..responses.len() / 2).map(|k| (2 * k, 2 * k + 1)).collect()
            };
            let distinct = indices.into_iter().filter(|&(i, j)| responses[i] != responses[j]);
            for (k, (i, j)) in distinct.enumerate() {
                pairs.push((format!("{id}-pair{k}"), prompt.clone(), responses[i].clone(), responses[j].clone()));
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
    let against = judges_named(&args.against)?;
    let spec = JudgeSpec {
        local: args.local.clone().unwrap_or_default(),
        name: args.name.clone(),
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
    if !against.is_empty() {
        let mut report = serde_json::Map::new();
        for judge in &against {
            let agreement = agreement(judge.as_ref(), &items, &verdicts)?;
            println!("rlhf-judge: against {}: {agreement}", judge.name());
            report.insert(judge.name(), agreement);
        }
        write_report(&args.out, &serde_json::Value::Object(report))?;
    }
    Ok(())
}

/// The judges `names` name (`gold`, `panel`, ...), each known or one error.
fn judges_named(names: &[String]) -> anyhow::Result<Vec<Box<dyn Judge>>> {
    names
        .iter()
        .map(|name| rlhf_task::judge_by_name(name, 0).with_context(|| format!("--against {name}: no such judge")))
        .collect()
}

/// Writes `<out>.against.json` (atomically).
fn write_report(out: &Path, report: &serde_json::Value) -> anyhow::Result<()> {
    let path = with_suffix(out, ".against.json");
    rlhf_data::atomic::write_atomically(&path, serde_json::to_string_pretty(report)?.as_bytes())?;
    Ok(())
}

fn revise(args: ReviseArgs) -> anyhow::Result<()> {
    let against = judges_named(&args.against)?;
    let constitution = rlhf_judge::Constitution::load(&args.constitution)?;
    let mut prompts: Vec<Prompt> = read_records(&args.prompts)?;
    if args.max_prompts > 0 {
        prompts.truncate(args.max_prompts);
    }
    if prompts.is_empty() {
        bail!("{}: has no prompts", args.prompts.display());
    }
    let settings = ReviseSettings {
        rounds: args.rounds,
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        revise_temperature: args.revise_temperature,
        batch_size: args.batch_size,
        seed: args.seed,
    };
    let reviser = Reviser::load(&args.model, args.device.resolve()?, constitution, settings)?.named(&args.name);
    let journal = args.journal.clone().unwrap_or_else(|| with_suffix(&args.out, ".journal.jsonl"));
    let started = std::time::Instant::now();
    let revised = reviser.revise_all(&prompts, &journal)?;
    write_records(&args.out, &revised.rows)?;
    let demonstrations = revise::demonstrations(&revised.rows);
    if let Some(path) = &args.demonstrations {
        write_records(path, &demonstrations)?;
    }
    let comparisons = revise::comparisons(&revised.rows);
    if let Some(path) = &args.comparisons {
        write_records(path, &comparisons)?;
    }
    println!(
        "rlhf-judge: {} prompts answered, critiqued and revised by {} in {:.1} s ({} chunks from the journal): \
         {} rows ({} empty answers dropped), {} demonstrations, {} comparisons -> {}",
        prompts.len(),
        reviser.annotator(),
        started.elapsed().as_secs_f64(),
        revised.resumed_chunks,
        revised.rows.len(),
        revised.dropped,
        demonstrations.len(),
        comparisons.len(),
        args.out.display()
    );
    if !against.is_empty() {
        let mut report = serde_json::Map::new();
        for judge in &against {
            let wins = revision_wins(judge.as_ref(), &revised.rows)?;
            println!("rlhf-judge: revisions against {}: {wins}", judge.name());
            report.insert(judge.name(), wins);
        }
        write_report(&args.out, &serde_json::Value::Object(report))?;
    }
    Ok(())
}

/// How often `judge` prefers the latest revision to the initial answer (a tie counts half), over
/// the rows that have a revision, with a bootstrap 95% interval, and its mean score gain.
fn revision_wins(judge: &dyn Judge, rows: &[Revision]) -> anyhow::Result<serde_json::Value> {
    let revised: Vec<&Revision> = rows.iter().filter(|row| !row.revisions.is_empty()).collect();
    let items: Vec<(&str, &str, &str)> =
        revised.iter().map(|row| (row.prompt.as_str(), row.latest(), row.initial.as_str())).collect();
    let wins: Vec<f64> = judge
        .compare(&items)?
        .iter()
        .map(|j| match j.preferred {
            Preferred::First => 1.0,
            Preferred::Second => 0.0,
            Preferred::Neither => 0.5,
        })
        .collect();
    let scores = |pick: fn(&Revision) -> &str| -> anyhow::Result<Option<f64>> {
        let pairs: Vec<(&str, &str)> = revised.iter().map(|row| (row.prompt.as_str(), pick(row))).collect();
        Ok(judge.score(&pairs)?.map(rlhf_stats::mean))
    };
    let (low, high) = rlhf_stats::bootstrap_interval(&wins, 2000, 0);
    Ok(json!({
        "rows": rows.len(),
        "revised": revised.len(),
        "revision_beats_initial": rlhf_stats::mean(wins.iter().copied()),
        "revision_beats_initial_ci95": [low, high],
        "mean_score_initial": scores(|row| row.initial.as_str())?,
        "mean_score_revision": scores(Revision::latest)?,
    }))
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
        "decided_by_reference": agreed.len(),
        "agreement": rlhf_stats::mean(agreed.iter().copied()),
        "agreement_ci95": [low, high],
        "both_orders_consistent": rlhf_stats::mean(consistent.iter().copied()),
        "mean_p_a": rlhf_stats::mean(first_bias.iter().copied()),
    }))
}

fn run_cli(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Label(args) => label(args),
        Command::Revise(args) => revise(args),
    }
}

rlhf_data::binary_main!("info", run_cli);
