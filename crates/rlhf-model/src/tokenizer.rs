//! Hugging Face tokenizers: loading from and saving to checkpoint directories, the project's
//! tokenization rule, and training a GPT-2 style byte-level BPE tokenizer.
//!
//! A checkpoint directory holds `tokenizer.json` (the `tokenizers` format) and optionally
//! `tokenizer_config.json` (special-token names, `chat_template`) and `chat_template.jinja`.
//! The tokenization rule used everywhere is `tokens(prompt) ++ tokens(response) ++ [eos]`, each
//! part tokenized on its own ([`Tokenizer::encode_prompt_response`]). With a chat template (and the
//! tokenizer's [`ChatMode`] `auto`) the prompt is the conversation rendered with the generation
//! prompt, and the response is the rest of the rendered conversation up to its end-of-turn token,
//! as TRL splits a conversational example into prompt and completion. A prompt is anything
//! [`AsPrompt`]: a string (one user turn) or a record whose prompt is a conversation; the token
//! ranges of a conversation's earlier assistant turns are reported for SFT to train on.

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::{Error, Result};
use rlhf_data::conversation::ASSISTANT;
use rlhf_data::AsPrompt;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

/// File name of the tokenizer model inside a checkpoint directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// File name of the tokenizer settings (special tokens, chat template) inside a checkpoint directory.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// File name of a chat template stored on its own (preferred by `transformers` when present).
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// End-of-text token names tried, in order, when `tokenizer_config.json` names none.
const FALLBACK_EOS_TOKENS: [&str; 4] = ["<|endoftext|>", "</s>", "<|end_of_text|>", "<|im_end|>"];
/// `transformers`' named special tokens, passed to chat templates as `<name>` variables.
const NAMED_SPECIAL_TOKENS: [&str; 7] =
    ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

/// Names of the special tokens a newly trained tokenizer gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecialTokens {
    /// End of text; appended after every response.
    pub eos: String,
    /// Padding; when `None`, padding uses `eos`.
    pub pad: Option<String>,
    /// Beginning of text, only for chat templates that ask for `bos_token`.
    pub bos: Option<String>,
}

impl Default for SpecialTokens {
    /// GPT-2's `<|endoftext|>` as eos plus a dedicated `<|pad|>`.
    fn default() -> Self {
        SpecialTokens { eos: "<|endoftext|>".into(), pad: Some("<|pad|>".into()), bos: None }
    }
}

/// Token ids of one (prompt, response) pair under the project's tokenization rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PromptResponseIds {
    /// `tokens(prompt)`.
    pub prompt: Vec<i64>,
    /// `tokens(response) ++ [eos]`.
    pub response: Vec<i64>,
    /// Ranges of `prompt` holding the conversation's earlier assistant turns (each up to its
    /// end-of-turn token, as `response` is), in order; empty without a chat template or such turns.
    pub earlier_assistant_turns: Vec<Range<usize>>,
}

impl PromptResponseIds {
    /// The full sequence `prompt ++ response`.
    pub fn concatenated(&self) -> Vec<i64> {
        [self.prompt.as_slice(), self.response.as_slice()].concat()
    }
}

/// Whether prompts and responses go through the tokenizer's chat template (a per-stage setting,
/// `chat_template = "auto" | "none"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatMode {
    /// The chat template when the tokenizer has one, else the plain text.
    #[default]
    Auto,
    /// Always the plain text.
    None,
}

/// A loaded (or trained) tokenizer with its special tokens and optional chat template.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// `tokenizer_config.json` as read (or built for a trained tokenizer); written back by `save`.
    config: Map<String, Value>,
    eos_id: u32,
    bos_id: Option<u32>,
    pad_id: Option<u32>,
    chat_template: Option<ChatTemplate>,
    chat_mode: ChatMode,
}

