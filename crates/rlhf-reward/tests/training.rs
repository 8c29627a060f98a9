//! The stage on tiny data: held-out accuracy (and gold accuracy) rises, the checkpoint loads as a
//! normalised reward model, an interrupted run resumes to the same weights, ensembles and rankings
//! train, and bad input is dropped (identical pairs) or refused with a clear error.

mod common;

use std::collections::HashSet;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use rlhf_data::{read_records, write_records, Comparison, Metric, Ranking};
use rlhf_model::checkpoint::read_config;
use rlhf_model::reward::score_rows;
use rlhf_reward::data::{tokenize_rows, Preferences};
use rlhf_reward::stage::{self, run};
use rlhf_reward::{Combine, Outcome, RewardConfig, RewardModel, TrainSummary};
use tch::Device;

fn train(config: &RewardConfig, run_dir: &Path) -> Result<Vec<TrainSummary>> {
    match run(config, run_dir, &common::cpu())? {
        Outcome::Trained { summary: members, .. } => Ok(members),
        Outcome::AlreadyDone(dir) => anyhow::bail!("{} was already there", dir.display()),
    }
}

fn metrics(run_dir: &Path) -> Result<Vec<Metric>> {
    Ok(read_records(run_dir.join("rm/metrics.parquet"))?)
}

fn metric(rows: &[Metric], name: &str) -> Option<f64> {
    rows.iter().rev().find(|m| m.name == name).map(|m| m.value)
}

fn mean_std(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    (mean, (values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt())
}

#[test]
fn accuracy_rises_and_the_model_is_normalised() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"));
    let comparisons = tmp.path().join("comparisons.parquet");
    write_records(&comparisons, &common::easy_comparisons(200))?;
    let run_dir = tmp.path().join("run");
    let config = common::fast_config(&policy, &comparisons, 60);
    let summary = &train(&config, &run_dir)?[0];

    let (before, after) = (summary.eval_before.context("no eval")?, summary.eval_after.context("no eval")?);
    ensure!(after.accuracy >= 0.9 && after.accuracy > before.accuracy + 0.2, "accuracy {before:?} -> {after:?}");
    let gold = after.gold_accuracy.context("the task's prompts get gold accuracy")?;
    ensure!(gold >= 0.9, "gold accuracy {gold}");
    ensure!(after.loss < before.loss && after.margin > 0.0, "{before:?} -> {after:?}");

    let final_dir = run_dir.join("rm/final");
    let config_json = read_config(&final_dir)?;
    assert_eq!(config_json.architectures, Some(vec!["LlamaForSequenceClassification".to_string()]));
    assert_eq!(config_json.num_labels(), 1);
    assert!(config_json.pad_token_id.is_some());
    let normalization = config_json.reward_normalization.context("normalisation stored")?;
    assert!(normalization.scale > 0.0);

    // Normalised on the training responses (the split is the stage's): mean 0, std 1.
    let model = RewardModel::load(&final_dir, Device::Cpu)?;
    let mut data = Preferences::default();
    data.add_comparisons(&comparisons)?;
    let (kept, heldout) = data.split_by_prompt(config.data.heldout_fraction, config.seed);
    let mut seen = HashSet::new();
    let texts: Vec<(&str, &str)> = kept
        .items
        .iter()
        .flat_map(|p| p.responses.iter().map(|r| (p.prompt.text.as_str(), r.as_str())))
        .filter(|t| seen.insert(*t))
        .collect();
    let (mean, std) = mean_std(&model.score(&texts)?);
    ensure!(mean.abs() < 1e-4 && (std - 1.0).abs() < 1e-4, "training responses: mean {mean}, std {std}");
    let metrics = metrics(&run_dir)?;
    assert_eq!(metric(&metrics, "data/heldout_pairs"), Some(heldout.pair_count() as f64));
    ensure!((20..100).contains(&heldout.pair_count()), "{} held-out pairs", heldout.pair_count());

    assert!(metrics.iter().all(|m| m.stage == "reward"));
    for name in ["loss", "accuracy", "margin", "pairs_per_s", "eval_accuracy", "eval_gold_accuracy", "norm_shift"] {
        ensure!(metric(&metrics, name).is_some(), "no {name} metric");
    }
    assert!(matches!(run(&config, &run_dir, &common::cpu())?, Outcome::AlreadyDone(_)));
    Ok(())
}

