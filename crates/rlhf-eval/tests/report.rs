//! `rlhf-eval report` and `compare` name their judges: a run evaluated without a gold judge (the
//! built-in default) shows no gold score or win rate and says so, the shipped `configs/eval.toml`
//! (the embedded task's gold judge) shows both, and a judge setting that names no judge, or one that
//! gives no scores, is one `error:` line that writes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Result};
use rlhf_data::{read_records, write_records, Demonstration, Metric, Prompt};
use rlhf_eval::config::EvalConfig;

const SMALL: &[&str] = &[
    "--device",
    "cpu",
    "--set",
    "data.num_prompts=6",
    "--set",
    "generation.max_new_tokens=8",
    "--set",
    "bootstrap=20",
];

fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/eval.toml")
}

fn rlhf_eval(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rlhf-eval"));
    cmd.args(args).env("RUST_LOG", "warn");
    cmd
}

fn report(run: &Path, extra: &[&str]) -> Command {
    let mut cmd = rlhf_eval(&["report", "--run-dir"]);
    cmd.arg(run).args(SMALL).args(extra);
    cmd
}

/// Runs the binary expecting success; its stdout.
fn run_ok(mut cmd: Command) -> Result<String> {
    let out = cmd.output()?;
    ensure!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs the binary expecting failure: one `error:` line holding `needle`.
fn fails(mut cmd: Command, needle: &str) -> Result<()> {
    rlhf_train::testing::assert_one_error_line(&mut cmd, needle)
}

/// A run directory with an SFT policy, a PPO policy that is a copy of it, and 6 held-out prompts.
fn tiny_run(run: &Path) -> Result<()> {
    common::tiny_policy(&run.join("sft/final"));
    std::fs::create_dir_all(run.join("ppo/final"))?;
    for entry in std::fs::read_dir(run.join("sft/final"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), run.join("ppo/final").join(entry.file_name()))?;
    }
    let prompts: Vec<Prompt> = (0..6)
        .map(|i| Prompt {
            id: format!("p{i}"),
            prompt: format!("User: Tell me about the cat {i}.\nAssistant:"),
            prompt_messages: None,
        })
        .collect();
    write_records(run.join("data/prompts_heldout.parquet"), &prompts)?;
    Ok(())
}

fn read(path: PathBuf) -> Result<String> {
    Ok(std::fs::read_to_string(path)?)
}

fn metric_names(run: &Path) -> Result<Vec<String>> {
    Ok(read_records::<Metric>(run.join("eval/metrics.parquet"))?.into_iter().map(|m| m.name).collect())
}

#[test]
fn without_a_gold_judge_the_report_shows_no_gold_and_says_so() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let run = tmp.path().join("run");
    tiny_run(&run)?;

    let printed = run_ok(report(&run, &[]))?;
    let eval = run.join("eval");
    let (headline, md, html) =
        (read(eval.join("headline.md"))?, read(eval.join("report.md"))?, read(eval.join("report.html"))?);
    ensure!(
        headline.starts_with("| policy | proxy | KL | length |\n|---|---|---|---|\n| sft | – | 0.000 |"),
        "{headline}"
    );
    ensure!(md.contains("| policy | KL | perplexity | length | EOS rate | distinct-1 | distinct-2 |\n"), "{md}");
    for text in [&headline, &md, &html, &printed] {
        ensure!(text.contains("gold: no gold judge configured: gold scores and win rates are not shown"), "{text}");
        ensure!(text.contains("proxy: none (no reward model found)"), "{text}");
        ensure!(
            !text.contains("| gold |") && !text.contains("<th>gold</th>") && !text.contains("win rate vs"),
            "{text}"
        );
    }
    ensure!(!eval.join("proxy_vs_gold.png").exists(), "a proxy-vs-gold plot without a gold judge");
    let names = metric_names(&run)?;
    ensure!(names.contains(&"ppo/kl".to_string()), "{names:?}");
    ensure!(!names.iter().any(|n| n.ends_with("/gold") || n.contains("win_rate")), "{names:?}");

    // The shipped config names the embedded task's gold judge: gold scores and win rates come back.
    let printed = run_ok(report(&run, &["--config", shipped_config().to_str().unwrap()]))?;
    let headline = read(eval.join("headline.md"))?;
    let table = "| policy | gold | proxy | KL | win rate vs sft (95% CI) | length |\n|---|---|---|---|---|---|\n";
    ensure!(headline.starts_with(table), "{headline}");
    ensure!(
        headline.contains(" | – | 0.000 | 50.0% [50.0, 50.0] | "),
        "the copy of sft ties it on every prompt: {headline}"
    );
    for text in [&headline, &read(eval.join("report.md"))?, &printed] {
        ensure!(text.contains("gold: `gold` — the embedded task's gold rule"), "{text}");
    }
    ensure!(eval.join("proxy_vs_gold.png").is_file(), "no proxy-vs-gold plot with the gold judge");
    let names = metric_names(&run)?;
    ensure!(names.contains(&"sft/gold".to_string()) && names.contains(&"ppo/win_rate".to_string()), "{names:?}");
    ensure!(read(eval.join("config.toml"))?.contains("gold_judge = \"gold\""), "the resolved config");
    Ok(())
}