impl Tokenizer {
    /// Loads `tokenizer.json` and, when present, `tokenizer_config.json` / `chat_template.jinja`
    /// from a checkpoint directory.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        if !tokenizer_path.is_file() {
            return Err(Error::TokenizerFile {
                path: tokenizer_path,
                message: "not found; a checkpoint directory needs a Hugging Face tokenizer.json".into(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|err| Error::TokenizerFile {
            path: tokenizer_path.clone(),
            message: format!("not a valid Hugging Face tokenizer: {err}"),
        })?;
        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        let mut config = if config_path.is_file() { read_json_object(&config_path)? } else { Map::new() };
        let template_path = dir.join(CHAT_TEMPLATE_FILE);
        if template_path.is_file() {
            let template = std::fs::read_to_string(&template_path).map_err(|err| Error::io(&template_path, err))?;
            config.insert("chat_template".into(), Value::String(template));
        }
        Self::from_parts(inner, config, &config_path)
    }

    /// Trains a GPT-2 style byte-level BPE tokenizer on `texts`, deterministically.
    ///
    /// Any text round-trips (`decode(encode(x)) == x`). The special tokens take the first ids
    /// (eos, then pad, then bos); `vocab_size` is an upper bound that counts them and the 256 byte
    /// symbols (a small corpus may run out of pairs seen twice before reaching it).
    pub fn train_bpe<S: AsRef<str> + Sync>(texts: &[S], vocab_size: usize, special: &SpecialTokens) -> Result<Self> {
        let _span = tracing::info_span!("train_bpe", texts = texts.len(), vocab_size).entered();
        let special_names: Vec<&str> = [Some(special.eos.as_str()), special.pad.as_deref(), special.bos.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let minimum = ByteLevel::alphabet().len() + special_names.len();
        if vocab_size < minimum {
            return Err(Error::invalid(format!(
                "BPE vocab_size {vocab_size} is too small: the byte alphabet and special tokens alone need {minimum}"
            )));
        }
        let mut trainer = TrainerWrapper::BpeTrainer(
            BpeTrainer::builder()
                .vocab_size(vocab_size)
                .min_frequency(2)
                .show_progress(false)
                .special_tokens(special_names.iter().map(|name| AddedToken::from(*name, true)).collect())
                .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
                .build(),
        );
        let mut inner = tokenizers::Tokenizer::new(BPE::default());
        inner
            .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
            .with_post_processor(Some(ByteLevel::default().add_prefix_space(false)))
            .with_decoder(Some(ByteLevelDecoder::default()));
        inner
            .train(&mut trainer, texts.iter().map(AsRef::as_ref))
            .map_err(|err| Error::Tokenizer(format!("BPE training failed: {err}")))?;

        let mut config = Map::new();
        config.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        config.insert("clean_up_tokenization_spaces".into(), false.into());
        config.insert("eos_token".into(), special.eos.clone().into());
        for (key, name) in [("pad_token", &special.pad), ("bos_token", &special.bos)] {
            if let Some(name) = name {
                config.insert(key.into(), name.clone().into());
            }
        }
        Self::from_parts(inner, config, Path::new(TOKENIZER_CONFIG_FILE))
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir` (created if missing), in the
    /// layout `transformers.AutoTokenizer.from_pretrained(dir)` loads.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|err| Error::io(dir, err))?;
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let json = self
            .inner
            .to_string(false)
            .map_err(|err| Error::Tokenizer(format!("cannot serialize the tokenizer: {err}")))?;
        std::fs::write(&tokenizer_path, json).map_err(|err| Error::io(&tokenizer_path, err))?;
        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        let config = serde_json::to_string_pretty(&self.config)
            .map_err(|source| Error::Json { path: config_path.clone(), source })?;
        std::fs::write(&config_path, config).map_err(|err| Error::io(&config_path, err))
    }

    /// Token ids of `text`, without any special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let encoding = self.inner.encode_fast(text, false).map_err(|err| encode_error(text, err))?;
        Ok(to_i64(encoding.get_ids()))
    }

    /// `text` as `tokenizer(text)` gives it in `transformers`: with what the post-processor adds (a
    /// BOS, for tokenizers that add one). A completion's prompt, never put through a chat template.
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<i64>> {
        let encoding = self.inner.encode_fast(text, true).map_err(|err| encode_error(text, err))?;
        Ok(to_i64(encoding.get_ids()))
    }

    /// [`Tokenizer::encode`] for many texts, in parallel.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<i64>>> {
        let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let encodings = self
            .inner
            .encode_batch_fast(inputs, false)
            .map_err(|err| Error::Tokenizer(format!("cannot tokenize a batch of {} texts: {err}", texts.len())))?;
        Ok(encodings.iter().map(|encoding| to_i64(encoding.get_ids())).collect())
    }

    /// This tokenizer with prompts and responses put through the chat template (`Auto`, when it
    /// has one) or not (`None`).
    pub fn with_chat_mode(mut self, mode: ChatMode) -> Self {
        self.chat_mode = mode;
        self
    }

    /// The chat template in use: the tokenizer's, unless the mode is `None`.
    fn active_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref().filter(|_| self.chat_mode == ChatMode::Auto)
    }

    /// Whether prompts go through a chat template.
    pub fn uses_chat_template(&self) -> bool {
        self.active_template().is_some()
    }

    /// The tokens a model generates a reply to `prompt` from. With a chat template: the prompt's
    /// turns (a string is one user turn) rendered with the generation prompt, then tokenized as
    /// `transformers`' `apply_chat_template(..., add_generation_prompt=True, tokenize=True)` does
    /// (the rendered text, its special tokens as written, nothing added). Otherwise the prompt's
    /// plain text as `tokenizer(text)` gives it: with what the post-processor adds (a BOS, for
    /// tokenizers that add one).
    pub fn encode_generation_prompt(&self, prompt: impl AsPrompt) -> Result<Vec<i64>> {
        Ok(self.encode_generation_prompts(&[prompt])?.remove(0))
    }

    /// [`Tokenizer::encode_generation_prompt`] for many prompts, tokenized in parallel.
    pub fn encode_generation_prompts<P: AsPrompt>(&self, prompts: &[P]) -> Result<Vec<Vec<i64>>> {
        match self.active_template() {
            Some(template) => {
                let heads = prompts.iter().map(|prompt| render_head(template, prompt)).collect::<Result<Vec<_>>>()?;
                self.encode_batch(&heads)
            }
            None => {
                let inputs: Vec<&str> = prompts.iter().map(AsPrompt::prompt_text).collect();
                let encodings = self.inner.encode_batch_fast(inputs, true).map_err(|err| {
                    Error::Tokenizer(format!("cannot tokenize a batch of {} prompts: {err}", prompts.len()))
                })?;
                Ok(encodings.iter().map(|encoding| to_i64(encoding.get_ids())).collect())
            }
        }
    }

    /// The project's tokenization rule: the prompt as [`Tokenizer::encode_generation_prompt`] gives
    /// it, and `tokens(response) ++ [eos]`. With a chat template, the response part is the rendered
    /// conversation (the prompt's turns, then the assistant's response) after the rendered prompt,
    /// cut after its last end-of-turn (eos) token, so it ends exactly where generation stops; a
    /// template that writes no eos gets one appended. A prompt conversation's earlier assistant
    /// turns are found the same way and their token ranges reported.
    pub fn encode_prompt_response(&self, prompt: impl AsPrompt + Sync, response: &str) -> Result<PromptResponseIds> {
        Ok(self.encode_prompt_response_batch(&[(prompt, response)])?.remove(0))
    }

    /// [`Tokenizer::encode_prompt_response`] for many pairs, in parallel.
    pub fn encode_prompt_response_batch<P, R>(&self, pairs: &[(P, R)]) -> Result<Vec<PromptResponseIds>>
    where
        P: AsPrompt + Sync,
        R: AsRef<str> + Sync,
    {
        let Some(template) = self.active_template() else {
            let prompts: Vec<&P> = pairs.iter().map(|(p, _)| p).collect();
            let prompts = self.encode_generation_prompts(&prompts)?;
            let responses: Vec<&str> = pairs.iter().map(|(_, r)| r.as_ref()).collect();
            let responses = self.encode_batch(&responses)?;
            return Ok(prompts
                .into_iter()
                .zip(responses)
                .map(|(prompt, mut response)| {
                    response.push(i64::from(self.eos_id));
                    PromptResponseIds { prompt, response, earlier_assistant_turns: Vec::new() }
                })
                .collect());
        };
        // Each pair's rendered prompt cut into pieces (odd pieces: earlier assistant turns), and its
        // response text with whether it already ends with the eos token.
        let rendered: Vec<(Vec<String>, (String, bool))> = pairs
            .iter()
            .map(|(prompt, response)| {
                let turns = prompt_turns(prompt);
                let (pieces, head) = self.prompt_pieces(template, &turns)?;
                let mut conversation = turns.into_owned();
                conversation.push(ChatMessage::new(ASSISTANT, response.as_ref()));
                Ok((pieces, self.turn_after(template, &head, &conversation)?))
            })
            .collect::<Result<_>>()?;
        let texts: Vec<&str> = rendered
            .iter()
            .flat_map(|(pieces, (response, _))| pieces.iter().map(String::as_str).chain([response.as_str()]))
            .collect();
        let mut encoded = self.encode_batch(&texts)?.into_iter();
        Ok(rendered
            .iter()
            .map(|(pieces, (_, ends_in_eos))| {
                let mut ids = PromptResponseIds::default();
                for (index, piece) in encoded.by_ref().take(pieces.len()).enumerate() {
                    let start = ids.prompt.len();
                    ids.prompt.extend(piece);
                    if index % 2 == 1 {
                        ids.earlier_assistant_turns.push(start..ids.prompt.len());
                    }
                }
                ids.response = encoded.next().expect("one response per pair");
                if !ends_in_eos {
                    ids.response.push(i64::from(self.eos_id));
                }
                ids
            })
            .collect())
    }

    /// The rendered prompt (with the generation prompt) cut into pieces that alternate between
    /// the rest and the earlier assistant turns (`[rest, assistant, rest, …, rest]`), and the
    /// whole rendered prompt.
    fn prompt_pieces(&self, template: &ChatTemplate, turns: &[ChatMessage]) -> Result<(Vec<String>, String)> {
        let head = template.render(turns, true)?;
        let mut pieces = Vec::new();
        let mut cut = 0;
        for (index, _) in turns.iter().enumerate().filter(|(_, turn)| turn.role == ASSISTANT) {
            let before = template.render(&turns[..index], true)?;
            let (turn, _) = self.turn_after(template, &before, &turns[..=index])?;
            let at = before.len();
            if at < cut || !head.get(at..).is_some_and(|rest| rest.starts_with(&turn)) || !head.starts_with(&before) {
                return Err(Error::ChatTemplate(format!(
                    "turn {index} (assistant) renders differently inside the longer conversation, so the \
                     conversation's assistant turns cannot be told apart (set chat_template = \"none\", or give \
                     single-turn prompts)"
                )));
            }
            pieces.push(head[cut..at].to_owned());
            pieces.push(turn.clone());
            cut = at + turn.len();
        }
        pieces.push(head[cut..].to_owned());
        Ok((pieces, head))
    }

    /// The last turn of the rendered `conversation` (ending with that turn, no generation prompt)
    /// after `head` (the rendered turns before it, with the generation prompt), cut after its
    /// last eos; and whether it has one.
    fn turn_after(&self, template: &ChatTemplate, head: &str, conversation: &[ChatMessage]) -> Result<(String, bool)> {
        let full = template.render(conversation, false)?;
        let Some(tail) = full.strip_prefix(head) else {
            return Err(Error::ChatTemplate(
                "the conversation does not start with the rendered prompt (add_generation_prompt=True), so its \
                 assistant turn cannot be told apart"
                    .into(),
            ));
        };
        let eos = self.inner.id_to_token(self.eos_id).unwrap_or_default();
        Ok(match tail.rfind(&eos).filter(|_| !eos.is_empty()) {
            Some(at) => (tail[..at + eos.len()].to_owned(), true),
            None => (tail.to_owned(), false),
        })
    }

    /// Text of `ids`; special tokens (eos, pad, ...) are dropped when `skip_special_tokens`.
    pub fn decode(&self, ids: &[i64], skip_special_tokens: bool) -> Result<String> {
        let ids = ids
            .iter()
            .map(|&id| u32::try_from(id).map_err(|_| Error::invalid(format!("token id {id} is out of range"))))
            .collect::<Result<Vec<u32>>>()?;
        self.inner
            .decode(&ids, skip_special_tokens)
            .map_err(|err| Error::Tokenizer(format!("cannot decode {} token ids: {err}", ids.len())))
    }

    /// Id of the end-of-text token.
    pub fn eos_id(&self) -> i64 {
        i64::from(self.eos_id)
    }

    /// Id of the padding token, or of eos when the tokenizer has no pad token.
    pub fn pad_id(&self) -> i64 {
        i64::from(self.pad_id.unwrap_or(self.eos_id))
    }

    /// Id of the beginning-of-text token, when the tokenizer has one.
    pub fn bos_id(&self) -> Option<i64> {
        self.bos_id.map(i64::from)
    }

    /// Number of token ids, added (special) tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Fails unless every token id fits a model embedding with `embedding_rows` rows (models may
    /// have more rows than tokens, never fewer).
    pub fn check_fits_embedding(&self, embedding_rows: i64) -> Result<()> {
        let tokenizer_vocab = self.vocab_size();
        if i64::try_from(tokenizer_vocab).is_ok_and(|vocab| vocab <= embedding_rows) {
            return Ok(());
        }
        Err(Error::VocabMismatch { tokenizer_vocab, embedding_rows })
    }

    /// The chat template, when the checkpoint has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Renders `messages` with the checkpoint's chat template, like `transformers`'
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            Error::ChatTemplate(
                "this tokenizer has no chat_template (tokenizer_config.json or chat_template.jinja)".into(),
            )
        })?;
        template.render(messages, add_generation_prompt)
    }

    fn from_parts(mut inner: tokenizers::Tokenizer, config: Map<String, Value>, config_path: &Path) -> Result<Self> {
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|err| Error::Tokenizer(format!("cannot disable truncation: {err}")))?;
        let special_tokens = named_special_tokens(&config);
        let token_id = |name: &str| -> Result<u32> {
            inner.token_to_id(name).ok_or_else(|| Error::TokenizerFile {
                path: config_path.to_path_buf(),
                message: format!("special token `{name}` is not in the tokenizer's vocabulary"),
            })
        };
        let eos_id = match special_tokens.get("eos_token") {
            Some(eos) => token_id(eos)?,
            None => FALLBACK_EOS_TOKENS.iter().find_map(|name| inner.token_to_id(name)).ok_or_else(|| {
                Error::TokenizerFile {
                    path: config_path.to_path_buf(),
                    message: format!("no eos_token is set and none of {FALLBACK_EOS_TOKENS:?} is in the vocabulary"),
                }
            })?,
        };
        let bos_id = special_tokens.get("bos_token").map(|name| token_id(name)).transpose()?;
        let pad_id = special_tokens.get("pad_token").map(|name| token_id(name)).transpose()?;
        let chat_template = chat_template_source(&config, config_path)?
            .map(|source| ChatTemplate::new(source, special_tokens))
            .transpose()?;
        Ok(Tokenizer { inner, config, eos_id, bos_id, pad_id, chat_template, chat_mode: ChatMode::Auto })
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("eos_id", &self.eos_id)
            .field("bos_id", &self.bos_id)
            .field("pad_id", &self.pad_id)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

/// The named special tokens set in `tokenizer_config.json`, each either a string or an
/// `AddedToken`-style object with a `content` field.
fn named_special_tokens(config: &Map<String, Value>) -> BTreeMap<String, String> {
    NAMED_SPECIAL_TOKENS
        .iter()
        .filter_map(|&key| {
            let content = match config.get(key)? {
                Value::String(content) => content.clone(),
                Value::Object(token) => token.get("content")?.as_str()?.to_owned(),
                _ => return None,
            };
            Some((key.to_owned(), content))
        })
        .collect()
}

/// The chat template in `tokenizer_config.json`: a string, or a list of named templates of which
/// `transformers` uses the one called `default`.
fn chat_template_source(config: &Map<String, Value>, config_path: &Path) -> Result<Option<String>> {
    let bad_template =
        |message: &str| Error::TokenizerFile { path: config_path.to_path_buf(), message: message.into() };
    match config.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(source)) => Ok(Some(source.clone())),
        Some(Value::Array(named)) => named
            .iter()
            .find(|entry| entry.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|entry| entry.get("template")?.as_str())
            .map(|source| Some(source.to_owned()))
            .ok_or_else(|| bad_template("chat_template is a list of named templates without a `default` one")),
        Some(_) => Err(bad_template("chat_template must be a string or a list of {name, template} objects")),
    }
}

fn read_json_object(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(|err| Error::io(path, err))?;
    match serde_json::from_str(&text).map_err(|source| Error::Json { path: path.to_path_buf(), source })? {
        Value::Object(object) => Ok(object),
        _ => Err(Error::TokenizerFile { path: path.to_path_buf(), message: "expected a JSON object".into() }),
    }
}

/// A prompt's turns: its conversation, or its text as one user turn.
fn prompt_turns(prompt: &impl AsPrompt) -> std::borrow::Cow<'_, [ChatMessage]> {
    match prompt.prompt_messages() {
        Some(turns) => std::borrow::Cow::Borrowed(turns),
        None => std::borrow::Cow::Owned(vec![ChatMessage::new("user", prompt.prompt_text())]),
    }
}

/// A prompt's turns rendered with the generation prompt.
fn render_head(template: &ChatTemplate, prompt: &impl AsPrompt) -> Result<String> {
    template.render(&prompt_turns(prompt), true)
}

fn encode_error(text: &str, err: impl std::fmt::Display) -> Error {
    let preview: String = text.chars().take(40).collect();
    Error::Tokenizer(format!("cannot tokenize {preview:?}: {err}"))
}

fn to_i64(ids: &[u32]) -> Vec<i64> {
    ids.iter().map(|&id| i64::from(id)).collect()
}
