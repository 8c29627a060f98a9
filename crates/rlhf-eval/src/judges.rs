//! The judges a report or `compare` names, found by their tags with [`rlhf_task::judge_by_name`]:
//! only judges that give scores (the gold scores and win rates are means and comparisons of scores).

use rlhf_data::Judge;
use rlhf_task::{judge_by_name, JUDGE_NAMES};

use crate::error::{Error, Result};

/// Whether `judge` gives scores (a judge that only compares two responses gives none).
fn gives_scores(judge: &dyn Judge) -> Result<bool> {
    Ok(judge.score(&[])?.is_some())
}

/// The [`JUDGE_NAMES`] of the judges that give scores, quoted, as errors list them.
pub fn scorer_names() -> Vec<String> {
    JUDGE_NAMES
        .iter()
        .filter(|name| judge_by_name(name, 0).is_some_and(|judge| gives_scores(judge.as_ref()).unwrap_or(false)))
        .map(|name| format!("{name:?}"))
        .collect()
}

/// The judge `name` that `setting` gives, seeded with `seed`; it must give scores. An unknown name
/// or a judge that only compares is an error naming the setting and `accepted` (what it takes).
pub fn scorer(setting: &'static str, name: &str, seed: u64, accepted: Vec<String>) -> Result<Box<dyn Judge>> {
    let Some(judge) = judge_by_name(name, seed) else {
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
    judge.score(pairs)?.ok_or_else(|| Error::Data(rlhf_data::Error::Judge { judge: judge.name(), message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_judges_that_score_are_accepted() {
        assert_eq!(scorer_names(), ["\"gold\""]);
        assert_eq!(scorer("--judge", "gold", 0, scorer_names()).unwrap().name(), "gold");
        let err = scorer("--judge", "sim:panel", 0, scorer_names()).map(|j| j.name()).unwrap_err().to_string();
        assert_eq!(
            err,
            "--judge = \"sim:panel\": this judge only compares two responses and gives no scores; accepted: \"gold\""
        );
        let err = scorer("--judge", "rm:x", 0, scorer_names()).map(|j| j.name()).unwrap_err().to_string();
        assert_eq!(err, "--judge = \"rm:x\": no such judge; accepted: \"gold\"");
        let panel = judge_by_name("sim:panel", 0).unwrap();
        assert_eq!(
            scores(panel.as_ref(), &[]).unwrap_err().to_string(),
            "judge sim:panel: gives no scores, only comparisons"
        );
    }
}
