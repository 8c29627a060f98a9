//! The records that flow between stages, one plain struct per table, and the [`Record`] trait
//! that gives each its versioned Arrow schema and its conversion to and from record batches.

use std::fmt;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int32Type, SchemaRef, UInt32Type, UInt64Type};
use serde::{Deserialize, Serialize};

use crate::arrays::{
    booleans, conversation_type, optional_conversation, optional_conversations, optional_primitives, optional_string,
    optional_strings, optional_value, primitive_list, primitive_lists, primitives, string_list, string_lists, strings,
    Columns,
};
use crate::conversation::{check_prompt_messages, AsPrompt, ChatMessage};
use crate::error::{Error, Location, Result};
use crate::ranking::check_ranking;
use crate::schema::{list_of, optional, required, tagged};

/// The kinds of table, in the order a pipeline produces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Kind {
    Prompts,
    Demonstrations,
    Comparisons,
    Rankings,
    Feedback,
    Rollouts,
    Metrics,
    Revisions,
    Verdicts,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Prompts,
        Kind::Demonstrations,
        Kind::Comparisons,
        Kind::Rankings,
        Kind::Feedback,
        Kind::Rollouts,
        Kind::Metrics,
        Kind::Revisions,
        Kind::Verdicts,
    ];

    /// The table name, e.g. `comparisons`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prompts => "prompts",
            Kind::Demonstrations => "demonstrations",
            Kind::Comparisons => "comparisons",
            Kind::Rankings => "rankings",
            Kind::Feedback => "feedback",
            Kind::Rollouts => "rollouts",
            Kind::Metrics => "metrics",
            Kind::Revisions => "revisions",
            Kind::Verdicts => "verdicts",
        }
    }

    /// The versioned tag stored under [`crate::SCHEMA_KEY`], e.g. `comparisons/v2`. Version 2 of
    /// the tables that hold prompts added the optional `prompt_messages` conversation column;
    /// version 3 of comparisons the optional `objective` column; version 3 of rankings the optional
    /// `annotator` column.
    pub fn schema_tag(self) -> &'static str {
        match self {
            Kind::Prompts => "prompts/v2",
            Kind::Demonstrations => "demonstrations/v2",
            Kind::Comparisons => "comparisons/v3",
            Kind::Rankings => "rankings/v3",
            Kind::Feedback => "feedback/v1",
            Kind::Rollouts => "rollouts/v1",
            Kind::Metrics => "metrics/v1",
            Kind::Revisions => "revisions/v1",
            Kind::Verdicts => "verdicts/v1",
        }
    }

    /// Whether a table tagged `tag` (this kind at any version) reads as this version: every
    /// earlier version does, since versions only add optional columns.
    pub fn reads_tag(self, tag: &str) -> bool {
        let version = |tag: &str| tag.rsplit_once("/v").and_then(|(_, n)| n.parse::<u32>().ok());
        matches!((version(tag), version(self.schema_tag())), (Some(found), Some(current)) if found <= current)
    }

    /// The kind whose name is the part of `tag` before the `/`, whatever the version.
    pub fn from_tag(tag: &str) -> Option<Kind> {
        let name = tag.split('/').next()?;
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The Arrow schema of this kind's table.
    pub fn schema(self) -> SchemaRef {
        match self {
            Kind::Prompts => Prompt::schema(),
            Kind::Demonstrations => Demonstration::schema(),
            Kind::Comparisons => Comparison::schema(),
            Kind::Rankings => Ranking::schema(),
            Kind::Feedback => Feedback::schema(),
            Kind::Rollouts => Rollout::schema(),
            Kind::Metrics => Metric::schema(),
            Kind::Revisions => Revision::schema(),
            Kind::Verdicts => Verdict::schema(),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A record type stored as one row of a Parquet table.
pub trait Record: Sized + Send + Sync + 'static {
    const KIND: Kind;

    /// The Arrow schema, tagged with [`Kind::schema_tag`]. Required columns are non-null.
    fn schema() -> SchemaRef;

    /// One batch holding `records`, in order, with exactly [`Record::schema`].
    fn to_batch(records: &[Self]) -> Result<RecordBatch>;

    /// The records of `batch`, which must have the schema's required columns (extra columns are
    /// ignored here; readers keep them in the batch). Errors name the source "record batch".
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>>;

    /// Checks what the schema cannot: non-empty texts, consistent lengths, valid rankings.
    fn validate(&self, location: impl Fn() -> Location) -> Result<()>;
}

/// A prompt to generate responses for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Prompt {
    pub id: String,
    /// The prompt's plain text (a conversation's `role: content` lines).
    pub prompt: String,
    /// The prompt as a conversation, when it is one (see [`crate::conversation`]).
    #[serde(default)]
    pub prompt_messages: Option<Vec<ChatMessage>>,
}

/// A prompt with a reference response, for supervised fine-tuning.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Demonstration {
    pub id: String,
    pub prompt: String,
    /// The turns before `response`, when the prompt is a conversation; SFT trains on its
    /// assistant turns too.
    #[serde(default)]
    pub prompt_messages: Option<Vec<ChatMessage>>,
    /// The final assistant turn.
    pub response: String,
}

