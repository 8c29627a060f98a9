//! The sequence-level score of a rollout: reward models (each one checkpoint or an ensemble)
//! scoring `tokens(prompt) ++ tokens(response) ++ [eos]` with their own tokenizers, combined as a
//! weighted sum or an ensemble, then shaped: running normalisation, clipping, a length penalty and
//! the missing-eos penalty.

use std::path::Path;

use rlhf_model::reward::combine;
use rlhf_model::{Placement, RewardEnsemble, Tokenizer};
use serde::{Deserialize, Serialize};

use crate::config::{resolve, MissingEos, RewardSection};
use crate::error::{Error, Result};

/// One reward-model directory, loaded.
struct Scorer {
    ensemble: RewardEnsemble,
    tokenizer: Tokenizer,
    max_len: usize,
    weight: f64,
}

/// The reward models of a run.
pub struct RewardModels {
    scorers: Vec<Scorer>,
    config: RewardSection,
}

impl RewardModels {
    /// Loads every `reward.models` entry (paths relative to `run_dir`).
    pub fn load(config: &RewardSection, run_dir: &Path, placement: Placement) -> Result<Self> {
        if config.models.is_empty() {
            return Err(Error::Invalid("reward.models lists no reward model".into()));
        }
        let scorers = config
            .models
            .iter()
            .map(|entry| {
                let dir = resolve(run_dir, &entry.path);
                if !dir.is_dir() {
                    return Err(Error::File {
                        path: dir,
                        message: "reward model directory not found (set reward.models, or run `rlhf-reward` first)".into(),
                    });
                }
                let ensemble = RewardEnsemble::load(&dir, placement.device, placement.kind)?;
                let first = rlhf_model::reward::reward_members(&dir)?.0.remove(0);
                let tokenizer = Tokenizer::from_dir(&first)?;
                let max_len = ensemble.members.iter().map(|m| m.config().max_positions()).min().unwrap_or(i64::MAX);
                for member in &ensemble.members {
                    tokenizer.check_fits_embedding(member.config().vocab_size())?;
                }
                Ok(Scorer { ensemble, tokenizer, max_len: max_len as usize, weight: entry.weight })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RewardModels { scorers, config: config.clone() })
    }

    /// Combined reward-model scores of `(prompt, response)` texts (before shaping).
    pub fn score(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let per_model = self
            .scorers
            .iter()
            .map(|s| {
                let rows: Vec<Vec<i64>> = s
                    .tokenizer
                    .encode_prompt_response_batch(pairs)?
                    .into_iter()
                    .map(|ids| {
                        let mut row = ids.concatenated();
                        row.truncate(s.max_len);
                        row
                    })
                    .collect();
                Ok(s.ensemble.score_rows(&rows, self.config.batch_size)?)
            })
            .collect::<Result<Vec<Vec<f32>>>>()?;
        Ok((0..pairs.len())
            .map(|i| {
                let rewards: Vec<f32> = per_model.iter().map(|m| m[i]).collect();
                match self.config.combine.ensemble() {
                    Some(how) => combine(&rewards, how, self.config.k),
                    None => rewards.iter().zip(&self.scorers).map(|(&r, s)| r as f64 * s.weight).sum::<f64>() as f32,
                }
            })
            .collect())
    }
}

/// Running mean and variance of scores (Welford), for `reward.normalize`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunningMoments {
    pub count: f64,
    pub mean: f64,
    /// Sum of squared deviations.
    pub m2: f64,
}

impl RunningMoments {
    /// Adds a batch of values.
    pub fn update(&mut self, values: &[f32]) {
        for &v in values {
            self.count += 1.0;
            let delta = v as f64 - self.mean;
            self.mean += delta / self.count;
            self.m2 += delta * (v as f64 - self.mean);
        }
    }
    /// Population standard deviation (1 before two values were seen).
    pub fn std(&self) -> f64 {
        if self.count < 2.0 {
            1.0
        } else {
            (self.m2 / self.count).sqrt().max(1e-8)
        }
    }
}

/// One response as the shaping sees it.
#[derive(Clone, Copy, Debug)]
pub struct ResponseShape {
    /// Generated tokens, eos included.
    pub tokens: usize,
    /// Whether it ended with eos before `max_new_tokens`.
    pub has_eos: bool,
}

/// Scores after shaping: normalise (updating `moments` first), clip, length penalty, missing eos.
pub fn shape_scores(raw: &[f32], responses: &[ResponseShape], config: &RewardSection, moments: &mut RunningMoments) -> Vec<f32> {
    if config.normalize {
        moments.update(raw);
    }
    raw.iter()
        .zip(responses)
        .map(|(&score, response)| {
            let mut score = score as f64;
            if config.normalize {
                score = (score - moments.mean) / moments.std();
            }
            if config.clip > 0.0 {
                score = score.clamp(-config.clip, config.clip);
            }
            score -= config.length_penalty * response.tokens as f64;
            if !response.has_eos {
                match config.missing_eos {
                    MissingEos::Replace => score = config.missing_eos_penalty,
                    MissingEos::Add => score += config.missing_eos_penalty,
                    MissingEos::Off => {}
                }
            }
            score as f32
        })
        .collect()
}
