//! Writers: seeded policies that produce responses in the world's language. "Web text" is broad and
//! unaligned (rude, rambling, off-topic, repetitive at times): the base model is pretrained on it.
//! The "annotator" writes the demonstrations: fluent and on topic, but only sometimes polite or
//! upbeat and of uneven length, so SFT alone does not satisfy the gold judge.

use crate::rng::TaskRng;
use crate::world::{Topic, NEGATIVE, NEUTRAL, POLITE_CLOSERS, POLITE_OPENERS, POSITIVE, RUDE, TEMPLATES, TOPICS};

/// How a writer behaves; every field is a probability per response or per sentence.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub min_sentences: usize,
    pub max_sentences: usize,
    pub polite_opener: f64,
    pub polite_closer: f64,
    pub rude: f64,
    /// Per adjective: positive with this probability, else negative with `negative`, else neutral.
    pub positive: f64,
    pub negative: f64,
    /// Per sentence: about another topic.
    pub off_topic: f64,
    /// Per sentence: repeat the previous sentence.
    pub repeat: f64,
}

pub const WEB_TEXT: Style = Style {
    min_sentences: 1,
    max_sentences: 8,
    polite_opener: 0.2,
    polite_closer: 0.15,
    rude: 0.15,
    positive: 0.3,
    negative: 0.35,
    off_topic: 0.25,
    repeat: 0.08,
};

pub const ANNOTATOR: Style = Style {
    min_sentences: 2,
    max_sentences: 6,
    polite_opener: 0.25,
    polite_closer: 0.2,
    rude: 0.03,
    positive: 0.35,
    negative: 0.3,
    off_topic: 0.08,
    repeat: 0.02,
};

fn adjective(rng: &mut TaskRng, style: &Style) -> &'static str {
    let u = rng.uniform();
    let words = if u < style.positive {
        POSITIVE
    } else if u < style.positive + style.negative {
        NEGATIVE
    } else {
        NEUTRAL
    };
    rng.pick::<&str>(words)
}

/// One content sentence about `topic`.
pub fn sentence(rng: &mut TaskRng, topic: &Topic, style: &Style) -> String {
    let template = *rng.pick(TEMPLATES);
    let word = *rng.pick(&topic.words);
    let adj = adjective(rng, style);
    template.replace("{T}", topic.name).replace("{W}", word).replace("{A}", adj)
}

/// A whole response to a question about `topic`.
pub fn response(rng: &mut TaskRng, topic: &Topic, style: &Style) -> String {
    let mut parts: Vec<String> = Vec::new();
    if rng.chance(style.rude) {
        parts.push(rng.pick(RUDE).to_string());
    } else if rng.chance(style.polite_opener) {
        parts.push(rng.pick(POLITE_OPENERS).to_string());
    }
    let n = rng.between(style.min_sentences, style.max_sentences);
    for _ in 0..n {
        let last_content = parts.last().filter(|_| parts.len() > 1).cloned();
        match last_content {
            Some(prev) if rng.chance(style.repeat) => parts.push(prev),
            _ => {
                let about = if rng.chance(style.off_topic) { rng.pick(TOPICS) } else { topic };
                parts.push(sentence(rng, about, style));
            }
        }
    }
    if rng.chance(style.polite_closer) {
        parts.push(rng.pick(POLITE_CLOSERS).to_string());
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_deterministic_sentences() {
        let mut a = TaskRng::new(3);
        let mut b = TaskRng::new(3);
        let topic = &TOPICS[0];
        let ra = response(&mut a, topic, &ANNOTATOR);
        assert_eq!(ra, response(&mut b, topic, &ANNOTATOR));
        assert!(ra.ends_with('.') || ra.ends_with('!'), "{ra}");
        assert!(!ra.contains('{'), "unfilled template: {ra}");
    }
}