/// A human (or simulated) preference between two responses to one prompt.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Comparison {
    pub id: String,
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    /// How strongly `chosen` is preferred, when the annotator said.
    pub margin: Option<f32>,
    pub annotator: Option<String>,
    /// Where the pair came from (a dataset, a ranking, a generator).
    pub source: Option<String>,
    #[serde(default)]
    pub prompt_messages: Option<Vec<ChatMessage>>,
    /// What the preference is about (`helpful`, `harmless`, a weighted mix, `overall`), when the
    /// labeller said; one reward model is trained per objective.
    #[serde(default)]
    pub objective: Option<String>,
}

/// K responses to one prompt, ordered by preference.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Ranking {
    pub id: String,
    pub prompt: String,
    pub responses: Vec<String>,
    /// Indices into `responses`, best first: a permutation of `0..responses.len()`.
    pub ranking: Vec<u32>,
    #[serde(default)]
    pub prompt_messages: Option<Vec<ChatMessage>>,
    /// Who ranked (`human:<id>`, `sim:<name>`, …), when known; the expanded pairs carry it.
    #[serde(default)]
    pub annotator: Option<String>,
}

/// One response judged on its own, desirable or not (KTO's unpaired labels, a thumbs up or down).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Feedback {
    pub id: String,
    pub prompt: String,
    pub completion: String,
    /// Whether `completion` is a desirable response to `prompt`.
    pub label: bool,
    pub annotator: Option<String>,
    /// Where the label came from (a dataset, an unpaired comparison).
    pub source: Option<String>,
    #[serde(default)]
    pub prompt_messages: Option<Vec<ChatMessage>>,
}

/// One sampled response with the per-token quantities PPO needs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    pub prompt: String,
    pub response: String,
    pub prompt_tokens: Vec<i32>,
    pub response_tokens: Vec<i32>,
    /// Policy log-probability of each response token.
    pub logprobs: Vec<f32>,
    /// Reference-model log-probability of each response token.
    pub ref_logprobs: Vec<f32>,
    /// Value estimate at each response token.
    pub values: Vec<f32>,
    pub reward: f32,
    pub kl: f32,
    pub step: u32,
}

/// One scalar logged by a stage, in long format.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metric {
    pub stage: String,
    pub step: u64,
    pub name: String,
    pub value: f64,
    /// Unix time in seconds.
    pub wall_time: f64,
}

/// Constitutional AI's supervised phase for one prompt: the model's first answer, then per round
/// the principle drawn, the model's critique of its latest answer by it, and its revision.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Revision {
    pub id: String,
    pub prompt: String,
    pub initial: String,
    /// One per round, as `critiques` and `revisions`.
    pub principles: Vec<String>,
    pub critiques: Vec<String>,
    pub revisions: Vec<String>,
    #[serde(default)]
    pub prompt_messages: Option<Vec<ChatMessage>>,
    /// The model that answered, critiqued and revised (`ai:<model>`).
    #[serde(default)]
    pub annotator: Option<String>,
}

impl Revision {
    /// The latest answer: the last revision, or the initial one when there was none.
    pub fn latest(&self) -> &str {
        self.revisions.last().unwrap_or(&self.initial)
    }
}

/// An AI judge's answer about one pair (a judge cache's line): P(`A`) with the pair as given and
/// swapped, `None` where the answer named neither letter.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub model: String,
    pub principle: String,
    pub prompt: String,
    pub first: String,
    pub second: String,
    pub p_ab: Option<f64>,
    pub p_ba: Option<f64>,
}

