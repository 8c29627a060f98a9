//! Scoring text with a trained reward-model directory: one `*ForSequenceClassification`
//! checkpoint, or an ensemble — `ensemble.json` naming member checkpoint directories inside it and
//! how their rewards combine (the layout `rlhf-reward` writes).
//!
//! [`RewardModel`] is the one scorer every stage uses (PPO, online DPO, evaluation, `rlhf-reward
//! score`): the members with their tokenizer, rows `tokens(prompt) ++ tokens(response) ++ [eos]`
//! cut to the members' positions, each member's `reward_normalization` applied before combining.
//! Scoring is batched, rows sorted by length to limit padding, under `no_grad`.

use crate::build_batch;
use crate::error::{Error, Result};
use crate::heads::SequenceClassifier;
use crate::logprobs::PaddingSide;
use crate::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

/// The file that makes a directory an ensemble.
pub const ENSEMBLE_FILE: &str = "ensemble.json";

/// How several rewards of one item become one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// The mean.
    #[default]
    Mean,
    /// The most pessimistic one.
    Min,
    /// `mean − k·std` (population std): uncertainty-penalised.
    MeanMinusStd,
}

/// `ensemble.json`: member directories (relative to the ensemble directory) and the combination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleManifest {
    pub members: Vec<String>,
    pub combine: Combine,
    /// `k` of `mean_minus_std`.
    pub k: f64,
}

/// `mean`, `min` or `mean − k·std` of one item's rewards.
pub fn combine(rewards: &[f32], how: Combine, k: f64) -> f32 {
    let n = rewards.len().max(1) as f64;
    let mean = rewards.iter().map(|&r| r as f64).sum::<f64>() / n;
    match how {
        Combine::Mean => mean as f32,
        Combine::Min => rewards.iter().copied().fold(f32::INFINITY, f32::min),
        Combine::MeanMinusStd => {
            let var = rewards.iter().map(|&r| (r as f64 - mean).powi(2)).sum::<f64>() / n;
            (mean - k * var.sqrt()) as f32
        }
    }
}

