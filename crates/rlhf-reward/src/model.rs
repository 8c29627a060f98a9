//! A trained reward model with its tokenizer: [`RewardModel`] scores `(prompt, response)` texts.
//!
//! A reward-model directory is one Hugging Face `*ForSequenceClassification` checkpoint
//! (`config.json` with `num_labels = 1`, `pad_token_id` and our `reward_normalization`,
//! `model.safetensors`, tokenizer files) or an ensemble: `ensemble.json` naming member checkpoint
//! directories inside it (`member-0/`, ...) and how their normalised rewards combine. Loading,
//! combining and batched, length-sorted scoring are rlhf-model's ([`rlhf_model::reward`]); this
//! adds the tokenizer and writes the ensemble manifest.

use std::path::Path;

use rlhf_model::reward::{reward_members, EnsembleManifest};
use rlhf_model::{RewardEnsemble, SequenceClassifier, Tokenizer};
use tch::{Device, Kind};

use crate::data::tokenize_rows;
use crate::error::Result;

/// Rows per scoring batch unless set otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 64;

/// A trained reward model (one checkpoint or an ensemble) with its tokenizer.
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

    /// Normalised rewards of `(prompt, response)` pairs, combined over the members. Rows
    /// `tokens(prompt) ++ tokens(response) ++ [eos]` longer than the model's positions are cut.
    pub fn score<P, R>(&self, pairs: &[(P, R)]) -> Result<Vec<f32>>
    where
        P: AsRef<str> + Sync,
        R: AsRef<str> + Sync,
    {
        let rows: Vec<Vec<i64>> =
            tokenize_rows(&self.tokenizer, pairs, self.max_len)?.into_iter().map(|(row, _)| row).collect();
        self.score_tokens(&rows)
    }

    /// Normalised rewards of token rows `tokens(prompt) ++ tokens(response) ++ [eos]`, combined.
    pub fn score_tokens(&self, rows: &[Vec<i64>]) -> Result<Vec<f32>> {
        Ok(self.ensemble.score_rows(rows, self.batch_size)?)
    }
}

/// Writes an ensemble manifest (`ensemble.json`) to `path`.
pub fn write_manifest(path: &Path, manifest: &EnsembleManifest) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(manifest).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}