fn batch<R: Record>(columns: Vec<arrow::array::ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(R::schema(), columns).map_err(|source| Error::Arrow { kind: R::KIND, source })
}

fn not_empty(field: &str, value: &str, location: &impl Fn() -> Location) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::EmptyField { location: location(), field: field.to_string() });
    }
    Ok(())
}

/// The `prompt_messages` column: optional, a conversation.
fn prompt_messages_field() -> arrow::datatypes::Field {
    optional(crate::conversation::PROMPT_MESSAGES, conversation_type())
}

fn check_prompt(prompt: &str, messages: Option<&[ChatMessage]>, location: &impl Fn() -> Location) -> Result<()> {
    not_empty("prompt", prompt, location)?;
    messages.map_or(Ok(()), |turns| check_prompt_messages(turns, location))
}

fn same_length(field: &'static str, values: &[f32], tokens: &[i32], location: &impl Fn() -> Location) -> Result<()> {
    if values.len() != tokens.len() {
        return Err(Error::LengthMismatch { location: location(), field, found: values.len(), expected: tokens.len() });
    }
    Ok(())
}

impl Record for Prompt {
    const KIND: Kind = Kind::Prompts;

    fn schema() -> SchemaRef {
        tagged(
            Self::KIND,
            vec![required("id", DataType::Utf8), required("prompt", DataType::Utf8), prompt_messages_field()],
        )
    }

    fn to_batch(records: &[Self]) -> Result<RecordBatch> {
        batch::<Self>(vec![
            strings(records.iter().map(|r| r.id.as_str())),
            strings(records.iter().map(|r| r.prompt.as_str())),
            optional_conversations(records.iter().map(|r| r.prompt_messages.as_deref())),
        ])
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>> {
        let columns = Columns::checked::<Self>(batch)?;
        let (id, prompt) = (columns.strings("id"), columns.strings("prompt"));
        let messages = columns.optional_lists("prompt_messages");
        Ok((0..batch.num_rows())
            .map(|row| Prompt {
                id: id.value(row).to_string(),
                prompt: prompt.value(row).to_string(),
                prompt_messages: optional_conversation(messages, row),
            })
            .collect())
    }

    fn validate(&self, location: impl Fn() -> Location) -> Result<()> {
        check_prompt(&self.prompt, self.prompt_messages.as_deref(), &location)
    }
}

impl Record for Demonstration {
    const KIND: Kind = Kind::Demonstrations;

    fn schema() -> SchemaRef {
        tagged(
            Self::KIND,
            vec![
                required("id", DataType::Utf8),
                required("prompt", DataType::Utf8),
                required("response", DataType::Utf8),
                prompt_messages_field(),
            ],
        )
    }

    fn to_batch(records: &[Self]) -> Result<RecordBatch> {
        batch::<Self>(vec![
            strings(records.iter().map(|r| r.id.as_str())),
            strings(records.iter().map(|r| r.prompt.as_str())),
            strings(records.iter().map(|r| r.response.as_str())),
            optional_conversations(records.iter().map(|r| r.prompt_messages.as_deref())),
        ])
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>> {
        let columns = Columns::checked::<Self>(batch)?;
        let (id, prompt, response) = (columns.strings("id"), columns.strings("prompt"), columns.strings("response"));
        let messages = columns.optional_lists("prompt_messages");
        Ok((0..batch.num_rows())
            .map(|row| Demonstration {
                id: id.value(row).to_string(),
                prompt: prompt.value(row).to_string(),
                prompt_messages: optional_conversation(messages, row),
                response: response.value(row).to_string(),
            })
            .collect())
    }

    fn validate(&self, location: impl Fn() -> Location) -> Result<()> {
        check_prompt(&self.prompt, self.prompt_messages.as_deref(), &location)?;
        not_empty("response", &self.response, &location)
    }
}

impl Record for Comparison {
    const KIND: Kind = Kind::Comparisons;

    fn schema() -> SchemaRef {
        tagged(
            Self::KIND,
            vec![
                required("id", DataType::Utf8),
                required("prompt", DataType::Utf8),
                required("chosen", DataType::Utf8),
                required("rejected", DataType::Utf8),
                optional("margin", DataType::Float32),
                optional("annotator", DataType::Utf8),
                optional("source", DataType::Utf8),
                prompt_messages_field(),
                optional("objective", DataType::Utf8),
            ],
        )
    }

