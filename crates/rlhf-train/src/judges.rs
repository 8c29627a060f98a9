//! Judges named in configuration: a stage or the report takes a judge by name (`gold`,
//! `sim:panel`, `rm:<dir>`), never by looking at the prompts. The no-libtorch ones come from
//! `rlhf-task`; a reward model becomes a [`RewardJudge`] here.

use std::path::Path;

use rlhf_data::{judgments_from_scores, Judge, Judgment};
use rlhf_model::{Placement, RewardModel};

use crate::error::{Error, Result};
use crate::stage::resolve;

/// A trained reward model (one checkpoint or an ensemble) as a judge: it scores, and prefers the
/// higher-scored response.
pub struct RewardJudge {
    model: RewardModel,
    name: String,
}

impl RewardJudge {
    /// Loads the reward-model directory `dir`; its tag is `rm:<dir>`.
    pub fn load(dir: &Path, placement: Placement) -> Result<Self> {
        let model = RewardModel::load_as(dir, placement.device, placement.kind)?;
        Ok(RewardJudge { model, name: format!("rm:{}", dir.display()) })
    }
}

impl Judge for RewardJudge {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn description(&self) -> String {
        let members = self.model.members().len();
        format!("{}: a trained reward model ({members} member{})", self.name, if members == 1 { "" } else { "s" })
    }

    fn score(&self, items: &[(&str, &str)]) -> rlhf_data::Result<Option<Vec<f64>>> {
        let scores = self
            .model
            .score(items)
            .map_err(|e| rlhf_data::Error::Judge { judge: self.name(), message: e.to_string() })?;
        Ok(Some(scores.into_iter().map(f64::from).collect()))
    }

    fn compare(&self, items: &[(&str, &str, &str)]) -> rlhf_data::Result<Vec<Judgment>> {
        let pairs: Vec<(&str, &str)> = items.iter().flat_map(|&(p, a, b)| [(p, a), (p, b)]).collect();
        let scores = self.score(&pairs)?.unwrap_or_default();
        let (first, second): (Vec<f64>, Vec<f64>) = scores.chunks(2).map(|s| (s[0], s[1])).unzip();
        judgments_from_scores(&self.name, &first, &second)
    }
}

/// The judge a config names: `gold` (the embedded task's rule), `sim:panel` (its simulated
/// annotators, seeded with `seed`), or `rm:<dir>` (a reward model; relative to `run_dir`).
pub fn judge_by_name(name: &str, run_dir: &Path, placement: Placement, seed: u64) -> Result<Box<dyn Judge>> {
    if let Some(dir) = name.strip_prefix("rm:") {
        return Ok(Box::new(RewardJudge::load(&resolve(run_dir, dir), placement)?));
    }
    rlhf_task::judge_by_name(name, seed).ok_or_else(|| {
        Error::Invalid(format!("unknown judge {name:?}: expected \"gold\", \"sim:panel\" or \"rm:<dir>\""))
    })
}

/// The gold judge a config names (`""`: none): a judge that scores, by its `rlhf-task` name
/// (`gold`, the embedded task's rule). Checked before anything runs.
pub fn gold_judge(name: &str, seed: u64) -> Result<Option<Box<dyn Judge>>> {
    if name.is_empty() {
        return Ok(None);
    }
    let unknown =
        || Error::Invalid(format!("gold_judge {name:?} is not a scoring judge: expected \"gold\" or \"\" (none)"));
    let judge = rlhf_task::judge_by_name(name, seed).ok_or_else(unknown)?;
    match judge.score(&[])? {
        Some(_) => Ok(Some(judge)),
        None => Err(unknown()),
    }
}
