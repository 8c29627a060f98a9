//! The Hugging Face dataset layouts [`crate::import()`] understands, and the conversion of one
//! input row (a JSON object) into a record.
//!
//! | kind           | format                     | keys                                   |
//! |----------------|----------------------------|----------------------------------------|
//! | comparisons    | `prompt-chosen-rejected`   | `prompt`, `chosen`, `rejected`         |
//! | comparisons    | `chosen-rejected`          | `chosen`, `rejected` (no `prompt`)     |
//! | demonstrations | `prompt-completion`        | `prompt`, `completion`                 |
//! | demonstrations | `prompt-response`          | `prompt`, `response`                   |
//! | demonstrations | `messages`                 | `messages`                             |
//! | prompts        | `prompt`                   | `prompt`                               |
//! | rankings       | `prompt-responses-ranking` | `prompt`, `responses`, `ranking`       |
//! | feedback       | `prompt-completion-label`  | `prompt`, `completion`, `label`        |
//!
//! With `auto`, the first format of the kind (in this order) whose keys the first record has wins.
//!
//! Texts are strings or conversations: lists of `{"role": …, "content": …}` turns.
//! - A conversation used as a **prompt** is kept as the record's `prompt_messages`, and its plain
//!   text ([`crate::conversation::plain_text`]: one `role: content` line per turn, e.g.
//!   `system: Be brief.\nuser: Hi`) is the `prompt`.
//! - A conversation used as a **response** (`chosen`, `rejected`, `completion`, `response`,
//!   `messages`) must end with an `assistant` turn, whose content is the response. Where the row
//!   has no `prompt` key (`chosen-rejected`, `messages`) the turns before it are the prompt
//!   (earlier assistant turns included: SFT trains on every assistant turn), and
//!   for `chosen-rejected` they must be the same in both. Where it has one, earlier turns are
//!   ignored (datasets such as UltraFeedback repeat the prompt there).
//! - `chosen-rejected` with strings is the HH-RLHF full-text layout: each text is split at its
//!   last `"\n\nAssistant:"`; the prompt is everything up to and including that marker and must
//!   be equal in both, the response is the rest, verbatim.
//!
//! `id` is kept when present (a string or an integer), else generated as `<file stem>-<n>`, `n`
//! being the 0-based line (JSON Lines) or row (Parquet). Comparisons also take optional
//! `margin` (number), `annotator` and `source` (strings). Other keys are ignored; a null value
//! counts as absent. Feedback's `label` is a boolean (TRL's unpaired-preference layout, as KTO
//! reads it); it takes `annotator` and `source` too. Keys of the first record that the layout does not read are named in a
//! warning (tracing).

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::conversation::{plain_text, ChatMessage, ASSISTANT};
use crate::error::{Error, Location, Result};
use crate::records::{Comparison, Demonstration, Feedback, Prompt, Ranking, Record};

/// An input layout; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Format {
    /// Detect from the first record's keys
    Auto,
    /// Comparisons: prompt, chosen, rejected (strings or conversations)
    PromptChosenRejected,
    /// Comparisons: chosen, rejected holding the prompt (HH-RLHF text or conversations)
    ChosenRejected,
    /// Demonstrations: prompt, completion
    PromptCompletion,
    /// Demonstrations: prompt, response
    PromptResponse,
    /// Demonstrations: messages, a conversation ending with the assistant's turn
    Messages,
    /// Prompts: prompt
    Prompt,
    /// Rankings: prompt, responses, ranking (indices into responses, best first)
    PromptResponsesRanking,
    /// Feedback: prompt, completion, label (true: desirable)
    PromptCompletionLabel,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::PromptChosenRejected => "prompt-chosen-rejected",
            Format::ChosenRejected => "chosen-rejected",
            Format::PromptCompletion => "prompt-completion",
            Format::PromptResponse => "prompt-response",
            Format::Messages => "messages",
            Format::Prompt => "prompt",
            Format::PromptResponsesRanking => "prompt-responses-ranking",
            Format::PromptCompletionLabel => "prompt-completion-label",
        }
    }

    /// The keys a record must have to be in this layout.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Format::Auto => &[],
            Format::PromptChosenRejected => &["prompt", "chosen", "rejected"],
            Format::ChosenRejected => &["chosen", "rejected"],
            Format::PromptCompletion => &["prompt", "completion"],
            Format::PromptResponse => &["prompt", "response"],
            Format::Messages => &["messages"],
            Format::Prompt => &["prompt"],
            Format::PromptResponsesRanking => &["prompt", "responses", "ranking"],
            Format::PromptCompletionLabel => &["prompt", "completion", "label"],
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a row is in its input file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Position {
    /// 1-based line of a JSON Lines file.
    Line(u64),
    /// 0-based row of a Parquet file.
    Row(u64),
}

