//! `configs/eval.toml`: what `rlhf-eval report` evaluates and how. Paths are relative to the run
//! directory; policies and reward models that are not there are skipped.

use rlhf_data::Judge;
use serde::{Deserialize, Serialize};

use crate::Result;

/// The report's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Seed of sampling (shared by every policy) and of the bootstrap.
    pub seed: u64,
    /// Policies, by stage name: `<run>/<name>/final`; a `*` in the first component matches
    /// directories (`round-*/ppo`: the later rounds of iterative RLHF).
    pub policies: Vec<String>,
    /// The baseline for KL and win rates (one of `policies`).
    pub reference: String,
    /// More gold win-rate baselines besides the reference (those of `policies` that were found),
    /// e.g. `base`: the model before any RLHF.
    pub baselines: Vec<String>,
    /// Reward-model directories (one checkpoint or an ensemble each).
    pub reward_models: Vec<String>,
    /// Policies along one optimisation path from the reference (a KL-coefficient sweep, rounds),
    /// for the over-optimisation analysis (gold and proxy against √KL, Gao et al.'s fits, the flag
    /// past the gold peak); those of `policies` that were found, at least three. None by default.
    pub sweep: Vec<String>,
    /// The judge whose scores the report calls gold (and its win rates): `gold` is the embedded
    /// task's rule, which means something only on the embedded task's data; "" for none (the
    /// default: a user's own data has no gold judge).
    pub gold_judge: String,
    pub data: DataConfig,
    pub generation: GenerationSettings,
    /// Bootstrap resamples for the win-rate confidence interval.
    pub bootstrap: usize,
    /// Rows per scoring forward pass (log-probs, rewards).
    pub batch_size: usize,
    pub flags: FlagConfig,
    /// Objectives scored apart (`[[objectives]]`, e.g. helpful and harmless): each policy's gold
    /// and proxy score per objective, a constraint's satisfaction rate, and with two or more the
    /// Pareto plot of the first two. None by default.
    pub objectives: Vec<ObjectiveConfig>,
    /// AI-feedback reports of `rlhf-judge` (`<table>.against.json`: the judge's agreement with gold
    /// and the panel, or how often revisions beat initial answers), shown in the report's "AI
    /// feedback" section; those not found are skipped.
    pub ai_feedback: Vec<String>,
}

/// One objective of the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectiveConfig {
    pub name: String,
    /// The judge whose scores are this objective's gold (`gold:helpful`, `gold:harmless`); "" for
    /// none.
    pub gold_judge: String,
    /// This objective's reward model (a directory relative to the run directory); "" for none,
    /// skipped when missing.
    pub reward_model: String,
    /// A constraint on the objective's gold: a response satisfies it when its cost, the gold score
    /// negated, is at most this (harmless: 0 = no rude phrase, no negative adjective). The report
    /// gives each policy's share of prompts that satisfy it.
    pub cost_max: Option<f64>,
}

/// Held-out inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub prompts: String,
    /// The first `num_prompts` prompts are used (0: all).
    pub num_prompts: usize,
    /// Held-out demonstrations for perplexity; "" for none.
    pub demonstrations: String,
    /// The first `num_demonstrations` are used (0: all).
    pub num_demonstrations: usize,
}

/// Sampling settings, the same for every policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationSettings {
    pub max_new_tokens: i64,
    pub temperature: f64,
    pub top_p: f64,
    pub batch_size: usize,
    /// Prompts through each policy's chat template when its tokenizer has one (auto) or not (none).
    pub chat_template: rlhf_model::ChatMode,
}

/// When the report flags reward hacking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlagConfig {
    /// Mean length above this multiple of the reference's.
    pub length_ratio: f64,
    /// KL to the reference above this (nats per response).
    pub max_kl: f64,
    /// EOS rate below this.
    pub min_eos_rate: f64,
    /// Distinct-2 below this fraction of the reference's (mode collapse).
    pub min_distinct2_ratio: f64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            seed: 0,
            policies: ["base", "sft", "ppo", "round-*/ppo", "dpo"].map(String::from).to_vec(),
            reference: "sft".into(),
            baselines: vec!["base".into()],
            reward_models: vec!["rm/final".into()],
            sweep: Vec::new(),
            gold_judge: String::new(),
            data: DataConfig::default(),
            generation: GenerationSettings::default(),
            bootstrap: 1000,
            batch_size: 32,
            flags: FlagConfig::default(),
            objectives: Vec::new(),
            ai_feedback: ["data/comparisons.parquet.against.json", "data/revisions.parquet.against.json"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl EvalConfig {
    /// The judge `gold_judge` names (seeded with `seed`), `None` for ""; a name that is no judge, or
    /// a judge that gives no scores, is an error naming the setting and the names it accepts.
    pub fn gold_judge(&self) -> Result<Option<Box<dyn Judge>>> {
        rlhf_train::judges::gold_judge(&self.gold_judge, self.seed)
    }

    /// Each objective's gold judge (`None` for ""), checked like [`Self::gold_judge`]; objectives
    /// need distinct, non-empty names.
    pub fn objective_judges(&self) -> Result<Vec<Option<Box<dyn Judge>>>> {
        for (i, objective) in self.objectives.iter().enumerate() {
            if objective.name.is_empty() || self.objectives[..i].iter().any(|o| o.name == objective.name) {
                return Err(crate::Error::Invalid(format!(
                    "objectives: every objective needs a name of its own (objective {} is {:?})",
                    i + 1,
                    objective.name
                )));
            }
            if objective.cost_max.is_some_and(|c| !c.is_finite()) {
                return Err(crate::Error::Invalid(format!("objectives: {}: cost_max must be finite", objective.name)));
            }
        }
        self.objectives.iter().map(|o| rlhf_train::judges::gold_judge(&o.gold_judge, self.seed)).collect()
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            prompts: "data/prompts_heldout.parquet".into(),
            num_prompts: 200,
            demonstrations: "data/demonstrations_heldout.parquet".into(),
            num_demonstrations: 200,
        }
    }
}

impl Default for GenerationSettings {
    fn default() -> Self {
        GenerationSettings {
            max_new_tokens: 48,
            temperature: 1.0,
            top_p: 1.0,
            batch_size: 64,
            chat_template: rlhf_model::ChatMode::Auto,
        }
    }
}

impl Default for FlagConfig {
    fn default() -> Self {
        FlagConfig { length_ratio: 2.0, max_kl: 50.0, min_eos_rate: 0.5, min_distinct2_ratio: 0.5 }
    }
}
