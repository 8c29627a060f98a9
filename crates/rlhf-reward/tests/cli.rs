//! The `rlhf-reward` binary: `score` keeps every column, `train` runs from the shipped config with
//! paths relative to the run directory and skips a finished run, bad input fails with one `error:`
//! line and writes nothing, and the shipped config is the built-in default.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use anyhow::{ensure, Result};
use arrow::array::{AsArray, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Float32Type, UInt32Type};
use rlhf_data::{append_column, write_records, Demonstration, TableReader};
use rlhf_reward::{RewardConfig, RewardModel};
use rlhf_train::testing::assert_kill_resume_identical;

/// The binary with `args`, on the CPU.
fn reward(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rlhf-reward"));
    cmd.args(args).args(["--device", "cpu"]).env("RUST_LOG", "warn");
    cmd
}

fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails unless the command failed with exactly one `error: ...` line, its last; returns it.
fn one_error_line(out: &Output) -> Result<String> {
    ensure!(!out.status.success(), "the command succeeded");
    let text = stderr(out);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
    ensure!(errors.len() == 1 && text.trim_end().ends_with(errors[0]), "stderr: {text}");
    Ok(errors[0].to_string())
}

fn shipped_config() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/reward.toml")
}

#[test]
fn score_adds_a_reward_column_and_keeps_the_others() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model_dir = common::fixture("llama_rm");
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model_dir.join("expected.json"))?)?;
    let texts: Vec<(String, String)> = serde_json::from_value(expected["texts"].clone())?;
    let rows: Vec<Demonstration> = texts
        .iter()
        .enumerate()
        .map(|(i, (p, r))| Demonstration {
            id: format!("d{i}"),
            prompt: p.clone(),
            response: r.clone(),
            prompt_messages: None,
        })
        .collect();
    let (plain, with_sample, input) =
        (tmp.path().join("plain.parquet"), tmp.path().join("sample.parquet"), tmp.path().join("in.parquet"));
    write_records(&plain, &rows)?;
    let samples = UInt32Array::from_iter_values((0..rows.len() as u32).map(|i| i % 2));
    append_column(&plain, &with_sample, Field::new("sample", DataType::UInt32, false), Arc::new(samples))?;
    let notes = StringArray::from(vec![Some("a"), None, Some("c"), Some("d"), None]);
    append_column(&with_sample, &input, Field::new("note", DataType::Utf8, true), Arc::new(notes.clone()))?;

    let out_path = tmp.path().join("out.parquet");
    let out = reward(&["score", "--model", s(&model_dir), "--data", s(&input), "--out", s(&out_path)]).output()?;
    ensure!(out.status.success(), "{}", stderr(&out));

    let input_schema = TableReader::open(&input)?.schema().clone();
    let reader = TableReader::open(&out_path)?;
    let names: Vec<String> = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["id", "prompt", "response", "prompt_messages", "sample", "note", "reward"]);
    assert_eq!(reader.schema().metadata(), input_schema.metadata(), "the schema tag is kept");
    let batch = reader.into_iter().next().unwrap()?;
    assert_eq!(batch.column_by_name("note").unwrap().as_string::<i32>(), &notes);
    assert_eq!(batch.column_by_name("sample").unwrap().as_primitive::<UInt32Type>().values(), &[0, 1, 0, 1, 0]);
    let got = batch.column_by_name("reward").unwrap().as_primitive::<Float32Type>().values().to_vec();
    let want = RewardModel::load(&model_dir, tch::Device::Cpu)?.score(&texts)?;
    assert_eq!(got, want);

    // A table without a response column is one clear error, and no output appears.
    let (no_response, missing) = (tmp.path().join("prompts.parquet"), tmp.path().join("missing.parquet"));
    write_records(&no_response, &[rlhf_data::Prompt { id: "p".into(), prompt: "hi".into(), prompt_messages: None }])?;
    let out = reward(&["score", "--model", s(&model_dir), "--data", s(&no_response), "--out", s(&missing)]).output()?;
    let err = one_error_line(&out)?;
    assert!(err.ends_with("prompts.parquet: missing column \"response\", expected utf8"), "{err}");
    assert!(!missing.exists());
    Ok(())
}

#[test]
fn train_runs_from_the_shipped_config_in_a_run_directory() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let run_dir = tmp.path().join("run");
    common::tiny_policy(&run_dir.join("sft/final"));
    write_records(run_dir.join("data/comparisons.parquet"), &common::easy_comparisons(40))?;
    let config = shipped_config();
    let sets = ["--set", "train.max_steps=3", "--set", "train.threads=1", "--set", "train.warmup_steps=1"];
    let out = reward(&[&["--config", s(&config), "--run-dir", s(&run_dir)], &sets[..]].concat()).output()?;
    ensure!(out.status.success(), "{}", stderr(&out));
    assert!(run_dir.join("rm/final/model.safetensors").is_file());
    assert!(run_dir.join("rm/final/tokenizer.json").is_file());
    let resolved: RewardConfig = toml::from_str(&std::fs::read_to_string(run_dir.join("rm/config.toml"))?)?;
    assert_eq!(resolved.train.max_steps, 3);
    assert_eq!(resolved.model.policy, Path::new("sft/final"), "paths stay relative to the run directory");

    let out = reward(&["train", "--config", s(&config), "--run-dir", s(&run_dir)]).env("RUST_LOG", "info").output()?;
    ensure!(out.status.success() && stderr(&out).contains("already exists; nothing to do"), "{}", stderr(&out));
    Ok(())
}

#[test]
fn a_killed_run_resumes_to_the_same_weights() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("comparisons.parquet");
    write_records(&data, &common::easy_comparisons(120))?;
    let policy = common::tiny_policy(&tmp.path().join("policy"));
    let mut config = common::fast_config(&policy, &data, 60);
    config.train.checkpoint_every = 5;
    config.train.eval_every = 20;
    let train = |file: &Path, run_dir: &Path| reward(&["--config", s(file), "--run-dir", s(run_dir)]);
    assert_kill_resume_identical(tmp.path(), "rm", &config, train)?;
    Ok(())
}

#[test]
fn bad_input_is_one_error_line_and_nothing_written() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let run_dir = tmp.path().join("run");
    common::tiny_policy(&run_dir.join("sft/final"));
    let mut rows = common::easy_comparisons(8);
    rows[6].rejected = String::new();
    write_records(run_dir.join("data/comparisons.parquet"), &rows)?;
    let err = one_error_line(&reward(&["--run-dir", s(&run_dir)]).output()?)?;
    let table = run_dir.join("data/comparisons.parquet");
    assert_eq!(err, format!("error: {} row 6: \"rejected\" is empty", table.display()));
    assert!(!run_dir.join("rm").exists());

    let err = one_error_line(&reward(&["--run-dir", s(&run_dir), "--set", "train.lrr=1"]).output()?)?;
    assert!(err.contains("unknown field `lrr`"), "{err}");
    Ok(())
}

#[test]
fn the_shipped_config_is_the_default() -> Result<()> {
    let shipped: RewardConfig = rlhf_data::config::load_config(Some(&shipped_config()), &[])?;
    assert_eq!(shipped.gold_judge, "gold", "the shipped config is for the embedded task");
    assert_eq!(RewardConfig { gold_judge: String::new(), ..shipped }, RewardConfig::default());
    insta::assert_snapshot!("default_config", toml::to_string_pretty(&RewardConfig::default())?);
    Ok(())
}