    fn to_batch(records: &[Self]) -> Result<RecordBatch> {
        batch::<Self>(vec![
            strings(records.iter().map(|r| r.id.as_str())),
            strings(records.iter().map(|r| r.prompt.as_str())),
            strings(records.iter().map(|r| r.chosen.as_str())),
            strings(records.iter().map(|r| r.rejected.as_str())),
            optional_primitives::<Float32Type>(records.iter().map(|r| r.margin)),
            optional_strings(records.iter().map(|r| r.annotator.as_deref())),
            optional_strings(records.iter().map(|r| r.source.as_deref())),
            optional_conversations(records.iter().map(|r| r.prompt_messages.as_deref())),
            optional_strings(records.iter().map(|r| r.objective.as_deref())),
        ])
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>> {
        let columns = Columns::checked::<Self>(batch)?;
        let (id, prompt, chosen, rejected) =
            (columns.strings("id"), columns.strings("prompt"), columns.strings("chosen"), columns.strings("rejected"));
        let margin = columns.optional_primitives::<Float32Type>("margin");
        let annotator = columns.optional_strings("annotator");
        let source = columns.optional_strings("source");
        let messages = columns.optional_lists("prompt_messages");
        let objective = columns.optional_strings("objective");
        Ok((0..batch.num_rows())
            .map(|row| Comparison {
                id: id.value(row).to_string(),
                prompt: prompt.value(row).to_string(),
                chosen: chosen.value(row).to_string(),
                rejected: rejected.value(row).to_string(),
                margin: optional_value(margin, row),
                annotator: optional_string(annotator, row),
                source: optional_string(source, row),
                prompt_messages: optional_conversation(messages, row),
                objective: optional_string(objective, row),
            })
            .collect())
    }

    fn validate(&self, location: impl Fn() -> Location) -> Result<()> {
        check_prompt(&self.prompt, self.prompt_messages.as_deref(), &location)?;
        not_empty("chosen", &self.chosen, &location)?;
        not_empty("rejected", &self.rejected, &location)
    }
}

impl Record for Feedback {
    const KIND: Kind = Kind::Feedback;

    fn schema() -> SchemaRef {
        tagged(
            Self::KIND,
            vec![
                required("id", DataType::Utf8),
                required("prompt", DataType::Utf8),
                required("completion", DataType::Utf8),
                required("label", DataType::Boolean),
                optional("annotator", DataType::Utf8),
                optional("source", DataType::Utf8),
                prompt_messages_field(),
            ],
        )
    }

    fn to_batch(records: &[Self]) -> Result<RecordBatch> {
        batch::<Self>(vec![
            strings(records.iter().map(|r| r.id.as_str())),
            strings(records.iter().map(|r| r.prompt.as_str())),
            strings(records.iter().map(|r| r.completion.as_str())),
            booleans(records.iter().map(|r| r.label)),
            optional_strings(records.iter().map(|r| r.annotator.as_deref())),
            optional_strings(records.iter().map(|r| r.source.as_deref())),
            optional_conversations(records.iter().map(|r| r.prompt_messages.as_deref())),
        ])
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>> {
        let columns = Columns::checked::<Self>(batch)?;
        let (id, prompt, completion) =
            (columns.strings("id"), columns.strings("prompt"), columns.strings("completion"));
        let label = columns.booleans("label");
        let annotator = columns.optional_strings("annotator");
        let source = columns.optional_strings("source");
        let messages = columns.optional_lists("prompt_messages");
        Ok((0..batch.num_rows())
            .map(|row| Feedback {
                id: id.value(row).to_string(),
                prompt: prompt.value(row).to_string(),
                completion: completion.value(row).to_string(),
                label: label.value(row),
                annotator: optional_string(annotator, row),
                source: optional_string(source, row),
                prompt_messages: optional_conversation(messages, row),
            })
            .collect())
    }

    fn validate(&self, location: impl Fn() -> Location) -> Result<()> {
        check_prompt(&self.prompt, self.prompt_messages.as_deref(), &location)?;
        not_empty("completion", &self.completion, &location)
    }
}

impl Record for Ranking {
    const KIND: Kind = Kind::Rankings;

