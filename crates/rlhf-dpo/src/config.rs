//! The stage config (`configs/dpo.toml`): every struct denies unknown fields and defaults to the
//! shipped file's values. Relative paths are resolved against the run directory
//! ([`DpoConfig::resolve_paths`]) before anything reads them.

use std::path::{Path, PathBuf};

use rlhf_train::{config::ensure, resolve};
pub use rlhf_train::{LoraSection, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::loss::LossConfig;
use crate::Result;

/// Everything one `rlhf-dpo` run does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpoConfig {
    /// Seeds the data order, LoRA initialisation, sampling and labelling.
    pub seed: u64,
    /// The judge whose scores count as gold in the online rounds' metrics (`gold`: the embedded
    /// task's rule; `""`: none). Named, never guessed from the prompts.
    pub gold_judge: String,
    pub model: ModelSection,
    pub lora: LoraSection,
    pub loss: LossConfig,
    pub reference: ReferenceConfig,
    pub data: DataConfig,
    pub online: OnlineConfig,
    pub train: TrainConfig,
}

impl Default for DpoConfig {
    fn default() -> Self {
        DpoConfig {
            seed: 0,
            gold_judge: String::new(),
            model: ModelSection::default(),
            lora: LoraSection::default(),
            loss: LossConfig::default(),
            reference: ReferenceConfig::default(),
            data: DataConfig::default(),
            online: OnlineConfig::default(),
            // `max_steps`, `epochs` and `checkpoint_every` count per round of data (online DPO);
            // a round that is not the last also ends with a checkpoint.
            train: TrainConfig {
                lr: 1e-4,
                warmup_steps: 10,
                eval_every: 50,
                checkpoint_every: 50,
                ..TrainConfig::default()
            },
        }
    }
}

/// The policy to train and the reference it is held to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// The starting policy: a Hugging Face checkpoint directory with its tokenizer (the SFT model).
    pub policy: PathBuf,
    /// The reference model's checkpoint; empty = the starting policy (with LoRA: the policy with
    /// its adapters switched off, no second copy).
    pub reference: PathBuf,
    /// Put prompts and responses through the tokenizer's chat template: "auto" (when it has one)
    /// or "none" (the plain text).
    pub chat_template: rlhf_model::ChatMode,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            policy: PathBuf::from("sft/final"),
            reference: PathBuf::new(),
            chat_template: rlhf_model::ChatMode::Auto,
        }
    }
}

/// How reference log-probs are obtained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceMode {
    /// One batched no-grad pass per comparisons file, cached beside it as Parquet and reused
    /// across epochs, rounds and restarts (a changed reference or file invalidates the cache).
    #[default]
    Cached,
    /// Scored with every training batch (costs a reference forward pass per step).
    OnTheFly,
}

/// Reference log-probs (unused by SimPO, which has no reference).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferenceConfig {
    pub mode: ReferenceMode,
    /// Pairs per batch of the cached reference pass.
    pub batch_size: usize,
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        ReferenceConfig { mode: ReferenceMode::Cached, batch_size: 32 }
    }
}

/// The comparisons to train and evaluate on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// A comparisons Parquet table (`id, prompt, chosen, rejected`); empty = none (online rounds
    /// only). KTO unpairs it (chosen: desirable, rejected: undesirable).
    pub comparisons: PathBuf,
    /// KTO only: a feedback table of unpaired labels (`id, prompt, completion, label`) to train on
    /// instead of `comparisons` (which must then be empty).
    pub feedback: PathBuf,
    /// Held-out rows for evaluation, of the training data's kind; empty = split `heldout_fraction`
    /// off the training data.
    pub heldout: PathBuf,
    /// Share of `comparisons` held out (by a hash of the id) when `heldout` is empty; 0 = no evaluation.
    pub heldout_fraction: f64,
    /// Prompts longer than this many tokens keep their last tokens.
    pub max_prompt_len: usize,
    /// Responses (with their eos) longer than this many tokens are cut at the end.
    pub max_response_len: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            comparisons: PathBuf::from("data/comparisons.parquet"),
            feedback: PathBuf::new(),
            heldout: PathBuf::new(),
            heldout_fraction: 0.05,
            max_prompt_len: 128,
            max_response_len: 128,
        }
    }
}