/// The member checkpoint directories of a reward-model directory and how they combine (a single
/// checkpoint is a one-member mean).
pub fn reward_members(dir: &Path) -> Result<(Vec<PathBuf>, Combine, f64)> {
    let path = dir.join(ENSEMBLE_FILE);
    if !path.is_file() {
        if !dir.join(crate::checkpoint::CONFIG_FILE).is_file() {
            return Err(Error::Config {
                path: Some(dir.to_path_buf()),
                message: format!("not a reward model: no config.json or {ENSEMBLE_FILE}"),
            });
        }
        return Ok((vec![dir.to_path_buf()], Combine::Mean, 0.0));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let manifest: EnsembleManifest =
        serde_json::from_str(&text).map_err(|e| Error::Json { path: path.clone(), source: e })?;
    if manifest.members.is_empty() {
        return Err(Error::Config { path: Some(path), message: "lists no members".into() });
    }
    Ok((manifest.members.iter().map(|m| dir.join(m)).collect(), manifest.combine, manifest.k))
}

/// A loaded reward-model directory: its members and their combination.
#[derive(Debug)]
pub struct RewardEnsemble {
    pub members: Vec<SequenceClassifier>,
    pub combine: Combine,
    pub k: f64,
}

impl RewardEnsemble {
    /// Loads every member of the reward-model directory `dir` (see the module doc).
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self> {
        let (dirs, combine, k) = reward_members(dir)?;
        let members =
            dirs.iter().map(|d| SequenceClassifier::from_pretrained(d, device, kind)).collect::<Result<_>>()?;
        Ok(RewardEnsemble { members, combine, k })
    }

    /// Normalised, combined rewards of token rows (`tokens(prompt) ++ tokens(response) ++ [eos]`).
    pub fn score_rows(&self, rows: &[Vec<i64>], batch_size: usize) -> Result<Vec<f32>> {
        let per_member = self
            .members
            .iter()
            .map(|m| {
                let raw = score_rows(m, rows, batch_size)?;
                Ok(match m.config().reward_normalization {
                    Some(n) => raw.into_iter().map(|r| n.apply(r as f64) as f32).collect(),
                    None => raw,
                })
            })
            .collect::<Result<Vec<Vec<f32>>>>()?;
        Ok((0..rows.len())
            .map(|i| combine(&per_member.iter().map(|m| m[i]).collect::<Vec<_>>(), self.combine, self.k))
            .collect())
    }
}

/// Rows per scoring batch unless set otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 64;

/// A reward-model directory (one checkpoint or an ensemble) with its tokenizer, ready to score
/// `(prompt, response)` texts.
pub struct RewardModel {
    ensemble: RewardEnsemble,
    tokenizer: Tokenizer,
    max_len: usize,
    /// Rows per scoring batch.
    pub batch_size: usize,
}

impl RewardModel {
    /// Loads a reward-model directory (see the module doc) in f32 on `device`.
    pub fn load(dir: impl AsRef<Path>, device: Device) -> Result<Self> {
        Self::load_as(dir, device, Kind::Float)
    }

    /// Loads a reward-model directory with weights of `kind`; the tokenizer is the first member's
    /// and must fit every member's embedding.
    pub fn load_as(dir: impl AsRef<Path>, device: Device, kind: Kind) -> Result<Self> {
        let dir = dir.as_ref();
        let (member_dirs, _, _) = reward_members(dir)?;
        let tokenizer = Tokenizer::from_dir(&member_dirs[0])?;
        let ensemble = RewardEnsemble::load(dir, device, kind)?;
        for member in &ensemble.members {
            tokenizer.check_fits_embedding(member.config().vocab_size())?;
        }
        let max_len = ensemble.members.iter().map(|m| m.config().max_positions()).min().unwrap_or(i64::MAX);
        Ok(RewardModel { ensemble, tokenizer, max_len: max_len as usize, batch_size: DEFAULT_BATCH_SIZE })
    }

    /// The members (one for a single checkpoint).
    pub fn members(&self) -> &[SequenceClassifier] {
        &self.ensemble.members
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// This reward model reading its inputs through the chat template (`Auto`) or not (`None`):
    /// it must match how it was trained (the reward stage's `model.chat_template`).
    pub fn with_chat_mode(mut self, mode: crate::ChatMode) -> Self {
        self.tokenizer = self.tokenizer.with_chat_mode(mode);
        self
    }

    /// The longest row scored whole (longer rows are cut to it).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Normalised rewards of `(prompt, response)` pairs, combined over the members; rows longer
    /// than [`Self::max_len`] are cut.
    pub fn score<P, R>(&self, pairs: &[(P, R)]) -> Result<Vec<f32>>
    where
        P: rlhf_data::AsPrompt + Sync,
        R: AsRef<str> + Sync,
    {
        let rows: Vec<Vec<i64>> = self
            .tokenizer
            .encode_prompt_response_batch(pairs)?
            .into_iter()
            .map(|ids| {
                let mut row = ids.concatenated();
                row.truncate(self.max_len);
                row
            })
            .collect();
        self.score_tokens(&rows)
    }

    /// Normalised rewards of token rows `tokens(prompt) ++ tokens(response) ++ [eos]`, combined.
    pub fn score_tokens(&self, rows: &[Vec<i64>]) -> Result<Vec<f32>> {
        self.ensemble.score_rows(rows, self.batch_size)
    }
}

/// Raw scores of token rows (one per row, in input order), in batches of `batch_size` rows sorted
/// by length, without gradients. A model without `pad_token_id` scores rows one at a time.
pub fn score_rows(model: &SequenceClassifier, rows: &[Vec<i64>], batch_size: usize) -> Result<Vec<f32>> {
    let pad = model.config().pad_token_id;
    let batch_size = if pad.is_some() { batch_size.max(1) } else { 1 };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(rows[i].len()));
    let mut scores = vec![0f32; rows.len()];
    tch::no_grad(|| -> Result<()> {
        for chunk in order.chunks(batch_size) {
            let batch: Vec<(&[i64], &[i64])> = chunk.iter().map(|&i| (rows[i].as_slice(), &[][..])).collect();
            let tokens = build_batch(&batch, None, pad.unwrap_or(0), PaddingSide::Right, model.device())?;
            let raw = model.forward(&tokens.input_ids, Some(&tokens.attention_mask))?;
            let raw = Vec::<f32>::try_from(raw.to_kind(Kind::Float).to_device(Device::Cpu))?;
            for (&i, r) in chunk.iter().zip(raw) {
                scores[i] = r;
            }
        }
        Ok(())
    })?;
    Ok(scores)
}
