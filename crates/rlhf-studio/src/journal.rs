//! The labels, one JSON line each in `journal.jsonl` ([`rlhf_data::journal`]), appended and
//! fsynced before the server acknowledges them: what the server said it kept survives a kill -9 or
//! a power cut. (Live sampling keeps its batches of fresh items the same way, [`crate::live`].)

pub use rlhf_data::journal::Journal;
use serde::{Deserialize, Serialize};

/// One annotator's verdict on one item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub annotator: String,
    /// The item's id.
    pub item: String,
    pub verdict: Verdict,
    /// Why, in the annotator's words (may be empty).
    #[serde(default)]
    pub rationale: String,
    /// When the server received it (RFC 3339, UTC).
    pub time: String,
}

/// A ranking, or a skip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// `levels[i]` is response `i`'s place, 0 the best; equal places are ties.
    Ranked { levels: Vec<u32> },
    /// The annotator chose not to judge the item.
    Skipped,
    /// A study's vote that neither response is acceptable.
    BothBad,
}