/// The input file being imported, as rows need it for ids and error messages.
pub(crate) struct InputFile {
    pub(crate) path: PathBuf,
    pub(crate) stem: String,
}

impl InputFile {
    pub(crate) fn location(&self, position: Position) -> Location {
        let path = self.path.clone();
        match position {
            Position::Line(line) => Location::Line { path, line },
            Position::Row(row) => Location::Row { path, row },
        }
    }
}

/// One input record: its JSON fields and where it came from.
pub(crate) struct Row<'a> {
    fields: Map<String, Value>,
    input: &'a InputFile,
    position: Position,
}

/// A text field: a plain string or a conversation.
enum Text {
    Plain(String),
    Turns(Vec<ChatMessage>),
}

/// A prompt's plain text and, when it was a conversation, its turns.
type PromptParts = (String, Option<Vec<ChatMessage>>);

/// The prompt parts of the turns before a response (no turns: an empty prompt, which validation
/// rejects).
fn conversation_prompt(turns: Vec<ChatMessage>) -> PromptParts {
    (plain_text(&turns), Some(turns).filter(|turns| !turns.is_empty()))
}

const TEXT: &str = "a string or a list of {role, content} turns";

/// "a string", "a list", …: what a JSON value is, for messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

const HH_ASSISTANT: &str = "\n\nAssistant:";

impl<'a> Row<'a> {
    pub(crate) fn new(fields: Map<String, Value>, input: &'a InputFile, position: Position) -> Self {
        Row { fields, input, position }
    }

    pub(crate) fn location(&self) -> Location {
        self.input.location(self.position)
    }

    fn wrong_type(&self, key: impl Into<String>, expected: &'static str, found: &Value) -> Error {
        Error::WrongType { location: self.location(), key: key.into(), expected, found: json_type(found) }
    }

    /// The value of `key`, or `None` when it is absent or null.
    fn optional(&mut self, key: &str) -> Option<Value> {
        self.fields.remove(key).filter(|value| !value.is_null())
    }

    fn required(&mut self, key: &str) -> Result<Value> {
        match self.fields.remove(key) {
            None => Err(Error::MissingKey { location: self.location(), key: key.to_string() }),
            Some(value) => Ok(value),
        }
    }

    fn string_value(&self, key: impl Into<String>, value: Value) -> Result<String> {
        match value {
            Value::String(text) => Ok(text),
            other => Err(self.wrong_type(key, "a string", &other)),
        }
    }

    fn optional_string(&mut self, key: &str) -> Result<Option<String>> {
        self.optional(key).map(|value| self.string_value(key, value)).transpose()
    }

    fn id(&mut self) -> Result<String> {
        match self.optional("id") {
            None => Ok(match self.position {
                Position::Line(line) => format!("{}-{}", self.input.stem, line - 1),
                Position::Row(row) => format!("{}-{row}", self.input.stem),
            }),
            Some(Value::String(id)) => Ok(id),
            Some(Value::Number(id)) if id.is_i64() || id.is_u64() => Ok(id.to_string()),
            Some(other) => Err(self.wrong_type("id", "a string or an integer", &other)),
        }
    }

