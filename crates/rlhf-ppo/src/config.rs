//! The stage's config (`configs/ppo.toml`): every struct denies unknown fields and has defaults
//! equal to the shipped TOML file. Relative paths resolve against the run directory.

use std::path::PathBuf;

use rlhf_model::{AdamWConfig, Combine};
pub use rlhf_train::{LoraSection, OnNonFinite};
use serde::{Deserialize, Serialize};

pub use crate::constraint::ConstraintSection;
use crate::kl::{KlController, KlEstimator};

/// PPO (and the critic-free GRPO / RLOO) against reward models with a KL penalty to a reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Seeds prompt order, sampling, minibatch order and libtorch's generator.
    pub seed: u64,
    /// The judge whose scores count as gold in the metrics (`gold`: the embedded task's rule;
    /// `""`: none, the data has no gold judge). Named, never guessed from the prompts.
    pub gold_judge: String,
    /// `gae` (PPO with a critic), `grpo` or `rloo` (group baselines, no critic loaded).
    pub advantage: AdvantageKind,
    /// The critic of `gae`: a value model initialised from the reward model, or a value head on
    /// the policy's trunk.
    pub critic: CriticKind,
    /// What a NaN/inf reward, loss or gradient does: skip the batch or abort the run.
    pub on_nonfinite: OnNonFinite,
    pub model: ModelSection,
    pub lora: LoraSection,
    pub data: DataSection,
    pub generation: GenerationSection,
    pub reward: RewardSection,
    /// Keep a cost (a harmlessness model's score, negated) under a threshold (Safe RLHF).
    pub constraint: ConstraintSection,
    pub kl: KlSection,
    pub ppo: PpoSection,
    pub train: TrainSection,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            seed: 0,
            gold_judge: String::new(),
            advantage: AdvantageKind::default(),
            critic: CriticKind::default(),
            on_nonfinite: OnNonFinite::default(),
            model: ModelSection::default(),
            // Adapters on the attention's query and value projections only.
            lora: LoraSection {
                target_modules: ["q_proj", "v_proj", "c_attn"].map(String::from).to_vec(),
                ..LoraSection::default()
            },
            data: DataSection::default(),
            generation: GenerationSection::default(),
            reward: RewardSection::default(),
            constraint: ConstraintSection::default(),
            kl: KlSection::default(),
            ppo: PpoSection::default(),
            train: TrainSection::default(),
        }
    }
}

/// Where advantages come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdvantageKind {
    /// GAE(γ, λ) with a learned critic.
    #[default]
    Gae,
    /// Group-normalised sequence rewards `(r − mean) / std` over `ppo.group_size` samples per prompt.
    Grpo,
    /// Leave-one-out baseline over `ppo.group_size` samples per prompt.
    Rloo,
    /// Dr. GRPO (Liu et al. 2025): `r − mean` over the group, no division by its std (use with
    /// `ppo.loss_aggregation = "constant"`, its length-unbiased normaliser).
    #[serde(rename = "dr_grpo")]
    DrGrpo,
    /// REINFORCE++ (Hu 2025): the per-token reward (`−β·KL` per token, the score at the last
    /// token) summed to the end of the response (γ-discounted), normalised over the whole batch; no
    /// critic, one sample per prompt suffices.
    #[serde(rename = "reinforce_pp")]
    ReinforcePp,
}

impl AdvantageKind {
    /// Whether its baseline is over a group of samples of one prompt (`ppo.group_size >= 2`).
    pub fn needs_groups(self) -> bool {
        matches!(self, AdvantageKind::Grpo | AdvantageKind::DrGrpo | AdvantageKind::Rloo)
    }
}

/// How a minibatch's per-token policy losses are averaged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossAggregation {
    /// Σ over the minibatch's response tokens / their number (token-level, as DAPO; TRL's "bnpo").
    #[default]
    TokenMean,
    /// Σ over the response tokens / (rows × `generation.max_new_tokens`): Dr. GRPO's constant
    /// normaliser, which does not favour short or long responses.
    Constant,
}

/// Where PPO's importance ratio is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportanceRatio {
    /// Per token, `π(y_t)/π_old(y_t)` (PPO, GRPO).
    #[default]
    Token,
    /// Per sequence, `(π(y)/π_old(y))^(1/|y|)`, clipped per sequence, the loss a mean over
    /// sequences (GSPO, Zheng et al. 2025).
    Sequence,
}