#[test]
fn an_interrupted_run_resumes_to_the_same_weights() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"));
    let comparisons = tmp.path().join("comparisons.parquet");
    write_records(&comparisons, &common::easy_comparisons(60))?;
    let mut config = common::fast_config(&policy, &comparisons, 10);
    config.train.checkpoint_every = 4;

    let whole = tmp.path().join("whole");
    train(&config, &whole)?;
    // Keep the checkpoints (steps 4 and 8) but lose the final model: the stage continues from step 8.
    let resumed = tmp.path().join("resumed");
    train(&config, &resumed)?;
    std::fs::remove_dir_all(resumed.join("rm/final"))?;
    let summary = &train(&config, &resumed)?[0];
    assert_eq!(summary.resumed_from, Some(8));

    for file in ["model.safetensors", "config.json"] {
        let (a, b) =
            (std::fs::read(whole.join("rm/final").join(file))?, std::fs::read(resumed.join("rm/final").join(file))?);
        ensure!(a == b, "{file} differs after resuming");
    }
    let rows = metrics(&resumed)?;
    let keys: HashSet<(u64, &str)> = rows.iter().map(|m| (m.step, m.name.as_str())).collect();
    assert_eq!(keys.len(), rows.len(), "duplicate metric rows after resuming");
    assert_eq!(rows.len(), metrics(&whole)?.len());

    // A checkpoint written under another config is refused.
    std::fs::remove_dir_all(resumed.join("rm/final"))?;
    let written = std::fs::read_to_string(resumed.join("rm/config.toml"))?;
    config.train.lr *= 2.0;
    let err = run(&config, &resumed, &common::cpu()).unwrap_err().to_string();
    assert!(err.contains("was written under a different config"), "{err}");
    assert_eq!(std::fs::read_to_string(resumed.join("rm/config.toml"))?, written, "the refused run kept the config");
    Ok(())
}

#[test]
fn an_ensemble_trains_each_member_with_its_own_seed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"));
    let comparisons = tmp.path().join("comparisons.parquet");
    let rows = common::easy_comparisons(40);
    write_records(&comparisons, &rows)?;
    let mut config = common::fast_config(&policy, &comparisons, 4);
    config.ensemble.members = 2;
    config.ensemble.combine = Combine::Min;
    let run_dir = tmp.path().join("run");
    assert_eq!(train(&config, &run_dir)?.len(), 2);

    let final_dir = run_dir.join("rm/final");
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(final_dir.join("ensemble.json"))?)?;
    assert_eq!(manifest, serde_json::json!({"members": ["member-0", "member-1"], "combine": "min", "k": 1.0}));
    assert!(!run_dir.join("rm").join(stage::MEMBERS_DIR).exists(), "staged members are cleaned up");
    let model = RewardModel::load(&final_dir, Device::Cpu)?;
    let texts: Vec<(&str, &str)> = rows.iter().map(|c| (c.prompt.as_str(), c.chosen.as_str())).collect();
    let rows: Vec<Vec<i64>> =
        tokenize_rows(model.tokenizer(), &texts, usize::MAX)?.into_iter().map(|(r, _)| r).collect();
    let per_member: Vec<Vec<f32>> = model
        .members()
        .iter()
        .map(|m| {
            let n = m.config().reward_normalization.expect("normalised");
            score_rows(m, &rows, 8).map(|raw| raw.iter().map(|&r| n.apply(r as f64) as f32).collect())
        })
        .collect::<Result<_, _>>()?;
    assert_ne!(per_member[0], per_member[1], "members share weights");
    let combined = model.score(&texts)?;
    for (i, c) in combined.iter().enumerate() {
        assert!((c - per_member[0][i].min(per_member[1][i])).abs() < 1e-5);
    }
    let metrics = metrics(&run_dir)?;
    assert!(metric(&metrics, "member-1/loss").is_some() && metric(&metrics, "member-0/norm_scale").is_some());

    // Bootstrap members: the same seeds on resampled preferences train other weights.
    config.ensemble.bootstrap = true;
    let resampled_dir = tmp.path().join("bootstrap");
    train(&config, &resampled_dir)?;
    let resampled = RewardModel::load(resampled_dir.join("rm/final"), Device::Cpu)?;
    let raw = |m: &rlhf_model::SequenceClassifier| score_rows(m, &rows, 8);
    assert_ne!(raw(&resampled.members()[0])?, raw(&model.members()[0])?, "member 0 saw the same data");
    Ok(())
}