    fn schema() -> SchemaRef {
        tagged(
            Self::KIND,
            vec![
                required("id", DataType::Utf8),
                required("prompt", DataType::Utf8),
                required("responses", list_of(DataType::Utf8)),
                required("ranking", list_of(DataType::UInt32)),
                prompt_messages_field(),
                optional("annotator", DataType::Utf8),
            ],
        )
    }

    fn to_batch(records: &[Self]) -> Result<RecordBatch> {
        batch::<Self>(vec![
            strings(records.iter().map(|r| r.id.as_str())),
            strings(records.iter().map(|r| r.prompt.as_str())),
            string_lists(records.iter().map(|r| r.responses.as_slice())),
            primitive_lists::<UInt32Type>(records.iter().map(|r| r.ranking.as_slice())),
            optional_conversations(records.iter().map(|r| r.prompt_messages.as_deref())),
            optional_strings(records.iter().map(|r| r.annotator.as_deref())),
        ])
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>> {
        let columns = Columns::checked::<Self>(batch)?;
        let (id, prompt) = (columns.strings("id"), columns.strings("prompt"));
        let (responses, ranking) = (columns.lists("responses"), columns.lists("ranking"));
        let messages = columns.optional_lists("prompt_messages");
        let annotator = columns.optional_strings("annotator");
        Ok((0..batch.num_rows())
            .map(|row| Ranking {
                id: id.value(row).to_string(),
                prompt: prompt.value(row).to_string(),
                responses: string_list(responses, row),
                ranking: primitive_list::<UInt32Type>(ranking, row),
                prompt_messages: optional_conversation(messages, row),
                annotator: optional_string(annotator, row),
            })
            .collect())
    }

    fn validate(&self, location: impl Fn() -> Location) -> Result<()> {
        check_prompt(&self.prompt, self.prompt_messages.as_deref(), &location)?;
        for (index, response) in self.responses.iter().enumerate() {
            not_empty(&format!("responses[{index}]"), response, &location)?;
        }
        check_ranking(self, location)
    }
}

impl Record for Rollout {
    const KIND: Kind = Kind::Rollouts;

    fn schema() -> SchemaRef {
        tagged(
            Self::KIND,
            vec![
                required("id", DataType::Utf8),
                required("prompt", DataType::Utf8),
                required("response", DataType::Utf8),
                required("prompt_tokens", list_of(DataType::Int32)),
                required("response_tokens", list_of(DataType::Int32)),
                required("logprobs", list_of(DataType::Float32)),
                required("ref_logprobs", list_of(DataType::Float32)),
                required("values", list_of(DataType::Float32)),
                required("reward", DataType::Float32),
                required("kl", DataType::Float32),
                required("step", DataType::UInt32),
            ],
        )
    }

    fn to_batch(records: &[Self]) -> Result<RecordBatch> {
        batch::<Self>(vec![
            strings(records.iter().map(|r| r.id.as_str())),
            strings(records.iter().map(|r| r.prompt.as_str())),
            strings(records.iter().map(|r| r.response.as_str())),
            primitive_lists::<Int32Type>(records.iter().map(|r| r.prompt_tokens.as_slice())),
            primitive_lists::<Int32Type>(records.iter().map(|r| r.response_tokens.as_slice())),
            primitive_lists::<Float32Type>(records.iter().map(|r| r.logprobs.as_slice())),
            primitive_lists::<Float32Type>(records.iter().map(|r| r.ref_logprobs.as_slice())),
            primitive_lists::<Float32Type>(records.iter().map(|r| r.values.as_slice())),
            primitives::<Float32Type>(records.iter().map(|r| r.reward)),
            primitives::<Float32Type>(records.iter().map(|r| r.kl)),
            primitives::<UInt32Type>(records.iter().map(|r| r.step)),
        ])
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>> {
        let columns = Columns::checked::<Self>(batch)?;
        let (id, prompt, response) = (columns.strings("id"), columns.strings("prompt"), columns.strings("response"));
        let prompt_tokens = columns.lists("prompt_tokens");
        let response_tokens = columns.lists("response_tokens");
        let logprobs = columns.lists("logprobs");
        let ref_logprobs = columns.lists("ref_logprobs");
        let values = columns.lists("values");
        let reward = columns.primitives::<Float32Type>("reward");
        let kl = columns.primitives::<Float32Type>("kl");
        let step = columns.primitives::<UInt32Type>("step");
        Ok((0..batch.num_rows())
            .map(|row| Rollout {
                id: id.value(row).to_string(),
                prompt: prompt.value(row).to_string(),
                response: response.value(row).to_string(),
                prompt_tokens: primitive_list::<Int32Type>(prompt_tokens, row),
                response_tokens: primitive_list::<Int32Type>(response_tokens, row),
                logprobs: primitive_list::<Float32Type>(logprobs, row),
                ref_logprobs: primitive_list::<Float32Type>(ref_logprobs, row),
                values: primitive_list::<Float32Type>(values, row),
                reward: reward.value(row),
                kl: kl.value(row),
                step: step.value(row),
            })
            .collect())
    }

    fn validate(&self, location: impl Fn() -> Location) -> Result<()> {
        same_length("logprobs", &self.logprobs, &self.response_tokens, &location)?;
        same_length("ref_logprobs", &self.ref_logprobs, &self.response_tokens, &location)?;
        same_length("values", &self.values, &self.response_tokens, &location)
    }
}

impl Record for Metric {
    const KIND: Kind = Kind::Metrics;