/// The critic's architecture (GAE only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CriticKind {
    /// A separate transformer with a per-token scalar head, initialised from the reward model.
    Separate,
    /// A value head on the policy's final hidden states (one trunk pass for both; half the
    /// training compute).
    #[default]
    Shared,
}

/// The checkpoints the stage starts from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// The policy to train (a causal-LM checkpoint directory, the SFT model).
    pub policy: PathBuf,
    /// The frozen reference of the KL penalty. With LoRA and the same directory as the policy, the
    /// policy with its adapters switched off serves as the reference (no second copy).
    pub reference: PathBuf,
    /// Where the separate critic starts: a reward-model checkpoint; "" = the first reward model
    /// (its first member when it is an ensemble).
    pub critic: PathBuf,
    /// Put prompts (and the reward model's inputs) through the tokenizer's chat template: "auto"
    /// (when it has one) or "none" (the plain text).
    pub chat_template: rlhf_model::ChatMode,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            policy: "sft/final".into(),
            reference: "sft/final".into(),
            critic: PathBuf::new(),
            chat_template: rlhf_model::ChatMode::Auto,
        }
    }
}

/// The prompts rollouts are sampled on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// A prompts Parquet table (`id, prompt`), relative to the run directory.
    pub prompts: String,
    /// Longer prompts keep their last this many tokens.
    pub max_prompt_len: usize,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection { prompts: "data/prompts.parquet".into(), max_prompt_len: 64 }
    }
}

/// Sampling of rollouts (the temperature also divides the logits when log-probs are recomputed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationSection {
    /// Responses stop at eos or after this many tokens (then the missing-eos penalty applies).
    pub max_new_tokens: i64,
    pub temperature: f64,
    /// 0 = off.
    pub top_k: i64,
    /// 1.0 = off.
    pub top_p: f64,
}

impl Default for GenerationSection {
    fn default() -> Self {
        GenerationSection { max_new_tokens: 48, temperature: 1.0, top_k: 0, top_p: 1.0 }
    }
}

/// One reward model and its weight in a weighted sum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardModelEntry {
    /// A reward-model directory: one checkpoint, or an ensemble (`ensemble.json`, members combined
    /// as it says).
    pub path: PathBuf,
    /// Weight under `combine = "weighted_sum"`.
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// How several reward models' rewards become one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardCombine {
    /// `Σ wᵢ·rᵢ` (multi-objective).
    #[default]
    WeightedSum,
    /// Ensemble mean.
    Mean,
    /// Ensemble minimum.
    Min,
    /// Ensemble `mean − k·std`.
    MeanMinusStd,
}

impl RewardCombine {
    /// The ensemble combination, `None` for a weighted sum.
    pub fn ensemble(self) -> Option<Combine> {
        match self {
            RewardCombine::WeightedSum => None,
            RewardCombine::Mean => Some(Combine::Mean),
            RewardCombine::Min => Some(Combine::Min),
            RewardCombine::MeanMinusStd => Some(Combine::MeanMinusStd),
        }
    }
}

/// What replaces or is added to the score of a response without eos.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingEos {
    /// The penalty replaces the reward model's score.
    #[default]
    Replace,
    /// The penalty is added to the score.
    Add,
    /// No penalty.
    Off,
}

/// The sequence-level score: reward models, their combination and shaping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardSection {
    pub models: Vec<RewardModelEntry>,
    pub combine: RewardCombine,
    /// `k` of `mean_minus_std`.
    pub k: f64,
    /// Normalise combined scores by running mean and std over all rollouts so far.
    pub normalize: bool,
    /// Clip the (normalised) score to `[−clip, clip]`; 0 = off.
    pub clip: f64,
    /// Subtracted per response token.
    pub length_penalty: f64,
    /// The score of a response that hit `max_new_tokens` without eos (see `missing_eos`).
    pub missing_eos_penalty: f64,
    pub missing_eos: MissingEos,
    /// Rows per reward-model forward pass.
    pub batch_size: usize,
}

impl Default for RewardSection {
    fn default() -> Self {
        RewardSection {
            models: vec![RewardModelEntry { path: "rm/final".into(), weight: 1.0 }],
            combine: RewardCombine::WeightedSum,
            k: 1.0,
            normalize: false,
            clip: 0.0,
            length_penalty: 0.0,
            missing_eos_penalty: -3.0,
            missing_eos: MissingEos::Replace,
            batch_size: 64,
        }
    }
}

