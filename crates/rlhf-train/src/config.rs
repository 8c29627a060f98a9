//! The config tables the trainers share: `[train]` (the gradient-descent trainers: SFT, reward,
//! DPO), `[lora]`, the numerical guard's setting, and one validation style ([`ensure`]). A stage's
//! own defaults live in its top-level config's `Default`; `rlhf_data::config::load_config` lays a
//! file's partial table over them key by key.

use serde::{Deserialize, Serialize};

use rlhf_model::{AdamWConfig, LoraConfig, LrSchedule, ScheduleKind};

use crate::error::{Error, Result};

/// `Err(Error::Invalid(message))` unless `condition` holds: the one way configs are checked.
pub fn ensure(condition: bool, message: impl Into<String>) -> Result<()> {
    if condition {
        Ok(())
    } else {
        Err(Error::Invalid(message.into()))
    }
}

/// What a NaN/inf loss, reward or gradient does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNonFinite {
    /// Log which quantity, drop the batch (no update) and go on.
    #[default]
    Skip,
    /// Stop the run with an error naming the quantity.
    Abort,
}

/// Optimisation and bookkeeping of one training run. An "example" is what the stage trains on: a
/// demonstration (SFT), a preference (reward model) or a chosen/rejected pair (DPO).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps (per round of data, for online DPO); 0 = as many as `epochs` passes take.
    pub max_steps: u64,
    /// Passes over the training examples (used when `max_steps` is 0).
    pub epochs: u64,
    /// Examples per micro-batch, bucketed by length to limit padding.
    pub batch_size: usize,
    /// Micro-batches per optimizer step; the loss is the mean over all of them.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// Learning-rate curve after warmup: "cosine" or "constant".
    pub schedule: ScheduleKind,
    /// Final learning rate of the cosine, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Clip gradients to this global L2 norm (0 = no clipping; the norm is still logged).
    pub max_grad_norm: f64,
    /// AdamW moments, epsilon and decoupled weight decay.
    pub adamw: AdamWConfig,
    /// Log and record metrics every this many steps (and at each checkpoint, so that a resumed run logs
    /// the same rows).
    pub log_every: u64,
    /// Held-out metrics every this many steps (0 = only before the first and after the last step).
    pub eval_every: u64,
    /// Examples (reward model: responses) per evaluation batch.
    pub eval_batch_size: usize,
    /// Save a resumable checkpoint every this many steps (0 = never).
    pub checkpoint_every: u64,
    /// Newest checkpoints kept on disk.
    pub keep_checkpoints: usize,
    /// libtorch intra-op threads (0 = libtorch's choice). A fixed count keeps CPU runs bit-reproducible.
    pub threads: usize,
    /// What a NaN/inf loss or gradient norm does: skip the step (no update) or abort the run.
    pub on_nonfinite: OnNonFinite,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            max_steps: 0,
            epochs: 2,
            batch_size: 16,
            grad_accum: 1,
            lr: 5e-4,
            warmup_steps: 20,
            schedule: ScheduleKind::Cosine,
            min_lr_ratio: 0.1,
            max_grad_norm: 1.0,
            adamw: AdamWConfig { weight_decay: 0.0, ..AdamWConfig::default() },
            log_every: 10,
            eval_every: 100,
            eval_batch_size: 32,
            checkpoint_every: 100,
            keep_checkpoints: 2,
            threads: 2,
            on_nonfinite: OnNonFinite::Skip,
        }
    }
}

impl TrainConfig {
    /// Checks the settings every trainer needs.
    pub fn check(&self) -> Result<()> {
        ensure(
            self.batch_size > 0 && self.grad_accum > 0 && self.eval_batch_size > 0,
            "train.batch_size, train.grad_accum and train.eval_batch_size must be at least 1",
        )?;
        ensure(self.max_steps > 0 || self.epochs > 0, "set train.max_steps or train.epochs above 0")?;
        ensure(self.lr > 0.0 && self.max_grad_norm >= 0.0, "train.lr must be > 0 and train.max_grad_norm >= 0")
    }

    /// Optimizer steps of a run over `batches_per_epoch` micro-batches.
    pub fn total_steps(&self, batches_per_epoch: usize) -> u64 {
        if self.max_steps > 0 {
            self.max_steps
        } else {
            (self.epochs * batches_per_epoch as u64).div_ceil(self.grad_accum as u64)
        }
    }

    /// The learning-rate schedule of a run of `total_steps`.
    pub fn schedule(&self, total_steps: u64) -> LrSchedule {
        LrSchedule {
            kind: self.schedule,
            peak_lr: self.lr,
            warmup_steps: self.warmup_steps,
            total_steps,
            min_lr_ratio: self.min_lr_ratio,
        }
    }
}

/// `[lora]`: train low-rank adapters instead of every weight; they are merged into the saved model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSection {
    pub enabled: bool,
    pub r: i64,
    pub alpha: f64,
    pub dropout: f64,
    /// Module names (`q_proj`, `c_attn`, ...); those absent from the model are ignored.
    pub target_modules: Vec<String>,
}

impl Default for LoraSection {
    fn default() -> Self {
        LoraSection {
            enabled: false,
            r: 8,
            alpha: 16.0,
            dropout: 0.0,
            target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "c_attn"].map(String::from).to_vec(),
        }
    }
}

impl LoraSection {
    /// The adapter config, when enabled.
    pub fn to_lora(&self) -> Option<LoraConfig> {
        self.enabled.then(|| LoraConfig {
            r: self.r,
            alpha: self.alpha,
            dropout: self.dropout,
            target_modules: self.target_modules.clone(),
        })
    }
}
