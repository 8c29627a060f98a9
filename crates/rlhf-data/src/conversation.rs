//! Conversations in the contracts: a prompt may be a list of turns (`prompt_messages`, schema v2)
//! beside its plain text (`prompt`), and [`AsPrompt`] is how the stages hand either to a tokenizer.
//!
//! A prompt conversation holds the turns before the response: it may open with a `system` turn,
//! may hold earlier `user`/`assistant` exchanges (a multi-turn demonstration's earlier assistant
//! turns are trained on by SFT too), and never ends with an `assistant` turn. Its plain text is
//! [`plain_text`]: one `role: content` line per turn, which is what a model without a chat template
//! reads.

use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use serde::{Deserialize, Serialize};

use crate::arrays::{conversation_type, optional_conversation};
use crate::error::{Error, Location, Result};
use crate::schema::check_columns;

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (chat templates may accept others).
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// The role of the turns a model writes (and SFT trains on).
pub const ASSISTANT: &str = "assistant";

/// `role: content` lines joined with `\n`: a conversation's plain text.
pub fn plain_text(turns: &[ChatMessage]) -> String {
    let lines: Vec<String> = turns.iter().map(|turn| format!("{}: {}", turn.role, turn.content)).collect();
    lines.join("\n")
}

/// A prompt as models take it: its plain text and, when it is a conversation, its turns.
/// Strings are prompts without turns (a chat template reads them as one user turn).
pub trait AsPrompt {
    /// What a model without a chat template reads.
    fn prompt_text(&self) -> &str;
    /// The turns before the response, when the prompt is a conversation.
    fn prompt_messages(&self) -> Option<&[ChatMessage]> {
        None
    }
}

impl AsPrompt for str {
    fn prompt_text(&self) -> &str {
        self
    }
}

impl AsPrompt for String {
    fn prompt_text(&self) -> &str {
        self
    }
}

impl<T: AsPrompt + ?Sized> AsPrompt for &T {
    fn prompt_text(&self) -> &str {
        (**self).prompt_text()
    }
    fn prompt_messages(&self) -> Option<&[ChatMessage]> {
        (**self).prompt_messages()
    }
}

/// A prompt's text and turns, owned: what a stage keeps of a record when it needs only its prompt.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PromptText {
    pub text: String,
    pub messages: Option<Vec<ChatMessage>>,
}

impl PromptText {
    /// The prompt of any record (or string).
    pub fn of(prompt: &impl AsPrompt) -> Self {
        PromptText { text: prompt.prompt_text().to_owned(), messages: prompt.prompt_messages().map(<[_]>::to_vec) }
    }
}

impl AsPrompt for PromptText {
    fn prompt_text(&self) -> &str {
        &self.text
    }
    fn prompt_messages(&self) -> Option<&[ChatMessage]> {
        self.messages.as_deref()
    }
}

/// Checks a `prompt_messages` value: at least one turn, every role named, the last turn not the
/// assistant's (the response comes after the prompt).
pub(crate) fn check_prompt_messages(turns: &[ChatMessage], location: &impl Fn() -> Location) -> Result<()> {
    let invalid = |reason: String| Error::InvalidConversation { location: location(), reason };
    if turns.is_empty() {
        return Err(invalid("prompt_messages holds no turns (write null for a prompt without turns)".into()));
    }
    if let Some(index) = turns.iter().position(|turn| turn.role.trim().is_empty()) {
        return Err(invalid(format!("prompt_messages[{index}] has an empty role")));
    }
    if turns.last().is_some_and(|turn| turn.role == ASSISTANT) {
        return Err(invalid(
            "prompt_messages ends with an assistant turn; the response is the final assistant turn and goes in \
             its own column"
                .into(),
        ));
    }
    Ok(())
}

/// Each row's `prompt_messages` of a batch of any table (`None` rows: no conversation; all `None`
/// when the column is absent). A column of another type is an error naming `path`.
pub fn batch_prompt_messages(path: &Path, batch: &RecordBatch) -> Result<Vec<Option<Vec<ChatMessage>>>> {
    let Some(column) = batch.column_by_name(PROMPT_MESSAGES) else { return Ok(vec![None; batch.num_rows()]) };
    let expected =
        arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(PROMPT_MESSAGES, conversation_type(), true)]);
    check_columns(path, &batch.schema(), &expected)?;
    Ok((0..batch.num_rows()).map(|row| optional_conversation(Some(column.as_list()), row)).collect())
}

/// The name of the conversation column of the tables that hold prompts.
pub const PROMPT_MESSAGES: &str = "prompt_messages";
