//! One interface for every source of feedback: a rule, simulated annotators, a reward model, an AI
//! judge or people. A [`Judge`] scores responses and/or prefers one of two, with a confidence; the
//! labels it produces carry its tag in `annotator` (`gold`, `sim:<name>`, `rm:<dir>`, `ai:<model>`,
//! `human:<id>`).

use crate::error::{Error, Result};

/// Which of two responses a judge prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preferred {
    First,
    Second,
    Neither,
}

/// One comparison's outcome: `confidence` is the judge's probability that the preferred response is
/// the better one (0.5 for Neither), `annotator` the tag the label carries (`gold`, `sim:<name>`,
/// `rm:<dir>`, `ai:<model>`, `human:<id>`).
#[derive(Debug, Clone, PartialEq)]
pub struct Judgment {
    pub preferred: Preferred,
    pub confidence: f64,
    pub annotator: String,
}

/// A source of feedback. Not `Send`/`Sync`-bound: a reward-model judge holds tensors, which stay on
/// the thread that owns the model. Implementors map their failures into [`Error::Judge`].
pub trait Judge {
    /// The tag of this source (`gold`, `sim:panel`, `rm:<dir>` ...).
    fn name(&self) -> String;
    /// One line for reports saying what this judge is.
    fn description(&self) -> String;
    /// Scores of (prompt, response) pairs, higher is better; Ok(None) when this judge only compares.
    fn score(&self, items: &[(&str, &str)]) -> Result<Option<Vec<f64>>>;
    /// For each (prompt, first, second): which one it prefers and how confidently.
    fn compare(&self, items: &[(&str, &str, &str)]) -> Result<Vec<Judgment>>;
}

/// The judgments of a deterministic scorer tagged `annotator`, from its scores of the first and the
/// second responses: the higher score wins with confidence 1, equal (or NaN) scores are Neither (0.5).
/// Different lengths are an [`Error::Judge`].
pub fn judgments_from_scores(annotator: &str, first: &[f64], second: &[f64]) -> Result<Vec<Judgment>> {
    if first.len() != second.len() {
        return Err(Error::Judge {
            judge: annotator.to_string(),
            message: format!("{} scores of first responses but {} of second ones", first.len(), second.len()),
        });
    }
    let judgment = |(a, b): (&f64, &f64)| {
        let (preferred, confidence) = if a > b {
            (Preferred::First, 1.0)
        } else if a < b {
            (Preferred::Second, 1.0)
        } else {
            (Preferred::Neither, 0.5)
        };
        Judgment { preferred, confidence, annotator: annotator.to_string() }
    };
    Ok(first.iter().zip(second).map(judgment).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_scores_win_and_ties_are_neither() {
        let judged = judgments_from_scores("rm:x", &[1.0, -2.0, 0.5], &[0.0, 3.0, 0.5]).unwrap();
        let preferred: Vec<_> = judged.iter().map(|j| (j.preferred, j.confidence)).collect();
        assert_eq!(preferred, [(Preferred::First, 1.0), (Preferred::Second, 1.0), (Preferred::Neither, 0.5)]);
        assert!(judged.iter().all(|j| j.annotator == "rm:x"));
    }

    #[test]
    fn score_lists_of_different_lengths_are_an_error() {
        let err = judgments_from_scores("gold", &[1.0], &[]).unwrap_err().to_string();
        assert_eq!(err, "judge gold: 1 scores of first responses but 0 of second ones");
    }
}