    fn turns(&self, key: &str, value: Vec<Value>) -> Result<Vec<ChatMessage>> {
        value
            .into_iter()
            .enumerate()
            .map(|(index, turn)| {
                let Value::Object(mut turn) = turn else {
                    return Err(self.wrong_type(format!("{key}[{index}]"), "a {role, content} object", &turn));
                };
                let mut field = |name: &str| match turn.remove(name) {
                    Some(value) => self.string_value(format!("{key}[{index}].{name}"), value),
                    None => Err(Error::MissingKey { location: self.location(), key: format!("{key}[{index}].{name}") }),
                };
                Ok(ChatMessage { role: field("role")?, content: field("content")? })
            })
            .collect()
    }

    fn text(&mut self, key: &str) -> Result<Text> {
        match self.required(key)? {
            Value::String(text) => Ok(Text::Plain(text)),
            Value::Array(turns) => Ok(Text::Turns(self.turns(key, turns)?)),
            other => Err(self.wrong_type(key, TEXT, &other)),
        }
    }

    fn prompt(&mut self, key: &str) -> Result<PromptParts> {
        Ok(match self.text(key)? {
            Text::Plain(text) => (text, None),
            Text::Turns(turns) => conversation_prompt(turns),
        })
    }

    /// Splits a conversation into the turns before its final assistant turn and that turn's
    /// content.
    fn split_response(&self, key: &str, mut turns: Vec<ChatMessage>) -> Result<(Vec<ChatMessage>, String)> {
        match turns.pop() {
            Some(last) if last.role == ASSISTANT => Ok((turns, last.content)),
            _ => Err(Error::NoResponse {
                location: self.location(),
                key: key.to_string(),
                reason: "does not end with an assistant turn",
            }),
        }
    }

    /// A response given as a string or as a conversation ending with the assistant's turn.
    fn response(&mut self, key: &str) -> Result<String> {
        match self.text(key)? {
            Text::Plain(text) => Ok(text),
            Text::Turns(turns) => Ok(self.split_response(key, turns)?.1),
        }
    }

    /// Splits an HH-RLHF full text at its last assistant marker: (prompt, response).
    fn split_full_text(&self, key: &str, mut text: String) -> Result<(String, String)> {
        let Some(start) = text.rfind(HH_ASSISTANT) else {
            return Err(Error::NoResponse {
                location: self.location(),
                key: key.to_string(),
                reason: "has no \"\\n\\nAssistant:\" turn",
            });
        };
        let response = text.split_off(start + HH_ASSISTANT.len());
        Ok((text, response))
    }

    /// `chosen`/`rejected` with the prompt inside them: (prompt, chosen, rejected).
    fn chosen_rejected(&mut self) -> Result<(PromptParts, String, String)> {
        let (chosen_prompt, chosen, rejected_prompt, rejected) = match (self.text("chosen")?, self.text("rejected")?) {
            (Text::Plain(chosen), Text::Plain(rejected)) => {
                let (chosen_prompt, chosen) = self.split_full_text("chosen", chosen)?;
                let (rejected_prompt, rejected) = self.split_full_text("rejected", rejected)?;
                ((chosen_prompt, None), chosen, (rejected_prompt, None), rejected)
            }
            (Text::Turns(chosen), Text::Turns(rejected)) => {
                let (chosen_prompt, chosen) = self.split_response("chosen", chosen)?;
                let (rejected_prompt, rejected) = self.split_response("rejected", rejected)?;
                (conversation_prompt(chosen_prompt), chosen, conversation_prompt(rejected_prompt), rejected)
            }
            (chosen, _) => {
                let (expected, found) = match chosen {
                    Text::Plain(_) => ("a string like \"chosen\"", "a list"),
                    Text::Turns(_) => ("a list of turns like \"chosen\"", "a string"),
                };
                return Err(Error::WrongType {
                    location: self.location(),
                    key: "rejected".to_string(),
                    expected,
                    found,
                });
            }
        };
        if chosen_prompt != rejected_prompt {
            return Err(Error::PromptMismatch { location: self.location() });
        }
        Ok((chosen_prompt, chosen, rejected))
    }