#[test]
fn a_judge_that_is_unknown_or_gives_no_scores_is_one_error_line_and_writes_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let run = tmp.path().join("run");
    tiny_run(&run)?;
    let accepted = r#"accepted: "gold", "gold:helpful", "gold:harmless", "" (none)"#;
    fails(report(&run, &["--set", "gold_judge=nope"]), &format!(r#"gold_judge = "nope": no such judge; {accepted}"#))?;
    let only_compares = "this judge only compares two responses and gives no scores";
    fails(
        report(&run, &["--set", "gold_judge=sim:panel"]),
        &format!(r#"gold_judge = "sim:panel": {only_compares}; {accepted}"#),
    )?;
    ensure!(!run.join("eval").exists(), "eval/ was written");

    let (a, b) = (tmp.path().join("a.parquet"), tmp.path().join("b.parquet"));
    let rows = |response: &str| -> Vec<Demonstration> {
        let prompt = |i| format!("User: Tell me about the cat {i}.\nAssistant:");
        (0..3)
            .map(|i| Demonstration {
                id: format!("p{i}"),
                prompt: prompt(i),
                response: response.into(),
                prompt_messages: None,
            })
            .collect()
    };
    write_records(&a, &rows(" Sure! The cat is lovely. I hope this helps."))?;
    write_records(&b, &rows(" Whatever. The river is dull."))?;
    let compare = |judge: &[&str]| {
        let mut cmd = rlhf_eval(&["compare"]);
        cmd.arg(&a).arg(&b).args(judge);
        cmd
    };
    fails(
        compare(&["--judge", "sim:panel"]),
        &format!(r#"--judge = "sim:panel": {only_compares}; accepted: "gold", "gold:helpful", "gold:harmless""#),
    )?;
    fails(
        compare(&["--judge", "nope"]),
        r#"--judge = "nope": no such judge; accepted: "gold", "gold:helpful", "gold:harmless""#,
    )?;
    let printed = run_ok(compare(&[]))?;
    ensure!(printed.contains(": 100.0% (95% CI 100.0–100.0%, 3 prompts)"), "{printed}");
    Ok(())
}

#[test]
fn the_shipped_config_is_the_defaults_with_the_embedded_tasks_gold_judge() -> Result<()> {
    let shipped: EvalConfig = rlhf_data::config::load_config(Some(&shipped_config()), &[])?;
    assert_eq!(shipped, EvalConfig { gold_judge: "gold".into(), ..EvalConfig::default() });
    assert!(EvalConfig::default().gold_judge()?.is_none());
    Ok(())
}

#[test]
fn the_multi_objective_config_scores_each_objective_and_draws_the_front() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let run = tmp.path().join("run");
    tiny_run(&run)?;
    for policy in ["w-100/ppo", "constrained/ppo"] {
        std::fs::create_dir_all(run.join(policy).join("final"))?;
        for entry in std::fs::read_dir(run.join("sft/final"))? {
            let entry = entry?;
            std::fs::copy(entry.path(), run.join(policy).join("final").join(entry.file_name()))?;
        }
    }
    // The constrained run's multiplier, as rlhf-ppo logs it.
    let metric =
        |step, name: &str, value| Metric { stage: "ppo".into(), step, name: name.into(), value, wall_time: 0.0 };
    let rows: Vec<Metric> = (1..=3)
        .flat_map(|s| {
            let s64 = s as f64;
            [
                metric(s, "constraint/lambda", s64),
                metric(s, "constraint/cost", 1.0 / s64),
                metric(s, "constraint/satisfied", 0.2 * s64),
            ]
        })
        .collect();
    write_records(run.join("constrained/ppo/metrics.parquet"), &rows)?;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/eval_objectives.toml");
    run_ok(report(&run, &["--config", config.to_str().unwrap()]))?;

    let md = read(run.join("eval/report.md"))?;
    let header = "| policy | helpful gold | harmless gold | harmless: cost ≤ 0 |\n";
    ensure!(md.contains(&format!("## Objectives\n\n{header}")), "{md}");
    ensure!(md.contains("| w-100/ppo |") && md.contains("| constrained/ppo |"), "{md}");
    ensure!(md.contains("Pareto front of helpful gold and harmless gold"), "{md}");
    ensure!(md.contains("objective harmless: gold `gold:harmless`"), "{md}");
    for plot in ["pareto.png", "constraint_constrained_ppo.png"] {
        ensure!(run.join("eval").join(plot).is_file(), "no {plot}");
    }
    ensure!(read(run.join("eval/report.html"))?.contains("<h2>Objectives</h2>"), "no objectives in the html");
    let names = metric_names(&run)?;
    for name in ["sft/objective/helpful/gold", "constrained/ppo/objective/harmless/satisfied"] {
        ensure!(names.iter().any(|n| n == name), "no {name}: {names:?}");
    }

    fails(
        report(
            &run,
            &["--config", config.to_str().unwrap(), "--set", "objectives=[{ name = \"x\", gold_judge = \"nope\" }]"],
        ),
        r#"gold_judge = "nope": no such judge"#,
    )?;
    Ok(())
}
