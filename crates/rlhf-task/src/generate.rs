//! The task's tables: train and held-out prompts, demonstrations by the annotator writer, and the
//! web-text corpus the base model is pretrained on. Each is a pure function of the seed.

use rlhf_data::{Demonstration, Prompt};

use crate::rng::TaskRng;
use crate::world::{prompt_for, QUESTIONS, TOPICS};
use crate::writer::{self, ANNOTATOR, WEB_TEXT};

/// Sizes and seed of the generated task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    pub seed: u64,
    /// Distinct prompts kept aside for evaluation (never trained on).
    pub heldout_prompts: usize,
    /// Demonstrations for SFT, on training prompts.
    pub demonstrations: usize,
    /// Held-out demonstrations (for perplexity), on held-out prompts.
    pub heldout_demonstrations: usize,
    /// Web-text documents for pretraining the base model.
    pub corpus_documents: usize,
    /// Prompts as a chat user's bare question (for a model with a chat template, which frames the
    /// turns itself) instead of the base model's `User: ...\nAssistant:` frame; responses then
    /// have no leading space.
    pub chat: bool,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            seed: 0,
            heldout_prompts: 200,
            demonstrations: 4000,
            heldout_demonstrations: 400,
            corpus_documents: 40_000,
            chat: false,
        }
    }
}

/// The task's tables.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskData {
    pub train_prompts: Vec<Prompt>,
    pub heldout_prompts: Vec<Prompt>,
    pub demonstrations: Vec<Demonstration>,
    pub heldout_demonstrations: Vec<Demonstration>,
}

/// Short context sentences put before a question, to multiply the distinct prompts.
const PREFACES: &[&str] = &[
    "",
    "I have a question.",
    "I am curious.",
    "My friend loves the {T}.",
    "I visited the {T} yesterday.",
    "I am writing a story.",
    "Please answer briefly.",
    "It is a quiet afternoon.",
];

/// Every distinct question the world can ask, in a fixed order.
fn all_questions() -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (t, topic) in TOPICS.iter().enumerate() {
        for preface in PREFACES {
            for question in QUESTIONS {
                let text = format!("{preface} {question}").trim().replace("{T}", topic.name);
                out.push((t, text));
            }
        }
    }
    out
}

/// Generates prompts and demonstrations. Held-out prompts are distinct questions from training ones.
pub fn generate(config: &TaskConfig) -> TaskData {
    let mut questions = all_questions();
    let mut shuffle = TaskRng::derive(config.seed, "split");
    for i in (1..questions.len()).rev() {
        questions.swap(i, shuffle.below(i + 1));
    }
    let split = config.heldout_prompts.min(questions.len() / 2);
    let (heldout, train) = questions.split_at(split);
    let frame = |question: &str| if config.chat { question.to_owned() } else { prompt_for(question) };
    let as_prompts = |qs: &[(usize, String)], tag: &str| -> Vec<Prompt> {
        qs.iter()
            .enumerate()
            .map(|(i, (_, q))| Prompt { id: format!("{tag}-{i:05}"), prompt: frame(q), prompt_messages: None })
            .collect()
    };
    let demonstrate = |qs: &[(usize, String)], n: usize, tag: &str| -> Vec<Demonstration> {
        let mut rng = TaskRng::derive(config.seed, tag);
        (0..n)
            .map(|i| {
                let (topic, question) = &qs[rng.below(qs.len())];
                let body = writer::response(&mut rng, &TOPICS[*topic], &ANNOTATOR);
                let response = if config.chat { body } else { format!(" {body}") };
                Demonstration { id: format!("{tag}-{i:05}"), prompt: frame(question), prompt_messages: None, response }
            })
            .collect()
    };
    TaskData {
        train_prompts: as_prompts(train, "train"),
        heldout_prompts: as_prompts(heldout, "heldout"),
        demonstrations: demonstrate(train, config.demonstrations, "demo"),
        heldout_demonstrations: demonstrate(heldout, config.heldout_demonstrations, "heldout-demo"),
    }
}

/// Web-text documents for pretraining: mostly dialogues in the prompt format, some bare paragraphs.
pub fn corpus(seed: u64, documents: usize) -> Vec<String> {
    let questions = all_questions();
    let mut rng = TaskRng::derive(seed, "corpus");
    (0..documents)
        .map(|_| {
            let (topic, question) = &questions[rng.below(questions.len())];
            let body = writer::response(&mut rng, &TOPICS[*topic], &WEB_TEXT);
            if rng.chance(0.8) {
                format!("{} {body}", prompt_for(question))
            } else {
                body
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{judge, topic_of};

    fn small() -> TaskConfig {
        TaskConfig {
            seed: 5,
            heldout_prompts: 50,
            demonstrations: 300,
            heldout_demonstrations: 40,
            corpus_documents: 100,
            chat: false,
        }
    }

    #[test]
    fn generation_is_deterministic_and_held_out_is_disjoint() {
        let a = generate(&small());
        assert_eq!(a, generate(&small()));
        assert_eq!(a.heldout_prompts.len(), 50);
        let train: std::collections::HashSet<_> = a.train_prompts.iter().map(|p| &p.prompt).collect();
        assert!(a.heldout_prompts.iter().all(|p| !train.contains(&p.prompt)));
        assert!(a.heldout_demonstrations.iter().all(|d| !train.contains(&d.prompt)));
        assert_eq!(corpus(5, 100), corpus(5, 100));
    }

    /// The task only shows RLHF working if demonstrations leave room above them on the gold judge,
    /// and web text sits below them.
    #[test]
    fn demonstrations_leave_headroom_on_the_gold_judge() {
        let data = generate(&TaskConfig { demonstrations: 2000, ..small() });
        let mean = |pairs: Vec<(String, String)>| {
            pairs.iter().map(|(p, r)| judge(p, r).score).sum::<f64>() / pairs.len() as f64
        };
        let demos = mean(data.demonstrations.iter().map(|d| (d.prompt.clone(), d.response.clone())).collect());
        let mut rng = TaskRng::new(9);
        let web = mean(
            data.demonstrations
                .iter()
                .map(|d| {
                    let topic = topic_of(&d.prompt).unwrap();
                    (d.prompt.clone(), format!(" {}", writer::response(&mut rng, topic, &WEB_TEXT)))
                })
                .collect(),
        );
        assert!(web < demos && demos < 3.0, "web {web:.2}, demonstrations {demos:.2}, best 5.5");
    }
}
