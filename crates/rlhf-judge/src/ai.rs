//! The AI judge: a language model asked a principle's comparison question about two responses,
//! once in each order, the preference read from the probability it gives the letters `A` and `B`.

use std::cell::RefCell;

use rlhf_data::{ChatMessage, Judge, Judgment, Preferred};

use crate::cache::Cache;
use crate::constitution::{Constitution, Principle};
use crate::Result;

/// A model that answers a judging conversation with a letter.
pub trait Letters {
    /// The model's name: judgments are tagged `ai:<model>`, the cache is keyed by it.
    fn model(&self) -> String;
    /// For each conversation, the probability that the answer is `A` rather than `B`; `None` when
    /// the model's answer names neither.
    fn p_a(&self, conversations: &[Vec<ChatMessage>]) -> Result<Vec<Option<f64>>>;
}

/// The question put to the judge: the principle's comparison question, the conversation and the two
/// responses as A and B, and the instruction to answer with one letter.
pub fn judging_conversation(principle: &Principle, prompt: &str, a: &str, b: &str) -> Vec<ChatMessage> {
    let question = format!(
        "{}\n\n[Conversation]\n{}\n\n[Response A]\n{}\n\n[Response B]\n{}\n\nAnswer with one letter, A or B.",
        principle.comparison,
        prompt.trim(),
        a.trim(),
        b.trim()
    );
    vec![ChatMessage::new("user", question)]
}

/// What the judge said about one pair: the principle asked, and P(A) with the pair as given
/// (`p_ab`) and swapped (`p_ba`).
#[derive(Clone, Debug, PartialEq)]
pub struct AiVerdict {
    pub principle: String,
    pub p_ab: Option<f64>,
    pub p_ba: Option<f64>,
}

impl AiVerdict {
    /// P(first is better), both orders averaged (one when the other is unreadable, 0.5 when neither).
    pub fn p_first(&self) -> f64 {
        match (self.p_ab, self.p_ba) {
            (Some(ab), Some(ba)) => (ab + (1.0 - ba)) / 2.0,
            (Some(ab), None) => ab,
            (None, Some(ba)) => 1.0 - ba,
            (None, None) => 0.5,
        }
    }

    /// Whether both orders prefer the same response (`None` unless both were read).
    pub fn consistent(&self) -> Option<bool> {
        Some((self.p_ab? > 0.5) == (self.p_ba? < 0.5))
    }

    pub fn judgment(&self, annotator: String) -> Judgment {
        let p = self.p_first();
        let preferred = if p > 0.5 {
            Preferred::First
        } else if p < 0.5 {
            Preferred::Second
        } else {
            Preferred::Neither
        };
        Judgment { preferred, confidence: p.max(1.0 - p), annotator }
    }
}

/// A model judging by a constitution: each pair is asked about one principle (drawn from the pair's
/// texts and the seed, so the same pair always meets the same principle), in both orders.
pub struct AiJudge {
    letters: Box<dyn Letters>,
    pub constitution: Constitution,
    pub seed: u64,
    cache: Option<RefCell<Cache>>,
}

impl AiJudge {
    pub fn new(letters: Box<dyn Letters>, constitution: Constitution, seed: u64) -> Self {
        AiJudge { letters, constitution, seed, cache: None }
    }

    /// Keeps every answer in `cache` and asks the model only what it lacks.
    pub fn with_cache(mut self, cache: Cache) -> Self {
        self.cache = Some(RefCell::new(cache));
        self
    }

    /// How many pairs the cache answers.
    pub fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.borrow().len())
    }

    /// The principle pair (prompt, a, b) is judged by.
    pub fn principle_for(&self, prompt: &str, a: &str, b: &str) -> &Principle {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ self.seed;
        for byte in [prompt, a, b].iter().flat_map(|part| part.bytes().chain([0])) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        &self.constitution.principles[(hash % self.constitution.principles.len() as u64) as usize]
    }

    /// Each pair's verdict, from the cache where it has one.
    pub fn verdicts(&self, items: &[(&str, &str, &str)]) -> Result<Vec<AiVerdict>> {
        let model = self.letters.model();
        let mut verdicts: Vec<Option<AiVerdict>> = Vec::with_capacity(items.len());
        let mut missing = Vec::new();
        for (index, &(prompt, a, b)) in items.iter().enumerate() {
            let principle = &self.principle_for(prompt, a, b).name;
            let cached = self.cache.as_ref().and_then(|c| c.borrow().get(&model, principle, prompt, a, b));
            if cached.is_none() {
                missing.push(index);
            }
            verdicts.push(cached);
        }
        // Ask in chunks, each kept in the cache before the next: a killed run resumes there.
        for chunk in missing.chunks(16) {
            let conversations: Vec<Vec<ChatMessage>> = chunk
                .iter()
                .flat_map(|&index| {
                    let (prompt, a, b) = items[index];
                    let principle = self.principle_for(prompt, a, b);
                    [judging_conversation(principle, prompt, a, b), judging_conversation(principle, prompt, b, a)]
                })
                .collect();
            let answers = self.letters.p_a(&conversations)?;
            for (&index, pair) in chunk.iter().zip(answers.chunks(2)) {
                let (prompt, a, b) = items[index];
                let verdict = AiVerdict {
                    principle: self.principle_for(prompt, a, b).name.clone(),
                    p_ab: pair[0],
                    p_ba: pair[1],
                };
                if let Some(cache) = &self.cache {
                    cache.borrow_mut().put(&model, prompt, a, b, &verdict)?;
                }
                verdicts[index] = Some(verdict);
            }
        }
        Ok(verdicts.into_iter().map(|v| v.expect("every pair was judged")).collect())
    }
}