    fn schema() -> SchemaRef {
        tagged(
            Self::KIND,
            vec![
                required("stage", DataType::Utf8),
                required("step", DataType::UInt64),
                required("name", DataType::Utf8),
                required("value", DataType::Float64),
                required("wall_time", DataType::Float64),
            ],
        )
    }

    fn to_batch(records: &[Self]) -> Result<RecordBatch> {
        batch::<Self>(vec![
            strings(records.iter().map(|r| r.stage.as_str())),
            primitives::<UInt64Type>(records.iter().map(|r| r.step)),
            strings(records.iter().map(|r| r.name.as_str())),
            primitives::<Float64Type>(records.iter().map(|r| r.value)),
            primitives::<Float64Type>(records.iter().map(|r| r.wall_time)),
        ])
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>> {
        let columns = Columns::checked::<Self>(batch)?;
        let (stage, name) = (columns.strings("stage"), columns.strings("name"));
        let step = columns.primitives::<UInt64Type>("step");
        let value = columns.primitives::<Float64Type>("value");
        let wall_time = columns.primitives::<Float64Type>("wall_time");
        Ok((0..batch.num_rows())
            .map(|row| Metric {
                stage: stage.value(row).to_string(),
                step: step.value(row),
                name: name.value(row).to_string(),
                value: value.value(row),
                wall_time: wall_time.value(row),
            })
            .collect())
    }

    fn validate(&self, location: impl Fn() -> Location) -> Result<()> {
        not_empty("stage", &self.stage, &location)?;
        not_empty("name", &self.name, &location)
    }
}

impl Record for Revision {
    const KIND: Kind = Kind::Revisions;

    fn schema() -> SchemaRef {
        tagged(
            Self::KIND,
            vec![
                required("id", DataType::Utf8),
                required("prompt", DataType::Utf8),
                required("initial", DataType::Utf8),
                required("principles", list_of(DataType::Utf8)),
                required("critiques", list_of(DataType::Utf8)),
                required("revisions", list_of(DataType::Utf8)),
                prompt_messages_field(),
                optional("annotator", DataType::Utf8),
            ],
        )
    }

