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
        Error::Invalid(format!(
            "unknown judge {name:?}: expected \"gold\", \"gold:<objective>\", \"sim:panel\" or \"rm:<dir>\""
        ))
    })
}

/// Whether `judge` gives scores (a judge that only compares two responses gives none).
fn gives_scores(judge: &dyn Judge) -> Result<bool> {
    Ok(judge.score(&[])?.is_some())
}

/// The `rlhf-task` judges that give scores, quoted, as errors list them.
pub fn scorer_names() -> Vec<String> {
    rlhf_task::JUDGE_NAMES
        .iter()
        .filter(|name| {
            rlhf_task::judge_by_name(name, 0).is_some_and(|judge| gives_scores(judge.as_ref()).unwrap_or(false))
        })
        .map(|name| format!("{name:?}"))
        .collect()
}

/// The `rlhf-task` judge `name` that `setting` gives, seeded with `seed`; it must give scores. An
/// unknown name or a judge that only compares is an error naming the setting and `accepted`.
pub fn scorer(setting: &'static str, name: &str, seed: u64, accepted: Vec<String>) -> Result<Box<dyn Judge>> {
    let Some(judge) = rlhf_task::judge_by_name(name, seed) else {
        return Err(Error::UnknownJudge { setting, name: name.into(), accepted });
    };
    if !gives_scores(judge.as_ref())? {
        return Err(Error::NotAScorer { setting, name: name.into(), accepted });
    }
    Ok(judge)
}

/// `judge`'s scores of (prompt, response) pairs; a judge that gives none is an [`rlhf_data::Error::Judge`].
pub fn scores(judge: &dyn Judge, pairs: &[(&str, &str)]) -> Result<Vec<f64>> {
    let message = "gives no scores, only comparisons".to_string();
    Ok(judge.score(pairs)?.ok_or(rlhf_data::Error::Judge { judge: judge.name(), message })?)
}

/// The gold judge a config's `gold_judge` names, seeded with `seed` (`""`: none): a judge that
/// scores (`gold`, the embedded task's rule). Checked before anything runs.
pub fn gold_judge(name: &str, seed: u64) -> Result<Option<Box<dyn Judge>>> {
    if name.is_empty() {
        return Ok(None);
    }
    let accepted = [scorer_names(), vec!["\"\" (none)".into()]].concat();
    scorer("gold_judge", name, seed, accepted).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_judges_that_score_are_accepted() {
        assert_eq!(scorer_names(), ["\"gold\"", "\"gold:helpful\"", "\"gold:harmless\""]);
        assert_eq!(scorer("--judge", "gold", 0, scorer_names()).unwrap().name(), "gold");
        let err = scorer("--judge", "sim:panel", 0, scorer_names()).map(|j| j.name()).unwrap_err().to_string();
        assert_eq!(
            err,
            "--judge = \"sim:panel\": this judge only compares two responses and gives no scores; accepted: \"gold\", \"gold:helpful\", \"gold:harmless\""
        );
        let err = scorer("--judge", "rm:x", 0, scorer_names()).map(|j| j.name()).unwrap_err().to_string();
        assert_eq!(err, "--judge = \"rm:x\": no such judge; accepted: \"gold\", \"gold:helpful\", \"gold:harmless\"");
        let panel = rlhf_task::judge_by_name("sim:panel", 0).unwrap();
        assert_eq!(
            scores(panel.as_ref(), &[]).unwrap_err().to_string(),
            "judge sim:panel: gives no scores, only comparisons"
        );
        assert!(gold_judge("", 0).unwrap().is_none());
        let err = gold_judge("sim:panel", 0).map(|j| j.is_some()).unwrap_err().to_string();
        assert!(err.ends_with("accepted: \"gold\", \"gold:helpful\", \"gold:harmless\", \"\" (none)"), "{err}");
    }
}
