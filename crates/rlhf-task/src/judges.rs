//! The task's feedback sources behind the shared [`Judge`] interface: the gold rule ([`GoldJudge`])
//! and the simulated annotators ([`PanelJudge`]), and [`judge_by_name`] to pick one from a config.

use std::cell::RefCell;

use rlhf_data::{judgments_from_scores, Judge, Judgment, Preferred, Result};

use crate::annotators::{Decision, Panel};
use crate::judge::judge;
use crate::rng::TaskRng;

/// The gold rule ([`judge()`]) as a judge: it scores, and prefers the higher score with certainty.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GoldJudge;

impl GoldJudge {
    pub const NAME: &'static str = "gold";
}

impl Judge for GoldJudge {
    fn name(&self) -> String {
        Self::NAME.into()
    }

    fn description(&self) -> String {
        "the embedded task's gold rule: on topic, courteous, positive, concise, not repetitive, ends properly (best 5.5)".into()
    }

    fn score(&self, items: &[(&str, &str)]) -> Result<Option<Vec<f64>>> {
        Ok(Some(items.iter().map(|(prompt, response)| judge(prompt, response).score).collect()))
    }

    fn compare(&self, items: &[(&str, &str, &str)]) -> Result<Vec<Judgment>> {
        let (first, second): (Vec<f64>, Vec<f64>) =
            items.iter().map(|&(prompt, a, b)| (judge(prompt, a).score, judge(prompt, b).score)).unzip();
        judgments_from_scores(Self::NAME, &first, &second)
    }
}

/// The simulated annotators as a judge: it only compares, each pair by one member drawn at random
/// (Bradley–Terry on the gold scores, with flips). Its noise stream goes on from call to call; the
/// first call of a judge made with seed `s` labels exactly as [`Panel::label_pairs`]`(s, ..)` does.
/// A pair of identical texts is Neither, drawing nothing (`label_pairs` drops it).
#[derive(Debug, Clone)]
pub struct PanelJudge {
    pub panel: Panel,
    pub seed: u64,
    rng: RefCell<TaskRng>,
}

impl PanelJudge {
    pub const NAME: &'static str = "sim:panel";

    pub fn new(panel: Panel, seed: u64) -> Self {
        PanelJudge { panel, seed, rng: RefCell::new(Panel::label_rng(seed)) }
    }
}

impl Judge for PanelJudge {
    fn name(&self) -> String {
        Self::NAME.into()
    }

    fn description(&self) -> String {
        let members: Vec<String> = self
            .panel
            .annotators
            .iter()
            .map(|a| format!("{} (τ {}, {}% flips)", a.name, a.temperature, 100.0 * a.flip_rate))
            .collect();
        format!("simulated annotators, Bradley–Terry on the gold score: {} (seed {})", members.join(", "), self.seed)
    }

    fn score(&self, _items: &[(&str, &str)]) -> Result<Option<Vec<f64>>> {
        Ok(None)
    }

    fn compare(&self, items: &[(&str, &str, &str)]) -> Result<Vec<Judgment>> {
        let mut rng = self.rng.borrow_mut();
        let judgment = |&(prompt, a, b): &(&str, &str, &str)| {
            if a == b {
                return Judgment { preferred: Preferred::Neither, confidence: 0.5, annotator: self.name() };
            }
            let Decision { annotator, first, gold: (ga, gb) } = self.panel.decide(&mut rng, prompt, a, b);
            let p_first = annotator.probability_first(ga, gb);
            let (preferred, confidence) =
                if first { (Preferred::First, p_first) } else { (Preferred::Second, 1.0 - p_first) };
            Judgment { preferred, confidence, annotator: format!("sim:{}", annotator.name) }
        };
        Ok(items.iter().map(judgment).collect())
    }
}

/// Every name [`judge_by_name`] knows.
pub const JUDGE_NAMES: &[&str] = &[GoldJudge::NAME, PanelJudge::NAME];