    fn to_batch(records: &[Self]) -> Result<RecordBatch> {
        batch::<Self>(vec![
            strings(records.iter().map(|r| r.id.as_str())),
            strings(records.iter().map(|r| r.prompt.as_str())),
            strings(records.iter().map(|r| r.initial.as_str())),
            string_lists(records.iter().map(|r| r.principles.as_slice())),
            string_lists(records.iter().map(|r| r.critiques.as_slice())),
            string_lists(records.iter().map(|r| r.revisions.as_slice())),
            optional_conversations(records.iter().map(|r| r.prompt_messages.as_deref())),
            optional_strings(records.iter().map(|r| r.annotator.as_deref())),
        ])
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>> {
        let columns = Columns::checked::<Self>(batch)?;
        let (id, prompt, initial) = (columns.strings("id"), columns.strings("prompt"), columns.strings("initial"));
        let (principles, critiques) = (columns.lists("principles"), columns.lists("critiques"));
        let revisions = columns.lists("revisions");
        let messages = columns.optional_lists("prompt_messages");
        let annotator = columns.optional_strings("annotator");
        Ok((0..batch.num_rows())
            .map(|row| Revision {
                id: id.value(row).to_string(),
                prompt: prompt.value(row).to_string(),
                initial: initial.value(row).to_string(),
                principles: string_list(principles, row),
                critiques: string_list(critiques, row),
                revisions: string_list(revisions, row),
                prompt_messages: optional_conversation(messages, row),
                annotator: optional_string(annotator, row),
            })
            .collect())
    }

    fn validate(&self, location: impl Fn() -> Location) -> Result<()> {
        check_prompt(&self.prompt, self.prompt_messages.as_deref(), &location)?;
        not_empty("initial", &self.initial, &location)?;
        let rounds = self.principles.len();
        for (field, found) in [("critiques", self.critiques.len()), ("revisions", self.revisions.len())] {
            if found != rounds {
                return Err(Error::RoundMismatch { location: location(), field, found, expected: rounds });
            }
        }
        for (field, texts) in
            [("principles", &self.principles), ("critiques", &self.critiques), ("revisions", &self.revisions)]
        {
            for (index, text) in texts.iter().enumerate() {
                not_empty(&format!("{field}[{index}]"), text, &location)?;
            }
        }
        Ok(())
    }
}

impl Record for Verdict {
    const KIND: Kind = Kind::Verdicts;

    fn schema() -> SchemaRef {
        tagged(
            Self::KIND,
            vec![
                required("model", DataType::Utf8),
                required("principle", DataType::Utf8),
                required("prompt", DataType::Utf8),
                required("first", DataType::Utf8),
                required("second", DataType::Utf8),
                optional("p_ab", DataType::Float64),
                optional("p_ba", DataType::Float64),
            ],
        )
    }

    fn to_batch(records: &[Self]) -> Result<RecordBatch> {
        batch::<Self>(vec![
            strings(records.iter().map(|r| r.model.as_str())),
            strings(records.iter().map(|r| r.principle.as_str())),
            strings(records.iter().map(|r| r.prompt.as_str())),
            strings(records.iter().map(|r| r.first.as_str())),
            strings(records.iter().map(|r| r.second.as_str())),
            optional_primitives::<Float64Type>(records.iter().map(|r| r.p_ab)),
            optional_primitives::<Float64Type>(records.iter().map(|r| r.p_ba)),
        ])
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>> {
        let columns = Columns::checked::<Self>(batch)?;
        let (model, principle, prompt) =
            (columns.strings("model"), columns.strings("principle"), columns.strings("prompt"));
        let (first, second) = (columns.strings("first"), columns.strings("second"));
        let (p_ab, p_ba) =
            (columns.optional_primitives::<Float64Type>("p_ab"), columns.optional_primitives::<Float64Type>("p_ba"));
        Ok((0..batch.num_rows())
            .map(|row| Verdict {
                model: model.value(row).to_string(),
                principle: principle.value(row).to_string(),
                prompt: prompt.value(row).to_string(),
                first: first.value(row).to_string(),
                second: second.value(row).to_string(),
                p_ab: optional_value(p_ab, row),
                p_ba: optional_value(p_ba, row),
            })
            .collect())
    }

    fn validate(&self, location: impl Fn() -> Location) -> Result<()> {
        for (field, text) in [
            ("model", &self.model),
            ("principle", &self.principle),
            ("prompt", &self.prompt),
            ("first", &self.first),
            ("second", &self.second),
        ] {
            not_empty(field, text, &location)?;
        }
        for (field, p) in [("p_ab", self.p_ab), ("p_ba", self.p_ba)] {
            if let Some(value) = p.filter(|p| !(0.0..=1.0).contains(p)) {
                return Err(Error::NotAProbability { location: location(), field, value });
            }
        }
        Ok(())
    }
}

/// The records that hold a prompt hand it to tokenizers as text plus turns.
macro_rules! prompt_records {
    ($($record:ty),*) => {$(
        impl AsPrompt for $record {
            fn prompt_text(&self) -> &str {
                &self.prompt
            }
            fn prompt_messages(&self) -> Option<&[ChatMessage]> {
                self.prompt_messages.as_deref()
            }
        }
    )*};
}
prompt_records!(Prompt, Demonstration, Comparison, Ranking, Feedback, Revision);
