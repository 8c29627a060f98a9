//! The `tiny` pipeline preset end to end with two rounds of RLHF, with the stage binaries in
//! `target/release` (built by `cargo xtask test` before the tests): every step's output exists and
//! the evaluation reports a headline table with the second round's policy; then the DPO stage is
//! swapped for `alt-dpo` (this crate's stand-in that honours the stage contract) and the
//! evaluation, which reruns after any step ran, still reports. The `multi_objective_tiny` preset
//! runs through labels by objective, a reward model per objective, the PPO sweep, constrained PPO,
//! DPO on mixed labels and the report per objective.

use std::path::Path;

use anyhow::{ensure, Result};
use xtask::pipeline::{Plan, Preset};

fn check_report(run: &Path) -> Result<String> {
    let eval = run.join("eval");
    for file in ["report.md", "report.html", "headline.md", "metrics.parquet", "proxy_vs_gold.png", "frontier.png"] {
        ensure!(eval.join(file).is_file(), "missing {}", eval.join(file).display());
    }
    let report = std::fs::read_to_string(eval.join("report.md"))?;
    ensure!(
        report.contains("| policy | gold | proxy | KL | win rate vs sft (95% CI) | win rate vs base | length |"),
        "{report}"
    );
    let html = std::fs::read_to_string(eval.join("report.html"))?;
    ensure!(html.contains("data:image/png;base64,"), "the html report inlines no plot");
    Ok(report)
}

#[test]
fn every_preset_loads_and_names_built_binaries() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_alt-dpo")).parent().unwrap().to_path_buf();
    let mut names: Vec<String> = std::fs::read_dir(root.join("configs/pipeline"))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.strip_suffix(".toml").map(String::from))
        .collect();
    names.sort();
    ensure!(names.len() >= 7, "{names:?}");
    for name in &names {
        let preset = Preset::load(root, name)?;
        for step in preset.steps.iter().chain(&preset.round_steps) {
            ensure!(bin_dir.join(&step.bin).is_file(), "preset {name}, step {}: no binary {}", step.name, step.bin);
        }
    }
    Ok(())
}

#[test]
fn tiny_preset_runs_reports_and_takes_a_swapped_stage() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let preset = Preset::load(root, "tiny")?;
    let steps = preset.plan_steps(2)?;
    // The stage binaries sit next to this crate's own (same target directory and profile).
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_alt-dpo")).parent().unwrap().to_path_buf();
    for step in &steps {
        let bin = bin_dir.join(&step.bin);
        ensure!(
            bin.is_file(),
            "{} is not built: run `cargo xtask test` (or cargo build --release --bins)",
            bin.display()
        );
    }
    let tmp = tempfile::tempdir()?;
    let run = tmp.path().join("run");
    let steps: Vec<_> = steps.iter().collect();
    let plan = Plan { bin_dir: bin_dir.clone(), ..Plan::new(root, run.clone()) };
    plan.run(&steps)?;
    for step in &steps {
        let done = plan.expand(&step.done);
        ensure!(Path::new(&done).exists(), "step {} left no {done}", step.name);
    }
    for stage in ["sft", "rm", "ppo", "dpo", "round-2/rm", "round-2/ppo"] {
        ensure!(run.join(stage).join("metrics.parquet").exists(), "{stage} wrote no metrics");
    }
    let merged = rlhf_data::read_records::<rlhf_data::Comparison>(run.join("round-2/data/comparisons.parquet"))?.len();
    let first = rlhf_data::read_records::<rlhf_data::Comparison>(run.join("data/comparisons.parquet"))?.len();
    ensure!(merged > first, "round 2 added no comparisons ({first} -> {merged})");
    let report = check_report(&run)?;
    for policy in ["base", "sft", "ppo", "round-2/ppo", "dpo"] {
        ensure!(report.contains(&format!("| {policy} |")), "no {policy} row in\n{report}");
    }

    std::fs::remove_dir_all(run.join("dpo"))?;
    let swaps = vec![("dpo".to_string(), env!("CARGO_BIN_EXE_alt-dpo").to_string())];
    Plan { swaps, bin_dir, ..Plan::new(root, run.clone()) }.run(&steps)?;
    let copied = |stage: &str| std::fs::read(run.join(stage).join("final").join("model.safetensors"));
    ensure!(copied("dpo")? == copied("sft")?, "alt-dpo did not run");
    let report = check_report(&run)?;
    let dpo = report.lines().find(|l| l.starts_with("| dpo |")).unwrap_or_default();
    ensure!(dpo.contains("| 0.000 |"), "the swapped dpo (a copy of sft) should have KL 0: {dpo}");
    Ok(())
}

#[test]
fn multi_objective_tiny_preset_reports_each_objective() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let preset = Preset::load(root, "multi_objective_tiny")?;
    let steps = preset.plan_steps(1)?;
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_alt-dpo")).parent().unwrap().to_path_buf();
    let tmp = tempfile::tempdir()?;
    let run = tmp.path().join("run");
    let steps: Vec<_> = steps.iter().collect();
    Plan { bin_dir, ..Plan::new(root, run.clone()) }.run(&steps)?;

    for objective in ["helpful", "harmless"] {
        let labels = rlhf_data::read_records::<rlhf_data::Comparison>(
            run.join(format!("data/comparisons_{objective}.parquet")),
        )?;
        ensure!(!labels.is_empty() && labels.iter().all(|c| c.objective.as_deref() == Some(objective)));
        ensure!(run.join(objective).join("rm/final").is_dir(), "no {objective} reward model");
    }
    let lambda: Vec<f64> = rlhf_data::read_records::<rlhf_data::Metric>(run.join("constrained/ppo/metrics.parquet"))?
        .into_iter()
        .filter(|m| m.name == "constraint/lambda")
        .map(|m| m.value)
        .collect();
    ensure!(lambda.len() == 2, "the constrained run logged λ {lambda:?}");
    let eval = run.join("eval");
    for file in ["pareto.png", "constraint_constrained_ppo.png"] {
        ensure!(eval.join(file).is_file(), "missing {file}");
    }
    let report = std::fs::read_to_string(eval.join("report.md"))?;
    ensure!(
        report.contains(
            "| policy | helpful gold | helpful proxy | harmless gold | harmless proxy | harmless: cost ≤ 0 |"
        ),
        "{report}"
    );
    for policy in ["sft", "w-0/ppo", "w-50/ppo", "w-100/ppo", "constrained/ppo", "mix/dpo"] {
        ensure!(report.contains(&format!("| {policy} |")), "no {policy} row in\n{report}");
    }
    ensure!(report.contains("Pareto front of helpful gold and harmless gold"), "{report}");
    Ok(())
}