/// The KL penalty `β·KL(π ‖ π_ref)` per token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KlSection {
    pub estimator: KlEstimator,
    /// Initial (or fixed) β.
    pub beta: f64,
    /// Adapt β towards `target` (Ziegler et al.); false keeps β fixed.
    pub adaptive: bool,
    /// Target KL per response (nats, summed over tokens).
    pub target: f64,
    /// Samples over which a full proportional correction of β is applied.
    pub horizon: f64,
}

impl Default for KlSection {
    fn default() -> Self {
        KlSection { estimator: KlEstimator::K1, beta: 0.1, adaptive: true, target: 8.0, horizon: 300.0 }
    }
}

impl KlSection {
    /// The controller at the start of a run.
    pub fn controller(&self) -> KlController {
        KlController { beta: self.beta, target: self.adaptive.then_some(self.target), horizon: self.horizon }
    }
}

/// Rollouts per iteration and the PPO update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoSection {
    /// Iterations (rollouts + update) of the run.
    pub iterations: u64,
    /// Distinct prompts per iteration.
    pub prompts_per_iteration: usize,
    /// Samples per prompt (GRPO and RLOO need at least 2).
    pub group_size: usize,
    /// Rows per generation / scoring forward pass.
    pub rollout_batch_size: usize,
    /// Passes over an iteration's rollouts.
    pub epochs: usize,
    /// Rows per optimizer step.
    pub minibatch_size: usize,
    /// Rows per forward/backward (gradient accumulation up to `minibatch_size`).
    pub micro_batch_size: usize,
    pub gamma: f64,
    pub lambda: f64,
    /// ε of the clipped policy ratio (its lower side when `clip_ratio_high` is set).
    pub clip_ratio: f64,
    /// DAPO's clip-higher: the upper ε of the ratio, `1 + ε_high`; 0 = `clip_ratio` (symmetric).
    pub clip_ratio_high: f64,
    /// Per-token or per-sequence (GSPO) importance ratio.
    pub importance_ratio: ImportanceRatio,
    /// How the policy loss is averaged over a minibatch (token-level mean, or Dr. GRPO's constant).
    pub loss_aggregation: LossAggregation,
    /// ε of the clipped value loss.
    pub clip_value: f64,
    /// Weight of the value loss.
    pub vf_coef: f64,
    /// Entropy bonus: `− entropy_coef · H(π)` (the mean per-token entropy of the policy over the
    /// minibatch's response tokens) is added to the loss, against premature collapse; 0 = off.
    pub entropy_coef: f64,
    /// Whiten advantages over the iteration (GAE and RLOO; GRPO's are normalised per group).
    pub whiten_advantages: bool,
    /// Stop an iteration's remaining updates once a minibatch's approx-KL exceeds this (0 = off).
    pub max_approx_kl: f64,
    /// ε of GRPO's `(r − mean) / (std + ε)`.
    pub grpo_eps: f64,
}

impl Default for PpoSection {
    fn default() -> Self {
        PpoSection {
            iterations: 80,
            prompts_per_iteration: 32,
            group_size: 1,
            rollout_batch_size: 64,
            epochs: 2,
            minibatch_size: 16,
            micro_batch_size: 16,
            gamma: 1.0,
            lambda: 0.95,
            clip_ratio: 0.2,
            clip_ratio_high: 0.0,
            importance_ratio: ImportanceRatio::Token,
            loss_aggregation: LossAggregation::TokenMean,
            clip_value: 0.2,
            vf_coef: 0.1,
            entropy_coef: 0.0,
            whiten_advantages: true,
            max_approx_kl: 0.0,
            grpo_eps: 1e-4,
        }
    }
}

/// Optimisation and bookkeeping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Learning rate of policy and critic (one AdamW over both, constant after warmup).
    pub lr: f64,
    /// Linear warmup, in optimizer steps.
    pub warmup_steps: u64,
    /// Clip the global gradient norm (0 = no clipping).
    pub max_grad_norm: f64,
    pub adamw: AdamWConfig,
    /// Save a resumable checkpoint every this many iterations (0 = never).
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    /// libtorch intra-op threads (0 = libtorch's choice).
    pub threads: usize,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            lr: 2e-4,
            warmup_steps: 0,
            max_grad_norm: 1.0,
            adamw: AdamWConfig { weight_decay: 0.0, ..AdamWConfig::default() },
            checkpoint_every: 10,
            keep_checkpoints: 2,
            threads: 2,
        }
    }
}