/// The judge a config names, among those without libtorch: `gold` ([`GoldJudge`]) and `sim:panel`
/// ([`PanelJudge`] with the default [`Panel`], its noise seeded with `seed`; `gold` ignores the seed).
/// `None` for any other name (reward-model and AI judges live in the crates that run models).
pub fn judge_by_name(name: &str, seed: u64) -> Option<Box<dyn Judge>> {
    match name {
        GoldJudge::NAME => Some(Box::new(GoldJudge)),
        PanelJudge::NAME => Some(Box::new(PanelJudge::new(Panel::default(), seed))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate, Annotator, TaskConfig};

    const PROMPT: &str = "User: Tell me about the cat.\nAssistant:";
    /// On topic 2, courtesy 1.5, sentiment 0.5, length −1 (one content sentence), ending 0.5.
    const POLITE: &str = " Sure! The cat is lovely. I hope this helps.";
    /// Off topic −2, rude −2, negative −0.5, length −1, ending 0.5.
    const RUDE: &str = " Whatever. The river is dull.";

    #[test]
    fn gold_scores_by_the_rule_and_prefers_the_polite_on_topic_answer() {
        assert_eq!(GoldJudge.score(&[(PROMPT, POLITE), (PROMPT, RUDE)]).unwrap(), Some(vec![3.5, -5.0]));
        let judged =
            GoldJudge.compare(&[(PROMPT, POLITE, RUDE), (PROMPT, RUDE, POLITE), (PROMPT, RUDE, RUDE)]).unwrap();
        let gold = |preferred, confidence| Judgment { preferred, confidence, annotator: "gold".into() };
        assert_eq!(judged, [gold(Preferred::First, 1.0), gold(Preferred::Second, 1.0), gold(Preferred::Neither, 0.5)]);
    }

    #[test]
    fn panel_judge_labels_exactly_as_label_pairs() {
        let demos = generate(&TaskConfig { demonstrations: 41, ..TaskConfig::default() }).demonstrations;
        let mut pairs: Vec<_> = demos
            .windows(2)
            .map(|w| (w[0].id.clone(), w[0].prompt.clone(), w[0].response.clone(), w[1].response.clone()))
            .collect();
        pairs.insert(7, ("same".into(), PROMPT.into(), POLITE.into(), POLITE.into()));
        let (labelled, _) = Panel::default().label_pairs(3, &pairs);
        let items: Vec<_> = pairs.iter().map(|(_, p, a, b)| (p.as_str(), a.as_str(), b.as_str())).collect();
        let judged = PanelJudge::new(Panel::default(), 3).compare(&items).unwrap();

        assert_eq!(
            judged[7],
            Judgment { preferred: Preferred::Neither, confidence: 0.5, annotator: "sim:panel".into() }
        );
        let decided: Vec<_> = items.iter().zip(&judged).filter(|(_, j)| j.preferred != Preferred::Neither).collect();
        assert_eq!(decided.len(), labelled.len());
        for (c, (&(_, a, b), j)) in labelled.iter().zip(decided) {
            let chosen = if j.preferred == Preferred::First { a } else { b };
            assert_eq!(c.chosen, chosen);
            assert_eq!(j.annotator, format!("sim:{}", c.annotator.as_deref().unwrap()));
        }
    }

    #[test]
    fn panel_judge_noise_goes_on_across_calls_and_confidence_is_bradley_terry() {
        let items = vec![(PROMPT, POLITE, RUDE); 40];
        let whole = PanelJudge::new(Panel::default(), 5).compare(&items).unwrap();
        let judge = PanelJudge::new(Panel::default(), 5);
        let halves = [judge.compare(&items[..15]).unwrap(), judge.compare(&items[15..]).unwrap()].concat();
        assert_eq!(whole, halves);

        // Gold 3.5 against −5 at τ = 8.5: P(first) = σ(1) = 0.7310585786300049.
        let steady = Panel { annotators: vec![Annotator { name: "steady".into(), temperature: 8.5, flip_rate: 0.0 }] };
        let judged = PanelJudge::new(steady, 0).compare(&items).unwrap();
        for j in &judged {
            let expected = if j.preferred == Preferred::First { 0.7310585786300049 } else { 1.0 - 0.7310585786300049 };
            assert!((j.confidence - expected).abs() < 1e-12, "{j:?}");
            assert_eq!(j.annotator, "sim:steady");
        }
        assert!(judged.iter().any(|j| j.preferred == Preferred::Second), "σ(1) should lose sometimes in 40 draws");
    }

    #[test]
    fn judges_are_found_by_name() {
        for name in JUDGE_NAMES {
            assert_eq!(judge_by_name(name, 0).expect("a known name").name(), *name);
        }
        assert!(judge_by_name("rm:runs/x/rm/final", 0).is_none());
        let named = judge_by_name("sim:panel", 9).unwrap().compare(&[(PROMPT, POLITE, RUDE); 8]).unwrap();
        assert_eq!(named, PanelJudge::new(Panel::default(), 9).compare(&[(PROMPT, POLITE, RUDE); 8]).unwrap());
    }
}
