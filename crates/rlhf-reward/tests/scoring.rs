//! Scoring end to end against transformers: token rows of rlhf-model's `*_seqcls` fixtures through
//! the batched, length-sorted scorer, and texts through `RewardModel` (tokenizer, batching,
//! normalisation) on this crate's fixtures; ensembles combine their members' normalised rewards.

mod common;

use std::path::Path;

use anyhow::{Context, Result};
use rlhf_model::checkpoint::read_safetensors;
use rlhf_model::reward::{score_rows, EnsembleManifest, ENSEMBLE_FILE};
use rlhf_model::SequenceClassifier;
use rlhf_reward::data::tokenize_rows;
use rlhf_reward::model::write_manifest;
use rlhf_reward::{Combine, RewardModel};
use serde::Deserialize;
use tch::{Device, Kind};

const TOL: f32 = 1e-4;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn token_rows_score_like_transformers() -> Result<()> {
    for name in ["gpt2_seqcls", "llama_seqcls", "qwen2_seqcls"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rlhf-model/tests/fixtures").join(name);
        let inputs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("inputs.json"))?)?;
        let rows: Vec<Vec<i64>> = serde_json::from_value(inputs["rows"].clone())?;
        let expected = Vec::<f32>::try_from(&read_safetensors(&dir.join("expected.safetensors"))?["right.scores"])?;
        let model = SequenceClassifier::from_pretrained(&dir, Device::Cpu, Kind::Float)?;
        for batch_size in [1, 2, 8] {
            let got = score_rows(&model, &rows, batch_size)?;
            let diff = max_diff(&got, &expected);
            assert!(diff <= TOL, "{name} batch {batch_size}: max |diff| {diff}");
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Expected {
    texts: Vec<(String, String)>,
    rows: Vec<Vec<i64>>,
    raw_scores: Vec<f32>,
    normalization: Normalization,
}

#[derive(Deserialize)]
struct Normalization {
    shift: f32,
    scale: f32,
}

fn expected(dir: &Path) -> Result<Expected> {
    Ok(serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json"))?)?)
}

#[test]
fn texts_score_like_transformers() -> Result<()> {
    for name in ["llama_rm", "gpt2_rm"] {
        let dir = common::fixture(name);
        let want = expected(&dir)?;
        let mut model = RewardModel::load(&dir, Device::Cpu).context(name)?;
        let rows: Vec<Vec<i64>> =
            tokenize_rows(model.tokenizer(), &want.texts, usize::MAX)?.into_iter().map(|(row, _)| row).collect();
        assert_eq!(rows, want.rows, "{name}: tokenization differs from transformers");
        let n = &want.normalization;
        let normalised: Vec<f32> = want.raw_scores.iter().map(|r| (r - n.shift) / n.scale).collect();
        for batch_size in [1, 2, 64] {
            model.batch_size = batch_size;
            let diff = max_diff(&model.score(&want.texts)?, &normalised);
            assert!(diff <= TOL, "{name} batch {batch_size}: max |diff| {diff}");
        }
        assert!(max_diff(&model.score_tokens(&rows)?, &normalised) <= TOL);
    }
    Ok(())
}

/// Copies a checkpoint directory, setting its `reward_normalization`.
fn member(from: &Path, to: &Path, shift: f64, scale: f64) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        std::fs::copy(&path, to.join(path.file_name().unwrap()))?;
    }
    let config_path = to.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path)?)?;
    config["reward_normalization"] = serde_json::json!({"shift": shift, "scale": scale});
    std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;
    Ok(())
}

#[test]
fn ensembles_combine_normalised_member_rewards() -> Result<()> {
    let source = common::fixture("llama_rm");
    let want = expected(&source)?;
    let tmp = tempfile::tempdir()?;
    member(&source, &tmp.path().join("member-0"), 0.0, 1.0)?;
    member(&source, &tmp.path().join("member-1"), 1.0, 0.5)?;
    for (combine, k) in [(Combine::Mean, 0.0), (Combine::Min, 0.0), (Combine::MeanMinusStd, 2.0)] {
        let manifest = EnsembleManifest { members: vec!["member-0".into(), "member-1".into()], combine, k };
        write_manifest(&tmp.path().join(ENSEMBLE_FILE), &manifest)?;
        let model = RewardModel::load(tmp.path(), Device::Cpu)?;
        assert_eq!(model.members().len(), 2);
        let got = model.score(&want.texts)?;
        let expected: Vec<f32> = want
            .raw_scores
            .iter()
            .map(|&r| {
                let (a, b) = (r, (r - 1.0) / 0.5);
                match combine {
                    Combine::Mean => (a + b) / 2.0,
                    Combine::Min => a.min(b),
                    Combine::MeanMinusStd => (a + b) / 2.0 - k as f32 * (a - b).abs() / 2.0,
                }
            })
            .collect();
        let diff = max_diff(&got, &expected);
        assert!(diff <= TOL, "{combine:?}: max |diff| {diff}");
    }
    Ok(())
}

#[test]
fn not_a_reward_model_is_one_clear_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let err = RewardModel::load(tmp.path(), Device::Cpu).err().context("an empty directory loaded")?.to_string();
    assert!(err.ends_with("not a reward model: no config.json or ensemble.json"), "{err}");
    Ok(())
}