    fn list(&mut self, key: &str, expected: &'static str) -> Result<Vec<Value>> {
        match self.required(key)? {
            Value::Array(items) => Ok(items),
            other => Err(self.wrong_type(key, expected, &other)),
        }
    }

    fn strings(&mut self, key: &str) -> Result<Vec<String>> {
        self.list(key, "a list of strings")?
            .into_iter()
            .enumerate()
            .map(|(index, item)| self.string_value(format!("{key}[{index}]"), item))
            .collect()
    }

    fn indices(&mut self, key: &str) -> Result<Vec<u32>> {
        const INDEX: &str = "a non-negative integer";
        self.list(key, "a list of non-negative integers")?
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                item.as_u64()
                    .and_then(|value| u32::try_from(value).ok())
                    .ok_or_else(|| self.wrong_type(format!("{key}[{index}]"), INDEX, &item))
            })
            .collect()
    }

    fn boolean(&mut self, key: &str) -> Result<bool> {
        match self.required(key)? {
            Value::Bool(value) => Ok(value),
            other => Err(self.wrong_type(key, "a boolean", &other)),
        }
    }

    /// The optional `margin`: a finite number (NaN and infinities, as a Parquet float column can
    /// hold them, are rejected by name).
    fn margin(&mut self) -> Result<Option<f32>> {
        let not_finite =
            |row: &Self, value: String| Error::NotFinite { location: row.location(), key: "margin".into(), value };
        match self.optional("margin") {
            None => Ok(None),
            Some(Value::Number(margin)) => match margin.as_f64().map(|margin| margin as f32) {
                Some(margin) if margin.is_finite() => Ok(Some(margin)),
                _ => Err(not_finite(self, format!("{margin} (beyond f32)"))),
            },
            Some(Value::String(text)) if ["NaN", "inf", "-inf"].contains(&text.as_str()) => Err(not_finite(self, text)),
            Some(other) => Err(self.wrong_type("margin", "a number", &other)),
        }
    }
}

/// A record kind that can be imported from rows.
pub(crate) trait FromRow: Record {
    /// The layouts of this kind, in detection order.
    const FORMATS: &'static [Format];

    /// Keys read when present, besides the layout's own.
    const OPTIONAL_KEYS: &'static [&'static str] = &["id"];

    fn from_row(format: Format, row: &mut Row) -> Result<Self>;
}

impl FromRow for Prompt {
    const FORMATS: &'static [Format] = &[Format::Prompt];

    fn from_row(_: Format, row: &mut Row) -> Result<Self> {
        let id = row.id()?;
        let (prompt, prompt_messages) = row.prompt("prompt")?;
        Ok(Prompt { id, prompt, prompt_messages })
    }
}

impl FromRow for Demonstration {
    const FORMATS: &'static [Format] = &[Format::PromptCompletion, Format::PromptResponse, Format::Messages];

    fn from_row(format: Format, row: &mut Row) -> Result<Self> {
        let id = row.id()?;
        let ((prompt, prompt_messages), response) = match format {
            Format::Messages => {
                let turns = row.list("messages", TEXT)?;
                let turns = row.turns("messages", turns)?;
                let (prompt, response) = row.split_response("messages", turns)?;
                (conversation_prompt(prompt), response)
            }
            Format::PromptResponse => (row.prompt("prompt")?, row.response("response")?),
            _ => (row.prompt("prompt")?, row.response("completion")?),
        };
        Ok(Demonstration { id, prompt, prompt_messages, response })
    }
}

