//! The reward stage's config (`configs/reward.toml`): every struct denies unknown fields and has
//! defaults equal to the shipped TOML file. Relative paths resolve against the run directory.

use std::path::PathBuf;

pub use rlhf_model::Combine;
pub use rlhf_train::TrainConfig;
use serde::{Deserialize, Serialize};

/// Reward-model training (`rlhf-reward train`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// Seeds the score head, the data order and the held-out split; member `i` of an ensemble
    /// uses `seed + i`.
    pub seed: u64,
    /// The judge whose scores count as gold for the held-out metrics (`gold`: the embedded task's
    /// rule; `""`: none, the data has no gold judge). Named, never guessed from the prompts.
    pub gold_judge: String,
    pub model: ModelSection,
    pub data: DataSection,
    pub loss: LossConfig,
    pub normalize: NormalizeSection,
    pub ensemble: EnsembleSection,
    pub train: TrainConfig,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            seed: 0,
            gold_judge: String::new(),
            model: ModelSection::default(),
            data: DataSection::default(),
            loss: LossConfig::default(),
            normalize: NormalizeSection::default(),
            ensemble: EnsembleSection::default(),
            // Evaluation batches count responses (two per comparison).
            train: TrainConfig { lr: 1e-4, eval_batch_size: 64, ..TrainConfig::default() },
        }
    }
}

/// The policy checkpoint the reward model starts from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// A causal-LM checkpoint directory (the SFT model): its trunk and tokenizer are kept, the LM
    /// head is replaced by a freshly initialised scalar `score` head.
    pub policy: PathBuf,
    /// `prompt ++ response ++ eos` rows longer than this many tokens are cut at the end.
    pub max_seq_len: usize,
    /// Put prompts and responses through the tokenizer's chat template: "auto" (when it has one)
    /// or "none" (the plain text).
    pub chat_template: rlhf_model::ChatMode,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection { policy: PathBuf::from("sft/final"), max_seq_len: 256, chat_template: rlhf_model::ChatMode::Auto }
    }
}

/// Where the preferences come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// A comparisons Parquet table (`id, prompt, chosen, rejected`, optional `margin`); "" for none.
    pub comparisons: String,
    /// A rankings Parquet table (`id, prompt, responses, ranking`); "" for none. Each ranking of K
    /// responses is one example: one forward pass over the K responses, the loss averaged over
    /// its K·(K−1)/2 pairs.
    pub rankings: String,
    /// Held-out comparisons for evaluation; "" splits `heldout_fraction` of the prompts off the
    /// training data instead (every preference of a prompt lands on the same side).
    pub heldout: String,
    pub heldout_fraction: f64,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            comparisons: "data/comparisons.parquet".into(),
            rankings: String::new(),
            heldout: String::new(),
            heldout_fraction: 0.1,
        }
    }
}

/// The Bradley–Terry loss and its variants.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// Use the `margin` column: `-log σ(r_c − r_r − m)` (rows without a margin use 0).
    pub use_margin: bool,
    /// Label smoothing ε: `−(1−ε)·log σ(d) − ε·log σ(−d)`.
    pub label_smoothing: f64,
}

/// Reward normalisation after training, stored as `reward_normalization` in the checkpoint's
/// `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeSection {
    pub enabled: bool,
    /// Also divide by the standard deviation (otherwise only shift the mean to 0).
    pub scale: bool,
    /// A table with `prompt` and `response` columns, e.g. SFT samples on training prompts
    /// (`rlhf-eval generate`); "" uses the training responses instead.
    pub samples: String,
}

impl Default for NormalizeSection {
    fn default() -> Self {
        NormalizeSection { enabled: true, scale: true, samples: String::new() }
    }
}

/// Several reward models trained with different seeds (score-head init and data order), and with
/// `bootstrap` each on its own resample of the training preferences, so that they disagree where the
/// data is thin (what `mean_minus_std` penalises).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnsembleSection {
    /// 1: `final/` is one checkpoint. N > 1: `final/member-<i>/` checkpoints plus `final/ensemble.json`.
    pub members: usize,
    pub combine: Combine,
    /// `k` of `mean_minus_std`.
    pub k: f64,
    /// Member `i` trains on as many preferences drawn with replacement from the training set
    /// (seeded by `seed + i`) instead of the set itself.
    pub bootstrap: bool,
}

impl Default for EnsembleSection {
    fn default() -> Self {
        EnsembleSection { members: 1, combine: Combine::Mean, k: 1.0, bootstrap: false }
    }
}
