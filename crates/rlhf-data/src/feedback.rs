//! Comparisons become unpaired labels ([`Feedback`]), as TRL's `unpair_preference_dataset` does for
//! KTO: each pair's chosen response is a desirable completion, its rejected one an undesirable one.

use crate::records::{Comparison, Feedback};

/// The two labels of every comparison, in input order: `<id>-chosen` (desirable), then
/// `<id>-rejected` (undesirable), each keeping the pair's prompt, annotator and source.
pub fn unpair_comparisons(comparisons: &[Comparison]) -> Vec<Feedback> {
    let label = |comparison: &Comparison, completion: &str, label: bool| Feedback {
        id: format!("{}-{}", comparison.id, if label { "chosen" } else { "rejected" }),
        prompt: comparison.prompt.clone(),
        completion: completion.to_string(),
        label,
        annotator: comparison.annotator.clone(),
        source: comparison.source.clone(),
        prompt_messages: comparison.prompt_messages.clone(),
    };
    comparisons.iter().flat_map(|c| [label(c, &c.chosen, true), label(c, &c.rejected, false)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pair_gives_a_desirable_and_an_undesirable_label() {
        let pair = Comparison {
            id: "p1".into(),
            prompt: "Hi".into(),
            chosen: "Hello there.".into(),
            rejected: "Go away.".into(),
            annotator: Some("sim:ann-0".into()),
            ..Comparison::default()
        };
        let labels = unpair_comparisons(&[pair]);
        let summary: Vec<(&str, &str, bool)> =
            labels.iter().map(|l| (l.id.as_str(), l.completion.as_str(), l.label)).collect();
        assert_eq!(summary, [("p1-chosen", "Hello there.", true), ("p1-rejected", "Go away.", false)]);
        assert!(labels.iter().all(|l| l.prompt == "Hi" && l.annotator.as_deref() == Some("sim:ann-0")));
    }
}
