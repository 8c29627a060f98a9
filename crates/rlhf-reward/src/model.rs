//! Loading and using a trained reward model: [`RewardModel`], one checkpoint or an ensemble.
//!
//! A reward-model directory is either a Hugging Face `*ForSequenceClassification` checkpoint
//! (`config.json` with `num_labels = 1`, `pad_token_id` and our `reward_normalization`,
//! `model.safetensors`, tokenizer files), or an ensemble: `ensemble.json` naming member
//! checkpoint directories inside it (`member-0/`, `member-1/`, ...) and how their rewards combine.
//! Each member's normalisation is applied before combining. Scoring is batched, rows sorted by
//! length to limit padding, under `no_grad`.

use std::path::Path;

use rlhf_model::{build_batch, PaddingSide, SequenceClassifier, Tokenizer};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use crate::config::Combine;
use crate::data::tokenize_rows;
use crate::error::{Error, Result};

/// The file that makes a directory an ensemble.
pub const ENSEMBLE_FILE: &str = "ensemble.json";
/// Rows per scoring batch unless set otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 64;

/// `ensemble.json`: member directories (relative to the ensemble directory) and the combination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleManifest {
    pub members: Vec<String>,
    pub combine: Combine,
    /// `k` of `mean_minus_std`.
    pub k: f64,
}

/// Raw scores of token rows (one per row, in input order), in batches of `batch_size` rows sorted
/// by length, without gradients. Rows are right-padded with the model's `pad_token_id`; a model
/// without one scores rows one at a time, like transformers.
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

/// `mean`, `min` or `mean − k·std` (population std) of one item's member rewards.
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

/// A trained reward model (one checkpoint or an ensemble) with its tokenizer.
pub struct RewardModel {
    members: Vec<SequenceClassifier>,
    tokenizer: Tokenizer,
    combine: Combine,
    k: f64,
    /// Rows per scoring batch.
    pub batch_size: usize,
}

impl RewardModel {
    /// Loads a reward-model directory (see the module doc) in f32 on `device`.
    pub fn load(dir: impl AsRef<Path>, device: Device) -> Result<Self> {
        Self::load_as(dir, device, Kind::Float)
    }

    /// Loads a reward-model directory with weights of `kind`.
    pub fn load_as(dir: impl AsRef<Path>, device: Device, kind: Kind) -> Result<Self> {
        let dir = dir.as_ref();
        let (member_dirs, combine, k) = match read_manifest(dir)? {
            Some(m) => (m.members.iter().map(|name| dir.join(name)).collect(), m.combine, m.k),
            None => (vec![dir.to_path_buf()], Combine::Mean, 0.0),
        };
        let tokenizer = Tokenizer::from_dir(&member_dirs[0])?;
        let members = member_dirs
            .iter()
            .map(|d| {
                let model = SequenceClassifier::from_pretrained(d, device, kind)?;
                tokenizer.check_fits_embedding(model.config().vocab_size())?;
                Ok(model)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RewardModel { members, tokenizer, combine, k, batch_size: DEFAULT_BATCH_SIZE })
    }

    /// The members (one for a single checkpoint).
    pub fn members(&self) -> &[SequenceClassifier] {
        &self.members
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Normalised rewards of `(prompt, response)` pairs, combined over the members.
    pub fn score<P, R>(&self, pairs: &[(P, R)]) -> Result<Vec<f32>>
    where
        P: AsRef<str> + Sync,
        R: AsRef<str> + Sync,
    {
        Ok(self.combined(&self.member_scores(pairs)?))
    }

    /// Normalised rewards of token rows `tokens(prompt) ++ tokens(response) ++ [eos]`, combined.
    pub fn score_tokens(&self, rows: &[Vec<i64>]) -> Result<Vec<f32>> {
        Ok(self.combined(&self.member_token_scores(rows)?))
    }

    /// Each member's normalised rewards of `(prompt, response)` pairs: `[member][pair]`.
    pub fn member_scores<P, R>(&self, pairs: &[(P, R)]) -> Result<Vec<Vec<f32>>>
    where
        P: AsRef<str> + Sync,
        R: AsRef<str> + Sync,
    {
        let max_len = self.members.iter().map(|m| m.config().max_positions()).min().unwrap_or(i64::MAX);
        let rows: Vec<Vec<i64>> =
            tokenize_rows(&self.tokenizer, pairs, max_len as usize)?.into_iter().map(|(row, _)| row).collect();
        self.member_token_scores(&rows)
    }

    /// Each member's normalised rewards of token rows: `[member][row]`.
    pub fn member_token_scores(&self, rows: &[Vec<i64>]) -> Result<Vec<Vec<f32>>> {
        self.members
            .iter()
            .map(|m| {
                let raw = score_rows(m, rows, self.batch_size)?;
                Ok(match m.config().reward_normalization {
                    Some(n) => raw.into_iter().map(|r| n.apply(r as f64) as f32).collect(),
                    None => raw,
                })
            })
            .collect()
    }

    fn combined(&self, per_member: &[Vec<f32>]) -> Vec<f32> {
        let n = per_member.first().map_or(0, Vec::len);
        (0..n)
            .map(|i| {
                let rewards: Vec<f32> = per_member.iter().map(|m| m[i]).collect();
                combine(&rewards, self.combine, self.k)
            })
            .collect()
    }
}

/// The ensemble manifest of `dir`, if it is an ensemble.
pub fn read_manifest(dir: &Path) -> Result<Option<EnsembleManifest>> {
    let path = dir.join(ENSEMBLE_FILE);
    if !path.is_file() {
        if !dir.join(rlhf_model::checkpoint::CONFIG_FILE).is_file() {
            return Err(Error::file(dir, format!("not a reward model: no config.json or {ENSEMBLE_FILE}")));
        }
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, e.to_string()))?;
    let manifest: EnsembleManifest = serde_json::from_str(&text).map_err(|e| Error::file(&path, e.to_string()))?;
    if manifest.members.is_empty() {
        return Err(Error::file(&path, "lists no members"));
    }
    Ok(Some(manifest))
}

/// Writes an ensemble manifest to `path`.
pub fn write_manifest(path: &Path, manifest: &EnsembleManifest) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(manifest).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations() {
        let r = [1.0, 3.0, 2.0];
        assert_eq!(combine(&r, Combine::Mean, 1.0), 2.0);
        assert_eq!(combine(&r, Combine::Min, 1.0), 1.0);
        let std = (2.0f64 / 3.0).sqrt();
        assert!((combine(&r, Combine::MeanMinusStd, 0.5) as f64 - (2.0 - 0.5 * std)).abs() < 1e-6);
        assert_eq!(combine(&[4.0], Combine::MeanMinusStd, 2.0), 4.0);
    }
}