impl FromRow for Comparison {
    const FORMATS: &'static [Format] = &[Format::PromptChosenRejected, Format::ChosenRejected];
    const OPTIONAL_KEYS: &'static [&'static str] = &["id", "margin", "annotator", "source", "objective"];

    fn from_row(format: Format, row: &mut Row) -> Result<Self> {
        let id = row.id()?;
        let ((prompt, prompt_messages), chosen, rejected) = match format {
            Format::ChosenRejected => row.chosen_rejected()?,
            _ => (row.prompt("prompt")?, row.response("chosen")?, row.response("rejected")?),
        };
        Ok(Comparison {
            id,
            prompt,
            chosen,
            rejected,
            margin: row.margin()?,
            annotator: row.optional_string("annotator")?,
            source: row.optional_string("source")?,
            prompt_messages,
            objective: row.optional_string("objective")?,
        })
    }
}

impl FromRow for Ranking {
    const FORMATS: &'static [Format] = &[Format::PromptResponsesRanking];

    fn from_row(_: Format, row: &mut Row) -> Result<Self> {
        let id = row.id()?;
        let (prompt, prompt_messages) = row.prompt("prompt")?;
        Ok(Ranking {
            id,
            prompt,
            responses: row.strings("responses")?,
            ranking: row.indices("ranking")?,
            prompt_messages,
            annotator: row.optional_string("annotator")?,
        })
    }
}

impl FromRow for Feedback {
    const FORMATS: &'static [Format] = &[Format::PromptCompletionLabel];
    const OPTIONAL_KEYS: &'static [&'static str] = &["id", "annotator", "source"];

    fn from_row(_: Format, row: &mut Row) -> Result<Self> {
        let id = row.id()?;
        let (prompt, prompt_messages) = row.prompt("prompt")?;
        Ok(Feedback {
            id,
            prompt,
            completion: row.response("completion")?,
            label: row.boolean("label")?,
            annotator: row.optional_string("annotator")?,
            source: row.optional_string("source")?,
            prompt_messages,
        })
    }
}

/// The keys of `keys` that `format` does not read.
pub(crate) fn unused_keys<R: FromRow>(format: Format, keys: &[String]) -> Vec<String> {
    let used = |key: &String| format.keys().contains(&key.as_str()) || R::OPTIONAL_KEYS.contains(&key.as_str());
    keys.iter().filter(|key| !used(key)).cloned().collect()
}

/// The format to import with: `requested` if it is a layout of `R`, else the first layout of
/// `R` whose keys are all in `keys`.
pub(crate) fn resolve_format<R: FromRow>(requested: Format, keys: &[String], input: &InputFile) -> Result<Format> {
    let layouts = || {
        let names: Vec<String> =
            R::FORMATS.iter().map(|format| format!("{format} ({})", format.keys().join(", "))).collect();
        names.join(" or ")
    };
    if requested != Format::Auto {
        return match R::FORMATS.contains(&requested) {
            true => Ok(requested),
            false => {
                Err(Error::FormatKind { format: requested.name().to_string(), kind: R::KIND, expected: layouts() })
            }
        };
    }
    R::FORMATS.iter().copied().find(|format| format.keys().iter().all(|key| keys.iter().any(|k| k == key))).ok_or_else(
        || Error::UnknownLayout { path: input.path.clone(), kind: R::KIND, keys: keys.to_vec(), expected: layouts() },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_keys_leave_out_layout_and_optional_keys() {
        let keys: Vec<String> = ["id", "prompt", "chosen", "rejected", "margin", "score"].map(String::from).to_vec();
        let unused = unused_keys::<Comparison>(Format::PromptChosenRejected, &keys);
        assert_eq!(unused, ["score"]);
        let unused = unused_keys::<Prompt>(Format::Prompt, &keys);
        assert_eq!(unused, ["chosen", "rejected", "margin", "score"]);
    }
}
