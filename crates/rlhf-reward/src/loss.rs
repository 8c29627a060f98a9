//! The preference losses on a batch of rewards.
//!
//! For a judged pair with rewards `r_b` (better) and `r_w` (worse), `d = r_b − r_w` and the
//! Bradley–Terry loss is `−log σ(d)`; with margins `−log σ(d − m)`; with label smoothing ε
//! `−(1−ε)·log σ(d − m) − ε·log σ(−(d − m))`. A preference's loss is the mean over its pairs
//! (one pair for a comparison, K·(K−1)/2 for a ranking of K), and a step's loss the mean over its
//! preferences: each pair is weighted by `1 / (pairs of its preference · preferences in the step)`.

use rlhf_model::{build_batch, PaddingSide, SequenceClassifier, TokenBatch};
use tch::{Device, Kind, Tensor};

use crate::config::LossConfig;
use crate::data::TokenizedPreference;
use crate::Result;

/// The pairs of a batch as indices into its rows, with margins and loss weights.
#[derive(Debug)]
pub struct PairIndex {
    /// `[P]` int64 row of each pair's better response.
    pub better: Tensor,
    /// `[P]` int64 row of each pair's worse response.
    pub worse: Tensor,
    /// `[P]` f32 stated margins.
    pub margin: Tensor,
    /// `[P]` f32 loss weights (see the module doc).
    pub weight: Tensor,
}

impl PairIndex {
    /// The pairs of `preferences`, whose rows are laid out one preference after another;
    /// `preferences_in_step` is the weights' denominator (the step's preference count).
    pub fn new(preferences: &[&TokenizedPreference], preferences_in_step: usize, device: Device) -> Self {
        let (mut better, mut worse, mut margin, mut weight) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut offset = 0i64;
        for p in preferences {
            let w = 1.0 / (p.pairs.len() * preferences_in_step.max(1)) as f32;
            for pair in &p.pairs {
                better.push(offset + pair.better as i64);
                worse.push(offset + pair.worse as i64);
                margin.push(pair.margin);
                weight.push(w);
            }
            offset += p.rows.len() as i64;
        }
        let tensor = |v: &[f32]| Tensor::from_slice(v).to_device(device);
        PairIndex {
            better: Tensor::from_slice(&better).to_device(device),
            worse: Tensor::from_slice(&worse).to_device(device),
            margin: tensor(&margin),
            weight: tensor(&weight),
        }
    }

    /// `r_better − r_worse` per pair `[P]` from per-row rewards `[N]`.
    pub fn differences(&self, rewards: &Tensor) -> Tensor {
        rewards.index_select(0, &self.better) - rewards.index_select(0, &self.worse)
    }
}

/// The weighted loss (a scalar, see the module doc) from the pairs' reward differences.
pub fn preference_loss(differences: &Tensor, pairs: &PairIndex, config: &LossConfig) -> Tensor {
    let d = differences.to_kind(Kind::Float);
    let d = if config.use_margin { d - &pairs.margin } else { d };
    let eps = config.label_smoothing;
    let nll = if eps == 0.0 { -d.log_sigmoid() } else { -(d.log_sigmoid() * (1.0 - eps) + (-&d).log_sigmoid() * eps) };
    (nll * &pairs.weight).sum(Kind::Float)
}

/// Pairwise accuracy (share of pairs with `r_better > r_worse`) and mean reward margin of
/// differences `[P]`.
pub fn accuracy_and_margin(differences: &Tensor) -> (f64, f64) {
    let d = differences.detach().to_kind(Kind::Float);
    let accuracy = d.gt(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    (accuracy, d.mean(Kind::Float).double_value(&[]))
}

/// Preferences laid out for one forward pass: all their rows, right-padded, and their pairs.
#[derive(Debug)]
pub struct PreferenceBatch {
    pub tokens: TokenBatch,
    pub pairs: PairIndex,
}

impl PreferenceBatch {
    /// Lays out `preferences` (padded with `pad_id`); see [`PairIndex::new`] for the weights.
    pub fn new(
        preferences: &[&TokenizedPreference],
        preferences_in_step: usize,
        pad_id: i64,
        device: Device,
    ) -> Result<Self> {
        let rows: Vec<(&[i64], &[i64])> =
            preferences.iter().flat_map(|p| p.rows.iter().map(|r| (r.as_slice(), &[][..]))).collect();
        Ok(PreferenceBatch {
            tokens: build_batch(&rows, None, pad_id, PaddingSide::Right, device)?,
            pairs: PairIndex::new(preferences, preferences_in_step, device),
        })
    }

    /// Rewards of every row `[N]` (a graph for backward).
    pub fn rewards(&self, model: &SequenceClassifier) -> Result<Tensor> {
        Ok(model.forward(&self.tokens.input_ids, Some(&self.tokens.attention_mask))?)
    }
}
