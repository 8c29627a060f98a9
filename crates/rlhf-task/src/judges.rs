//! The task's feedback sources behind the shared [`Judge`] interface: the gold rule ([`GoldJudge`],
//! whole or by objective) and the simulated annotators ([`PanelJudge`]), and [`judge_by_name`] to
//! pick one from a config.

use std::cell::RefCell;

use rlhf_data::{judgments_from_scores, Judge, Judgment, Preferred, Result};

use crate::annotators::{Decision, Panel};
use crate::judge::judge;
use crate::objective::Objective;
use crate::rng::TaskRng;

/// The gold rule ([`judge()`]) as a judge, scoring by an [`Objective`] (the whole rule by
/// default): it scores, and prefers the higher score with certainty. Tagged `gold` for the whole
/// rule, `gold:<objective>` otherwise (`gold:helpful`, `gold:harmless`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoldJudge {
    pub objective: Objective,
}

impl Default for GoldJudge {
    fn default() -> Self {
        GoldJudge { objective: Objective::OVERALL }
    }
}

impl GoldJudge {
    pub const NAME: &'static str = "gold";

    fn scores<'a>(&self, items: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<f64> {
        items.map(|(prompt, response)| self.objective.score(&judge(prompt, response))).collect()
    }
}

impl Judge for GoldJudge {
    fn name(&self) -> String {
        match self.objective {
            Objective::OVERALL => Self::NAME.into(),
            objective => format!("{}:{objective}", Self::NAME),
        }
    }

    fn description(&self) -> String {
        let rule = "the embedded task's gold rule: on topic, courteous, positive, concise, not repetitive, ends properly (best 5.5)";
        match self.objective {
            Objective::OVERALL => rule.into(),
            Objective::HELPFUL => {
                format!("{rule}; its helpful part, without rude phrases and negative adjectives (best 5.5)")
            }
            Objective::HARMLESS => {
                format!("{rule}; its harmless part: −2 per rude phrase, −0.5 per negative adjective (best 0)")
            }
            Objective { helpful, harmless } => {
                format!("{rule}; {helpful} × its helpful part + {harmless} × its harmless part")
            }
        }
    }

    fn score(&self, items: &[(&str, &str)]) -> Result<Option<Vec<f64>>> {
        Ok(Some(self.scores(items.iter().copied())))
    }

    fn compare(&self, items: &[(&str, &str, &str)]) -> Result<Vec<Judgment>> {
        let first = self.scores(items.iter().map(|&(prompt, a, _)| (prompt, a)));
        let second = self.scores(items.iter().map(|&(prompt, _, b)| (prompt, b)));
        judgments_from_scores(&self.name(), &first, &second)
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
            let Decision { annotator, first, gold: (ga, gb) } =
                self.panel.decide(&mut rng, Objective::OVERALL, prompt, a, b);
            let p_first = annotator.probability_first(ga, gb);
            let (preferred, confidence) =
                if first { (Preferred::First, p_first) } else { (Preferred::Second, 1.0 - p_first) };
            Judgment { preferred, confidence, annotator: format!("sim:{}", annotator.name) }
        };
        Ok(items.iter().map(judgment).collect())
    }
}

/// Every name [`judge_by_name`] knows (besides `gold:<any objective>`, e.g.
/// `gold:helpful=0.7,harmless=0.3`).
pub const JUDGE_NAMES: &[&str] = &[GoldJudge::NAME, "gold:helpful", "gold:harmless", PanelJudge::NAME];

/// The judge a config names, among those without libtorch: `gold` ([`GoldJudge`]; `gold:<objective>`
/// by an [`Objective`]) and `sim:panel` ([`PanelJudge`] with the default [`Panel`], its noise seeded
/// with `seed`; `gold` ignores the seed). `None` for any other name (reward-model and AI judges live
/// in the crates that run models).
pub fn judge_by_name(name: &str, seed: u64) -> Option<Box<dyn Judge>> {
    if let Some(objective) = name.strip_prefix("gold:") {
        return Objective::parse(objective).ok().map(|objective| Box::new(GoldJudge { objective }) as Box<dyn Judge>);
    }
    match name {
        GoldJudge::NAME => Some(Box::new(GoldJudge::default())),
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
        let gold_judge = GoldJudge::default();
        assert_eq!(gold_judge.score(&[(PROMPT, POLITE), (PROMPT, RUDE)]).unwrap(), Some(vec![3.5, -5.0]));
        let judged =
            gold_judge.compare(&[(PROMPT, POLITE, RUDE), (PROMPT, RUDE, POLITE), (PROMPT, RUDE, RUDE)]).unwrap();
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
        let (labelled, _) = Panel::default().label_pairs(Objective::OVERALL, 3, &pairs);
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
    fn gold_by_objective_scores_its_part() {
        // RUDE: harmless −2 (rude) − 0.5 (dull) = −2.5; helpful −5 + 2.5 = −2.5.
        let helpful = judge_by_name("gold:helpful", 0).unwrap();
        let harmless = judge_by_name("gold:harmless", 0).unwrap();
        assert_eq!(helpful.score(&[(PROMPT, POLITE), (PROMPT, RUDE)]).unwrap(), Some(vec![3.5, -2.5]));
        assert_eq!(harmless.score(&[(PROMPT, POLITE), (PROMPT, RUDE)]).unwrap(), Some(vec![0.0, -2.5]));
        let judged = harmless.compare(&[(PROMPT, POLITE, RUDE)]).unwrap();
        assert_eq!(
            judged[0],
            Judgment { preferred: Preferred::First, confidence: 1.0, annotator: "gold:harmless".into() }
        );
        let mix = judge_by_name("gold:helpful=0.5,harmless=0.5", 0).unwrap();
        assert_eq!(mix.name(), "gold:helpful=0.5,harmless=0.5");
        assert!(judge_by_name("gold:kind", 0).is_none());
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
