//! The little world the embedded task talks about: topics, their words, adjectives by sentiment,
//! courtesy phrases, and the sentence templates every writer (web text, annotator) draws from.

/// A subject a prompt can ask about, with the words that keep a response on topic.
#[derive(Debug, Clone, Copy)]
pub struct Topic {
    pub name: &'static str,
    pub words: [&'static str; 4],
}

pub const TOPICS: &[Topic] = &[
    Topic { name: "cat", words: ["whiskers", "paws", "fur", "naps"] },
    Topic { name: "dog", words: ["tail", "bark", "walks", "bones"] },
    Topic { name: "garden", words: ["flowers", "soil", "seeds", "roses"] },
    Topic { name: "river", words: ["water", "stones", "current", "banks"] },
    Topic { name: "city", words: ["streets", "lights", "buildings", "crowds"] },
    Topic { name: "ocean", words: ["waves", "tides", "shells", "shore"] },
    Topic { name: "forest", words: ["trees", "leaves", "moss", "trails"] },
    Topic { name: "mountain", words: ["peaks", "snow", "rocks", "cliffs"] },
    Topic { name: "kitchen", words: ["bread", "oven", "spices", "soup"] },
    Topic { name: "library", words: ["books", "pages", "shelves", "stories"] },
    Topic { name: "train", words: ["tracks", "station", "rails", "wagons"] },
    Topic { name: "winter", words: ["frost", "ice", "scarves", "fireplaces"] },
    Topic { name: "music", words: ["songs", "rhythm", "melody", "drums"] },
    Topic { name: "school", words: ["lessons", "teachers", "desks", "homework"] },
    Topic { name: "bicycle", words: ["wheels", "pedals", "gears", "bells"] },
    Topic { name: "rain", words: ["clouds", "puddles", "drops", "umbrellas"] },
    Topic { name: "coffee", words: ["beans", "cups", "aroma", "mornings"] },
    Topic { name: "moon", words: ["night", "stars", "craters", "sky"] },
    Topic { name: "market", words: ["fruit", "stalls", "vendors", "baskets"] },
    Topic { name: "island", words: ["sand", "palms", "boats", "lagoons"] },
];

pub const POSITIVE: &[&str] =
    &["wonderful", "lovely", "bright", "gentle", "warm", "delightful", "cheerful", "beautiful", "pleasant", "charming"];
pub const NEGATIVE: &[&str] =
    &["boring", "dull", "gloomy", "awful", "dreary", "messy", "tiresome", "ugly", "harsh", "grim"];
pub const NEUTRAL: &[&str] = &["big", "small", "old", "round", "busy", "long", "green", "plain", "tall", "wide"];

/// Openers the judge counts as polite.
pub const POLITE_OPENERS: &[&str] = &["Sure!", "Of course!", "Happy to help.", "Great question!"];
/// Closers the judge counts as polite.
pub const POLITE_CLOSERS: &[&str] = &["I hope this helps.", "Thank you for asking.", "Have a nice day."];
/// Phrases the judge counts as rude.
pub const RUDE: &[&str] = &["Ugh, fine.", "Whatever.", "Not this again.", "Figure it out yourself."];

/// Content sentences. `{T}` is the subject, `{W}` one of its words, `{A}` an adjective.
pub const TEMPLATES: &[&str] = &[
    "The {T} is {A}.",
    "The {W} of the {T} are {A}.",
    "I think the {T} has {A} {W}.",
    "You can find {W} near the {T}.",
    "Many people say the {T} feels {A}.",
    "People often talk about the {W}.",
    "Every {T} has its own {W}.",
    "In the evening the {W} look {A}.",
    "Some days the {T} seems {A}.",
    "The {W} make the {T} special.",
];

/// Questions a user asks; `{T}` is the topic.
pub const QUESTIONS: &[&str] = &[
    "Tell me about the {T}.",
    "What do you think of the {T}?",
    "Describe the {T} in a few words.",
    "Can you write something about the {T}?",
    "Say something nice about the {T}.",
    "What is the {T} like?",
];

/// The prompt a model sees for a question.
pub fn prompt_for(question: &str) -> String {
    format!("User: {question}\nAssistant:")
}

/// The topic a prompt asks about, if any (the first topic name that appears as a word).
pub fn topic_of(prompt: &str) -> Option<&'static Topic> {
    let words: Vec<String> = words(prompt).collect();
    TOPICS.iter().find(|t| words.iter().any(|w| w == t.name))
}

/// Lower-cased alphabetic words of a text.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| !w.is_empty()).map(|w| w.to_ascii_lowercase())
}

/// Sentences of a response: split after `.`, `!` or `?`; a trailing fragment counts as a sentence too.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?') {
            let s = text[start..=i].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = i + 1;
        }
    }
    let tail = text[start..].trim();
    if !tail.is_empty() {
        out.push(tail);
    }
    out
}