/// Who labels the pairs sampled in online rounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Labeler {
    /// The embedded task's simulated annotators (`rlhf_task::Panel`).
    #[default]
    Panel,
    /// A reward model checkpoint (`online.reward_model`): the higher score is chosen.
    RewardModel,
    /// An AI judge (`[online.ai_judge]`: a local checkpoint or an OpenAI-compatible server asked a
    /// constitution's comparison questions in both orders): online DPO from AI feedback.
    AiJudge,
}

/// Online / iterative DPO: each round samples two responses per prompt from the current policy,
/// labels them, and trains on the new pairs (after the offline comparisons, if any).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineConfig {
    /// Rounds of sampling + labelling + training; 0 = offline DPO only.
    pub rounds: usize,
    /// A prompts Parquet table (`id, prompt`), relative to the run directory.
    pub prompts: PathBuf,
    /// Prompts sampled per round (drawn without replacement, cycling through the table).
    pub prompts_per_round: usize,
    pub labeler: Labeler,
    /// The reward model checkpoint when `labeler = "reward_model"`.
    pub reward_model: PathBuf,
    /// The AI judge when `labeler = "ai_judge"` (its paths relative to the run directory).
    pub ai_judge: rlhf_judge::JudgeSpec,
    /// Prompts per generation batch.
    pub batch_size: usize,
    pub max_new_tokens: i64,
    pub temperature: f64,
    /// 0 = off.
    pub top_k: i64,
    /// 1.0 = off.
    pub top_p: f64,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        OnlineConfig {
            rounds: 0,
            prompts: "data/prompts.parquet".into(),
            prompts_per_round: 512,
            labeler: Labeler::Panel,
            reward_model: PathBuf::from("rm/final"),
            ai_judge: rlhf_judge::JudgeSpec::default(),
            batch_size: 64,
            max_new_tokens: 64,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        }
    }
}

impl DpoConfig {
    /// Resolves the relative paths of the config against `run_dir` (empty paths stay empty).
    pub fn resolve_paths(&mut self, run_dir: &Path) {
        for path in [
            &mut self.model.policy,
            &mut self.model.reference,
            &mut self.data.comparisons,
            &mut self.data.feedback,
            &mut self.data.heldout,
            &mut self.online.reward_model,
            &mut self.online.prompts,
        ] {
            *path = resolve(run_dir, &*path);
        }
        self.online.ai_judge.resolve(run_dir);
    }

    /// Checks the settings that need no file.
    pub fn validate(&self) -> Result<()> {
        self.loss.validate()?;
        self.train.check()?;
        ensure(self.reference.batch_size > 0, "reference.batch_size must be at least 1")?;
        ensure((0.0..1.0).contains(&self.data.heldout_fraction), "data.heldout_fraction must be in [0, 1)")?;
        ensure(
            self.data.max_prompt_len > 0 && self.data.max_response_len > 0,
            "data.max_prompt_len and data.max_response_len must be at least 1",
        )?;
        let (comparisons, feedback) =
            (!self.data.comparisons.as_os_str().is_empty(), !self.data.feedback.as_os_str().is_empty());
        ensure(
            comparisons || feedback || self.online.rounds > 0,
            "nothing to train on: set data.comparisons or online.rounds",
        )?;
        ensure(
            !feedback || self.loss.unpaired(),
            "data.feedback (unpaired labels) trains only loss.kind = \"kto\"; pairs go in data.comparisons",
        )?;
        ensure(
            !(feedback && comparisons),
            "set one of data.feedback and data.comparisons (KTO unpairs comparisons itself): clear the other with --set data.comparisons=\"\"",
        )?;
        let o = &self.online;
        ensure(
            o.rounds == 0 || (o.prompts_per_round > 0 && o.batch_size > 0 && o.max_new_tokens > 0 && o.temperature > 0.0),
            "online.prompts_per_round, online.batch_size and online.max_new_tokens must be at least 1 and online.temperature > 0",
        )?;
        Ok(())
    }
}