impl Judge for AiJudge {
    fn name(&self) -> String {
        format!("ai:{}", self.letters.model())
    }

    fn description(&self) -> String {
        format!(
            "{}: asked the `{}` constitution's comparison questions ({} principles), both orders averaged",
            self.name(),
            self.constitution.name,
            self.constitution.principles.len()
        )
    }

    fn score(&self, _items: &[(&str, &str)]) -> rlhf_data::Result<Option<Vec<f64>>> {
        Ok(None)
    }

    fn compare(&self, items: &[(&str, &str, &str)]) -> rlhf_data::Result<Vec<Judgment>> {
        let verdicts =
            self.verdicts(items).map_err(|e| rlhf_data::Error::Judge { judge: self.name(), message: e.to_string() })?;
        Ok(verdicts.iter().map(|v| v.judgment(self.name())).collect())
    }
}

/// The comparisons `verdicts` make of `pairs` (id, prompt, first, second), tagged `annotator`, the
/// confidence kept as the margin (2 × confidence − 1); and how many pairs were undecided (dropped).
pub fn comparisons(
    pairs: &[(String, String, String, String)],
    verdicts: &[AiVerdict],
    annotator: &str,
) -> (Vec<rlhf_data::Comparison>, usize) {
    let mut out = Vec::with_capacity(pairs.len());
    let mut undecided = 0;
    for ((id, prompt, a, b), verdict) in pairs.iter().zip(verdicts) {
        let judgment = verdict.judgment(annotator.to_string());
        let (chosen, rejected) = match judgment.preferred {
            Preferred::First => (a, b),
            Preferred::Second => (b, a),
            Preferred::Neither => {
                undecided += 1;
                continue;
            }
        };
        out.push(rlhf_data::Comparison {
            id: id.clone(),
            prompt: prompt.clone(),
            chosen: chosen.clone(),
            rejected: rejected.clone(),
            margin: Some((2.0 * judgment.confidence - 1.0) as f32),
            annotator: Some(annotator.to_string()),
            source: Some(format!("ai-judge:{}", verdict.principle)),
            prompt_messages: None,
            objective: None,
        });
    }
    (out, undecided)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Prefers whichever response holds "good", with a bias of `bias` towards A.
    struct Biased {
        bias: f64,
        calls: Rc<Cell<usize>>,
    }

    impl Letters for Biased {
        fn model(&self) -> String {
            "biased".into()
        }
        fn p_a(&self, conversations: &[Vec<ChatMessage>]) -> Result<Vec<Option<f64>>> {
            self.calls.set(self.calls.get() + conversations.len());
            Ok(conversations
                .iter()
                .map(|c| {
                    let text = &c[0].content;
                    let a = &text[text.find("[Response A]").unwrap()..text.find("[Response B]").unwrap()];
                    let base = if a.contains("good") { 0.7 } else { 0.3 };
                    Some((base + self.bias).min(1.0))
                })
                .collect())
        }
    }

    fn constitution() -> Constitution {
        Constitution::parse(
            "name = \"t\"\n[[principle]]\nname = \"p\"\ncritique = \"c\"\nrevision = \"r\"\ncomparison = \"Which is good?\"",
        )
        .unwrap()
    }

    #[test]
    fn both_orders_cancel_a_position_bias_and_the_cache_answers_reruns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.jsonl");
        let calls = Rc::new(Cell::new(0));
        let biased = || Box::new(Biased { bias: 0.25, calls: calls.clone() });
        let judge = AiJudge::new(biased(), constitution(), 0).with_cache(Cache::open(&path).unwrap());
        let items = [("q", "a good one", "a bad one"), ("q", "a bad one", "a good one")];
        let verdicts = judge.verdicts(&items).unwrap();
        // Asked as given: P(A) = 0.95; swapped: 0.55. Averaged: (0.95 + 0.45) / 2 = 0.7.
        assert!((verdicts[0].p_first() - 0.7).abs() < 1e-12 && (verdicts[1].p_first() - 0.3).abs() < 1e-12);
        assert_eq!(verdicts[0].consistent(), Some(false), "the bias makes A win both orders");
        let judgments = judge.compare(&items).unwrap();
        assert_eq!((judgments[0].preferred, judgments[1].preferred), (Preferred::First, Preferred::Second));
        assert_eq!(judgments[0].annotator, "ai:biased");
        assert_eq!(calls.get(), 4, "the second call came from the cache");
        drop(judge);
        let again = AiJudge::new(biased(), constitution(), 0).with_cache(Cache::open(&path).unwrap());
        assert_eq!(again.verdicts(&items).unwrap(), verdicts);
        assert_eq!(calls.get(), 4, "a rerun costs nothing");
    }
}
