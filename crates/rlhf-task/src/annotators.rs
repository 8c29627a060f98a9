//! Simulated annotators: they label pairs the way noisy humans would, by Bradley–Terry on the gold
//! judge's scores, `P(a ≻ b) = σ((g(a) − g(b)) / τ)`, and now and then simply disagree (a flip).
//! A panel of annotators with different τ plays a labelling team; rankings of K responses follow the
//! matching Plackett–Luce model (Gumbel-max on g/τ), which reduces to Bradley–Terry for K = 2.
//! The score `g` is the gold rule's by an [`Objective`]: the whole score, or its helpful or
//! harmless part, or a weighted mix.

use rlhf_data::{Comparison, Ranking};

use crate::judge::judge;
use crate::objective::Objective;
use crate::rng::TaskRng;

/// One simulated person.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotator {
    pub name: String,
    /// Bradley–Terry temperature τ: larger means noisier.
    pub temperature: f64,
    /// Probability of flipping a decision outright (disagreement beyond the BT noise).
    pub flip_rate: f64,
}

/// A labelling team; each item goes to one member, chosen at random.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub annotators: Vec<Annotator>,
}

impl Default for Panel {
    fn default() -> Self {
        let member = |name: &str, temperature, flip_rate| Annotator { name: name.into(), temperature, flip_rate };
        Panel {
            annotators: vec![member("careful", 0.3, 0.02), member("typical", 0.6, 0.05), member("hasty", 1.2, 0.1)],
        }
    }
}

/// What a labelling pass did, for the logs and the report.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LabelStats {
    pub pairs: usize,
    /// Pairs dropped because both responses were the same text.
    pub identical: usize,
    /// Pairs dropped because the objective scores both responses the same (per-objective labels
    /// only: "equally harmless" is no preference).
    pub ties: usize,
    /// Of the labelled pairs whose gold scores differ: the share where the label agrees with gold
    /// (the ceiling for a reward model's accuracy against these labels).
    pub gold_agreement: f64,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Annotator {
    /// The Bradley–Terry probability that this annotator prefers the response scored `gold_a` over
    /// the one scored `gold_b`, before flips.
    pub fn probability_first(&self, gold_a: f64, gold_b: f64) -> f64 {
        sigmoid((gold_a - gold_b) / self.temperature)
    }

    /// Whether this annotator prefers the response scored `gold_a` over the one scored `gold_b`.
    pub fn prefers_first(&self, rng: &mut TaskRng, gold_a: f64, gold_b: f64) -> bool {
        let choice = rng.chance(self.probability_first(gold_a, gold_b));
        choice != rng.chance(self.flip_rate)
    }

    /// An ordering of responses scored `gold`, best first.
    pub fn rank(&self, rng: &mut TaskRng, gold: &[f64]) -> Vec<u32> {
        let mut keyed: Vec<(f64, u32)> =
            gold.iter().enumerate().map(|(i, g)| (g / self.temperature + rng.gumbel(), i as u32)).collect();
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
        keyed.into_iter().map(|(_, i)| i).collect()
    }
}

/// One member's decision on a pair of different responses.
pub(crate) struct Decision<'a> {
    pub annotator: &'a Annotator,
    pub first: bool,
    /// The gold scores of the first and the second response.
    pub gold: (f64, f64),
}

impl Panel {
    fn member(&self, rng: &mut TaskRng) -> &Annotator {
        rng.pick(&self.annotators)
    }

    /// The noise stream [`Panel::label_pairs`] draws from for `seed`.
    pub(crate) fn label_rng(seed: u64) -> TaskRng {
        TaskRng::derive(seed, "label")
    }