#[test]
fn rankings_train_on_all_their_pairs() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"));
    let comparisons = common::easy_comparisons(120);
    // Rankings of three responses: chosen, a neutral one and the rejected one, best first, shuffled.
    let rankings: Vec<Ranking> = comparisons
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let neutral = c.chosen.replace("Sure! ", "");
            let mut responses = vec![c.chosen.clone(), neutral, c.rejected.clone()];
            let mut ranking = vec![0u32, 1, 2];
            responses.rotate_left(i % 3);
            ranking.iter_mut().for_each(|r| *r = (*r + 3 - (i % 3) as u32) % 3);
            Ranking { id: c.id.clone(), prompt: c.prompt.clone(), responses, ranking, ..Ranking::default() }
        })
        .collect();
    let path = tmp.path().join("rankings.parquet");
    write_records(&path, &rankings)?;
    let mut config = common::fast_config(&policy, Path::new(""), 40);
    config.data.comparisons = String::new();
    config.data.rankings = path.display().to_string();
    let run_dir = tmp.path().join("run");
    let summary = &train(&config, &run_dir)?[0];
    let metrics = metrics(&run_dir)?;
    let preferences = metric(&metrics, "data/train_preferences").context("train_preferences")?;
    assert_eq!(metric(&metrics, "data/train_pairs"), Some(3.0 * preferences));
    let (before, after) = (summary.eval_before.unwrap(), summary.eval_after.unwrap());
    ensure!(after.accuracy > before.accuracy + 0.2, "accuracy {} -> {}", before.accuracy, after.accuracy);
    Ok(())
}

#[test]
fn identical_pairs_are_dropped_and_counted() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"));
    let mut rows = common::easy_comparisons(30);
    for row in rows.iter_mut().step_by(10) {
        row.rejected = row.chosen.clone();
    }
    let comparisons = tmp.path().join("comparisons.parquet");
    write_records(&comparisons, &rows)?;
    let run_dir = tmp.path().join("run");
    train(&common::fast_config(&policy, &comparisons, 2), &run_dir)?;
    let metrics = metrics(&run_dir)?;
    assert_eq!(metric(&metrics, "data/identical_pairs_dropped"), Some(3.0));
    let kept = metric(&metrics, "data/train_pairs").unwrap() + metric(&metrics, "data/heldout_pairs").unwrap();
    assert_eq!(kept, 27.0);
    Ok(())
}

/// Runs the stage expecting an error; nothing may have been written into the run directory.
fn refused(config: &RewardConfig, run_dir: &Path) -> String {
    let err = run(config, run_dir, &common::cpu()).expect_err("bad input was accepted").to_string();
    assert!(!run_dir.join("rm").exists(), "{err}: the stage wrote into the run directory");
    err
}

#[test]
fn bad_input_is_refused_before_anything_is_written() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"));
    let run_dir = tmp.path().join("run");

    let mut rows: Vec<Comparison> = common::easy_comparisons(10);
    rows[4].chosen = "  ".into();
    let empty = tmp.path().join("empty.parquet");
    write_records(&empty, &rows)?;
    let err = refused(&common::fast_config(&policy, &empty, 2), &run_dir);
    assert_eq!(err, format!("{} row 4: \"chosen\" is empty", empty.display()));

    let good = tmp.path().join("good.parquet");
    write_records(&good, &common::easy_comparisons(10))?;
    let mismatched = common::tiny_policy_with(&tmp.path().join("small-vocab"), Some(200));
    let err = refused(&common::fast_config(&mismatched, &good, 2), &run_dir);
    assert!(err.starts_with("tokenizer mismatch: the tokenizer has"), "{err}");

    let err = refused(&common::fast_config(&tmp.path().join("nowhere"), &good, 2), &run_dir);
    assert!(err.contains("nowhere: policy checkpoint not found"), "{err}");

    let err = refused(&common::fast_config(&policy, &tmp.path().join("missing.parquet"), 2), &run_dir);
    assert!(err.ends_with("missing.parquet: comparisons table not found"), "{err}");
    Ok(())
}
