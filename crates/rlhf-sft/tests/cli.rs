//! The `rlhf-sft` binary: a run killed with SIGKILL mid-training resumes to bit-identical weights,
//! bad input fails with one `error:` line and writes nothing, and the shipped configs are the defaults.

mod common;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use rlhf_data::config::write_config;
use rlhf_model::checkpoint::read_safetensors;
use rlhf_sft::{BaseConfig, SftConfig};
use rlhf_train::testing::{assert_kill_resume_identical, assert_rejected, stage_command};

fn sft(config: &Path, run_dir: &Path, extra: &[&str]) -> Command {
    stage_command(env!("CARGO_BIN_EXE_rlhf-sft"), config, run_dir, extra)
}

#[test]
fn a_killed_run_resumes_to_the_same_weights() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = common::tiny_base(&tmp.path().join("base"));
    let (demos, heldout) = common::small_task_files(&tmp.path().join("data"));
    let mut config = common::sft_config(&base, &demos, &heldout, 60);
    config.train.checkpoint_every = 5;
    config.train.eval_every = 20;
    assert_kill_resume_identical(tmp.path(), "sft", &config, |file, run_dir| sft(file, run_dir, &[]))?;
    Ok(())
}

#[test]
fn bad_input_is_one_error_line_and_writes_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = common::tiny_base(&tmp.path().join("base"));
    let run = tmp.path().join("run");
    let stage_dir = run.join("sft");
    let config_path = tmp.path().join("sft.toml");
    let (demos, heldout) = common::small_task_files(&tmp.path().join("data"));
    write_config(&common::sft_config(&base, &demos, &heldout, 5), &config_path)?;

    assert_rejected(&mut sft(&config_path, &run, &["--set", "model.base=/no/such/base"]), "/no/such/base", &stage_dir)?;
    assert_rejected(&mut sft(&config_path, &run, &["--set", "train.lrr=1"]), "unknown field `lrr`", &stage_dir)?;
    assert_rejected(
        &mut sft(&config_path, &run, &["--dtype", "f16"]),
        "training in f16 needs loss scaling",
        &stage_dir,
    )?;
    assert_rejected(&mut sft(&tmp.path().join("missing.toml"), &run, &[]), "missing.toml", &stage_dir)?;

    // A demonstrations file that is another kind of table, and one that does not exist.
    let comparisons = tmp.path().join("comparisons.parquet");
    let row = rlhf_data::Comparison {
        id: "1".into(),
        prompt: "p".into(),
        chosen: "a".into(),
        rejected: "b".into(),
        ..Default::default()
    };
    rlhf_data::write_records(&comparisons, &[row])?;
    let set = format!("data.demonstrations={}", comparisons.display());
    assert_rejected(&mut sft(&config_path, &run, &["--set", &set]), "comparisons.parquet", &stage_dir)?;
    assert_rejected(
        &mut sft(&config_path, &run, &["--set", "data.demonstrations=/no/demos.parquet"]),
        "/no/demos.parquet",
        &stage_dir,
    )?;

    // A checkpoint whose weights do not fit its config.json.
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken)?;
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(base.join(file), broken.join(file))?;
    }
    let mut tensors = read_safetensors(&base.join("model.safetensors"))?;
    let norm = tensors.get_mut("model.norm.weight").context("model.norm.weight")?;
    *norm = norm.narrow(0, 0, 4);
    rlhf_model::checkpoint::write_safetensors(&broken.join("model.safetensors"), &tensors)?;
    let set = format!("model.base={}", broken.display());
    assert_rejected(&mut sft(&config_path, &run, &["--set", &set]), "model.norm.weight", &stage_dir)?;

    // A tokenizer with more tokens than the model's embedding has rows.
    let small = tmp.path().join("small-vocab");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(base.join("config.json"))?)?;
    config["vocab_size"] = 100.into();
    std::fs::create_dir(&small)?;
    std::fs::write(small.join("config.json"), config.to_string())?;
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(base.join(file), small.join(file))?;
    }
    let mut tensors = read_safetensors(&base.join("model.safetensors"))?;
    let embed = tensors.get_mut("model.embed_tokens.weight").context("embed_tokens")?;
    *embed = embed.narrow(0, 0, 100);
    rlhf_model::checkpoint::write_safetensors(&small.join("model.safetensors"), &tensors)?;
    let set = format!("model.base={}", small.display());
    assert_rejected(&mut sft(&config_path, &run, &["--set", &set]), "tokenizer mismatch", &stage_dir)?;
    Ok(())
}

#[test]
fn the_shipped_configs_are_the_defaults() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let sft: SftConfig = rlhf_data::config::load_config(Some(&root.join("sft.toml")), &[])?;
    assert_eq!(sft, SftConfig::default());
    let base: BaseConfig = rlhf_data::config::load_config(Some(&root.join("base.toml")), &[])?;
    assert_eq!(base, BaseConfig::default());
    insta::assert_snapshot!("default_sft_config", toml::to_string_pretty(&sft)?);
    insta::assert_snapshot!("default_base_config", toml::to_string_pretty(&base)?);
    Ok(())
}
