//! The sequence-level score of a rollout: reward models (each one checkpoint or an ensemble)
//! scoring `tokens(prompt) ++ tokens(response) ++ [eos]` with their own tokenizers, combined as a
//! weighted sum or an ensemble, then shaped: running normalisation, clipping, a length penalty and
//! the missing-eos penalty. With a `[constraint]`, its cost model is loaded beside them.

use std::path::Path;

use rlhf_data::AsPrompt;
use rlhf_model::reward::combine;
use rlhf_model::{ChatMode, Placement, RewardModel};
use serde::{Deserialize, Serialize};

use rlhf_train::resolve;

use crate::config::{ConstraintSection, MissingEos, RewardSection};
use crate::{Error, Result};

/// The reward models of a run, each with its weight, and the constraint's cost model.
pub struct RewardModels {
    models: Vec<(RewardModel, f64)>,
    cost: Option<RewardModel>,
    config: RewardSection,
}

/// The reward-model directory `path` (relative to `run_dir`) loaded for scoring; `setting` names
/// the config entry in the error when it is missing.
fn load_model(
    setting: &str,
    path: &Path,
    run_dir: &Path,
    chat: ChatMode,
    placement: Placement,
    batch_size: usize,
) -> Result<RewardModel> {
    let dir = resolve(run_dir, path);
    if !dir.is_dir() {
        return Err(Error::File {
            path: dir,
            message: format!("reward model directory not found (set {setting}, or run `rlhf-reward` first)"),
        });
    }
    let mut model = RewardModel::load_as(&dir, placement.device, placement.kind)?.with_chat_mode(chat);
    model.batch_size = batch_size;
    Ok(model)
}

impl RewardModels {
    /// Loads every `reward.models` entry and the constraint's cost model, if any (paths relative
    /// to `run_dir`).
    pub fn load(
        config: &RewardSection,
        constraint: &ConstraintSection,
        run_dir: &Path,
        chat: ChatMode,
        placement: Placement,
    ) -> Result<Self> {
        if config.models.is_empty() {
            return Err(Error::Invalid("reward.models lists no reward model".into()));
        }
        let models = config
            .models
            .iter()
            .map(|entry| {
                let model = load_model("reward.models", &entry.path, run_dir, chat, placement, config.batch_size)?;
                Ok((model, entry.weight))
            })
            .collect::<Result<Vec<_>>>()?;
        let cost = constraint
            .enabled()
            .then(|| {
                let path = &constraint.cost_model;
                load_model("constraint.cost_model", path, run_dir, chat, placement, config.batch_size)
            })
            .transpose()?;
        Ok(RewardModels { models, cost, config: config.clone() })
    }

    /// The constraint's costs of `(prompt, response)` texts: the cost model's scores negated;
    /// `None` without a constraint.
    pub fn costs<P: AsPrompt + Sync>(&self, pairs: &[(P, &str)]) -> Result<Option<Vec<f32>>> {
        let Some(model) = &self.cost else { return Ok(None) };
        Ok(Some(model.score(pairs)?.into_iter().map(|score| -score).collect()))
    }

    /// Combined reward-model scores of `(prompt, response)` texts (before shaping and the
    /// constraint).
    pub fn score<P: AsPrompt + Sync>(&self, pairs: &[(P, &str)]) -> Result<Vec<f32>> {
        let per_model =
            self.models.iter().map(|(model, _)| model.score(pairs)).collect::<rlhf_model::Result<Vec<_>>>()?;
        let weights: Vec<f64> = self.models.iter().map(|(_, weight)| *weight).collect();
        Ok((0..pairs.len())
            .map(|i| {
                let rewards: Vec<f32> = per_model.iter().map(|m| m[i]).collect();
                combine_rewards(&rewards, &weights, &self.config)
            })
            .collect())
    }
}

/// One item's rewards (one per reward model, each already on its own normalised scale) as one:
/// `Σ wᵢ·rᵢ` under `weighted_sum` (multi-objective), else the ensemble combination.
pub fn combine_rewards(rewards: &[f32], weights: &[f64], config: &RewardSection) -> f32 {
    match config.combine.ensemble() {
        Some(how) => combine(rewards, how, config.k),
        None => rewards.iter().zip(weights).map(|(&r, weight)| r as f64 * weight).sum::<f64>() as f32,
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
pub fn shape_scores(
    raw: &[f32],
    responses: &[ResponseShape],
    config: &RewardSection,
    moments: &mut RunningMoments,
) -> Vec<f32> {
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
