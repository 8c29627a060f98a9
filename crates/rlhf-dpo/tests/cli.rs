//! The `rlhf-dpo` binary: a run killed with SIGKILL mid-training (offline round, then an online one)
//! resumes to bit-identical weights, bad input fails with one `error:` line and writes nothing,
//! relative paths resolve against the run directory, and the shipped config is the default.

mod common;

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use rlhf_dpo::DpoConfig;
use rlhf_train::testing::{assert_kill_resume_identical, assert_rejected, stage_command};

fn dpo(config: &Path, run_dir: &Path, extra: &[&str]) -> Command {
    stage_command(env!("CARGO_BIN_EXE_rlhf-dpo"), config, run_dir, extra)
}

#[test]
fn a_killed_run_resumes_to_the_same_weights() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"), 6);
    let data = common::write_comparisons(&tmp.path().join("comparisons.parquet"), &common::comparisons(120));
    let mut config = common::config(&policy, &data);
    config.train.max_steps = 40;
    config.train.checkpoint_every = 10;
    config.train.eval_every = 20;
    config.online.rounds = 1;
    config.online.prompts_per_round = 16;
    assert_kill_resume_identical(tmp.path(), "dpo", &config, |file, run_dir| dpo(file, run_dir, &[]))?;
    Ok(())
}

#[test]
fn bad_input_is_one_error_line_and_writes_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let run = tmp.path().join("run");
    let stage_dir = run.join("dpo");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/dpo.toml");
    assert_rejected(&mut dpo(&shipped, &run, &[]), "sft/final", &stage_dir)?;
    assert_rejected(&mut dpo(&shipped, &run, &["--set", "loss.betta=1"]), "unknown field `betta`", &stage_dir)?;
    assert_rejected(&mut dpo(&shipped, &run, &["--set", "loss.label_smoothing=0.7"]), "label_smoothing", &stage_dir)?;

    // Relative paths resolve against the run directory: the policy is found, the comparisons are not.
    common::tiny_policy(&run.join("sft/final"), 1);
    assert_rejected(&mut dpo(&shipped, &run, &[]), "data/comparisons.parquet", &stage_dir)?;
    std::fs::create_dir_all(run.join("data"))?;
    std::fs::write(run.join("data/comparisons.parquet"), "not parquet")?;
    assert_rejected(&mut dpo(&shipped, &run, &[]), "comparisons.parquet", &stage_dir)?;
    let prompts_only =
        ["--set", "data.comparisons=", "--set", "online.rounds=1", "--set", "online.prompts=missing.parquet"];
    assert_rejected(&mut dpo(&shipped, &run, &prompts_only), "missing.parquet", &stage_dir)?;
    Ok(())
}

#[test]
fn the_shipped_config_is_the_default() -> Result<()> {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/dpo.toml");
    let config: DpoConfig = rlhf_data::config::load_config(Some(&shipped), &[])?;
    assert_eq!(config.gold_judge, "gold", "the shipped config is for the embedded task");
    assert_eq!(DpoConfig { gold_judge: String::new(), ..config }, DpoConfig::default());
    insta::assert_snapshot!("default_config", toml::to_string_pretty(&DpoConfig::default())?);
    Ok(())
}