    /// Hands the pair `a`, `b` (different texts) to a member drawn from `rng`, who decides by
    /// `objective`.
    pub(crate) fn decide(
        &self,
        rng: &mut TaskRng,
        objective: Objective,
        prompt: &str,
        a: &str,
        b: &str,
    ) -> Decision<'_> {
        let annotator = self.member(rng);
        let gold = (objective.score(&judge(prompt, a)), objective.score(&judge(prompt, b)));
        let first = annotator.prefers_first(rng, gold.0, gold.1);
        Decision { annotator, first, gold }
    }

    /// Labels pairs of responses to the same prompt by `objective` (recorded in each row): `(id,
    /// prompt, a, b)` rows become comparisons.
    pub fn label_pairs(
        &self,
        objective: Objective,
        seed: u64,
        pairs: &[(String, String, String, String)],
    ) -> (Vec<Comparison>, LabelStats) {
        let mut rng = Self::label_rng(seed);
        let mut out = Vec::with_capacity(pairs.len());
        let (mut identical, mut decided, mut agreed) = (0usize, 0usize, 0usize);
        for (id, prompt, a, b) in pairs {
            if a == b {
                identical += 1;
                continue;
            }
            let Decision { annotator, first, gold: (ga, gb) } = self.decide(&mut rng, objective, prompt, a, b);
            if ga != gb {
                decided += 1;
                agreed += usize::from(first == (ga > gb));
            }
            let (chosen, rejected) = if first { (a, b) } else { (b, a) };
            out.push(Comparison {
                id: id.clone(),
                prompt: prompt.clone(),
                chosen: chosen.clone(),
                rejected: rejected.clone(),
                margin: None,
                annotator: Some(annotator.name.clone()),
                source: Some("simulated-annotators".into()),
                prompt_messages: None,
                objective: Some(objective.to_string()),
            });
        }
        let gold_agreement = if decided == 0 { 1.0 } else { agreed as f64 / decided as f64 };
        let stats = LabelStats { pairs: out.len(), identical, ties: 0, gold_agreement };
        (out, stats)
    }

    /// Ranks groups of responses by `objective`: `(id, prompt, responses)` rows become rankings.
    pub fn rank_groups(
        &self,
        objective: Objective,
        seed: u64,
        groups: &[(String, String, Vec<String>)],
    ) -> Vec<Ranking> {
        let mut rng = TaskRng::derive(seed, "rank");
        groups
            .iter()
            .map(|(id, prompt, responses)| {
                let gold: Vec<f64> = responses.iter().map(|r| objective.score(&judge(prompt, r))).collect();
                let member = self.member(&mut rng);
                let ranking = member.rank(&mut rng, &gold);
                Ranking {
                    id: id.clone(),
                    prompt: prompt.clone(),
                    responses: responses.clone(),
                    ranking,
                    prompt_messages: None,
                    annotator: Some(member.name.clone()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bradley_terry_rate_matches_sigmoid() {
        let annotator = Annotator { name: "t".into(), temperature: 0.5, flip_rate: 0.0 };
        let mut rng = TaskRng::new(11);
        let n = 40_000;
        let wins = (0..n).filter(|_| annotator.prefers_first(&mut rng, 1.0, 0.5)).count();
        let expected = sigmoid(1.0);
        assert!((wins as f64 / n as f64 - expected).abs() < 0.01, "{wins} vs {expected}");
    }

    #[test]
    fn flips_and_identical_pairs_are_accounted() {
        let panel =
            Panel { annotators: vec![Annotator { name: "contrarian".into(), temperature: 1e-6, flip_rate: 1.0 }] };
        let prompt = "User: Tell me about the cat.\nAssistant:".to_string();
        let good = " Sure! The cat is lovely.".to_string();
        let bad = " Whatever. The river is dull.".to_string();
        let pairs = vec![
            ("p0".into(), prompt.clone(), good.clone(), bad.clone()),
            ("p1".into(), prompt.clone(), good.clone(), good.clone()),
        ];
        let (labelled, stats) = panel.label_pairs(Objective::OVERALL, 0, &pairs);
        assert_eq!(labelled.len(), 1);
        assert_eq!(labelled[0].chosen, bad, "a contrarian always flips");
        assert_eq!(stats, LabelStats { pairs: 1, identical: 1, ties: 0, gold_agreement: 0.0 });
    }

    #[test]
    fn rankings_are_permutations_led_by_the_best_when_noise_is_low() {
        let panel = Panel { annotators: vec![Annotator { name: "sharp".into(), temperature: 1e-3, flip_rate: 0.0 }] };
        let prompt = "User: Tell me about the cat.\nAssistant:".to_string();
        let responses = vec![
            " Whatever.".into(),
            " Sure! The cat is lovely. I hope this helps.".into(),
            " The cat is dull.".into(),
        ];
        let ranked = panel.rank_groups(Objective::OVERALL, 0, &[("g".into(), prompt, responses)]);
        assert_eq!(ranked[0].ranking, vec![1, 2, 0]);
    }
}
