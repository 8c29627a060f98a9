//! Sampling K responses per prompt from a policy checkpoint with rlhf-model's batched KV-cache
//! generation, into a table `id, prompt, response, sample: u32` (the `demonstrations` schema plus
//! the sample index; `id` is the prompt's id, shared by its K rows).
//!
//! Rows are generated prompt-major in batches of `batch_size`; batch `b` samples with seed
//! `seed + b`, so a run is reproducible for a given batch size. A prompt goes through the
//! tokenizer's chat template when it has one (`chat_template = auto`), as one user turn with the
//! generation prompt. Temperature 0 is greedy decoding. Generation stops at any end token of the
//! model's config, its `generation_config.json` and the tokenizer. Responses are decoded without
//! special tokens; empty ones (eos straight away) are dropped and counted.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use rlhf_data::{Demonstration, Prompt, PromptText, Record, RecordReader, TableWriter};
use rlhf_model::{
    end_token_ids, generate_from_tokens, CausalLm, ChatMode, GenerationConfig, GenerationDefaults, Placement, Tokenizer,
};

use crate::{Error, Result};

/// How to sample.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleConfig {
    pub samples_per_prompt: u32,
    /// 0: greedy decoding.
    pub temperature: f64,
    /// Nucleus mass (1.0 = off).
    pub top_p: f64,
    /// Only the k most likely tokens (0 = off).
    pub top_k: i64,
    pub max_new_tokens: i64,
    /// End tokens besides the model config's and the tokenizer's (`generation_config.json`'s).
    pub extra_eos_token_ids: Vec<i64>,
    pub seed: u64,
    /// Rows (prompt × sample) per generation batch.
    pub batch_size: usize,
}

/// Sampling settings given on a command line; unset ones come from the checkpoint's
/// `generation_config.json`, then from [`SampleConfig::default`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleSettings {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub max_new_tokens: Option<i64>,
    /// Prompts through the tokenizer's chat template (auto) or as plain text (none).
    pub chat_template: ChatMode,
}

impl SampleConfig {
    /// `self` with `settings` laid over `defaults` (a checkpoint's `generation_config.json`) laid
    /// over it; the end tokens of `defaults` are added.
    pub fn with_settings(self, settings: &SampleSettings, defaults: &GenerationDefaults) -> Self {
        SampleConfig {
            temperature: settings.temperature.or(defaults.temperature()).unwrap_or(self.temperature),
            top_p: settings.top_p.or(defaults.top_p).unwrap_or(self.top_p),
            top_k: settings.top_k.or(defaults.top_k).unwrap_or(self.top_k),
            max_new_tokens: settings.max_new_tokens.or(defaults.max_new_tokens).unwrap_or(self.max_new_tokens),
            extra_eos_token_ids: [self.extra_eos_token_ids, defaults.eos_token_ids()].concat(),
            ..self
        }
    }
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            samples_per_prompt: 4,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 96,
            extra_eos_token_ids: Vec::new(),
            seed: 0,
            batch_size: 64,
        }
    }
}

/// One sampled response.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The prompt's id.
    pub id: String,
    /// The prompt's text and conversation.
    pub prompt: PromptText,
    pub response: String,
    /// Index of this sample among the prompt's.
    pub sample: u32,
}

/// One sampled row in token ids.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenSample {
    /// Index of the prompt in the input slice.
    pub prompt_index: usize,
    /// Index of this sample among the prompt's.
    pub sample: u32,
    /// The prompt's tokens as fed to the model.
    pub prompt_tokens: Vec<i64>,
    /// The generated tokens, the eos included when the row stopped on one.
    pub tokens: Vec<i64>,
    /// Whether the row stopped on an eos (rather than at `max_new_tokens`).
    pub eos: bool,
    /// The response text, decoded without special tokens.
    pub text: String,
}

/// Samples `samples_per_prompt` rows for every prompt, empty ones included, prompt-major.
pub fn sample_tokens(
    model: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[Prompt],
    config: &SampleConfig,
) -> Result<Vec<TokenSample>> {
    if config.samples_per_prompt == 0 || config.batch_size == 0 || config.max_new_tokens <= 0 {
        return Err(Error::Invalid("samples per prompt, batch size and max new tokens must be at least 1".into()));
    }
    let valid = config.temperature >= 0.0 && config.top_k >= 0 && config.top_p > 0.0 && config.top_p <= 1.0;
    if !valid {
        return Err(Error::Invalid(format!(
            "temperature must be >= 0 (0: greedy), top_k >= 0 and top_p in (0, 1]; got {}, {}, {}",
            config.temperature, config.top_k, config.top_p
        )));
    }
    let _span = tracing::info_span!("generate", prompts = prompts.len(), k = config.samples_per_prompt).entered();
    let mut encoded = tokenizer.encode_generation_prompts(prompts)?;
    // Room for the answer within the model's positions: longer prompts keep their last tokens.
    let room = model.config().max_positions() - config.max_new_tokens;
    if room < 1 {
        return Err(Error::Invalid(format!(
            "max new tokens {} leaves no room for a prompt in the model's {} positions",
            config.max_new_tokens,
            model.config().max_positions()
        )));
    }
    let cut = rlhf_model::keep_last_tokens(&mut encoded, room as usize);
    if cut > 0 {
        tracing::warn!(
            cut,
            room,
            "prompts longer than the model's positions leave for the answer keep their last tokens"
        );
    }
    let rows: Vec<(usize, u32)> =
        (0..prompts.len()).flat_map(|i| (0..config.samples_per_prompt).map(move |k| (i, k))).collect();
    let eos_token_ids = end_token_ids(model, tokenizer, &config.extra_eos_token_ids);
    let mut samples = Vec::with_capacity(rows.len());
    for (b, chunk) in rows.chunks(config.batch_size).enumerate() {
        let generation_config = GenerationConfig {
            max_new_tokens: config.max_new_tokens,
            top_p: config.top_p,
            top_k: config.top_k,
            eos_token_ids: eos_token_ids.clone(),
            pad_token_id: tokenizer.pad_id(),
            seed: config.seed + b as u64,
            ..GenerationConfig::default()
        }
        .at_temperature(config.temperature);
        let ids: Vec<Vec<i64>> = chunk.iter().map(|&(i, _)| encoded[i].clone()).collect();
        let generation = tch::no_grad(|| generate_from_tokens(model, &ids, &generation_config))?;
        for (&(i, k), tokens) in chunk.iter().zip(generation.rows()?) {
            let eos = tokens.last().is_some_and(|t| eos_token_ids.contains(t));
            let text = tokenizer.decode(&tokens, true)?;
            samples.push(TokenSample {
                prompt_index: i,
                sample: k,
                prompt_tokens: encoded[i].clone(),
                tokens,
                eos,
                text,
            });
        }
        tracing::debug!(batch = b, rows = samples.len(), "generated");
    }
    Ok(samples)
}

/// Samples from `model` for every prompt; returns the samples and how many empty responses were
/// dropped.
pub fn sample_responses(
    model: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[Prompt],
    config: &SampleConfig,
) -> Result<(Vec<Sample>, usize)> {
    let rows = sample_tokens(model, tokenizer, prompts, config)?;
    let total = rows.len();
    let samples: Vec<Sample> = rows
        .into_iter()
        .filter(|row| !row.text.trim().is_empty())
        .map(|row| {
            let prompt = &prompts[row.prompt_index];
            Sample { id: prompt.id.clone(), prompt: PromptText::of(prompt), response: row.text, sample: row.sample }
        })
        .collect();
    let empty = total - samples.len();
    Ok((samples, empty))
}

/// Writes samples as `id, prompt, response` (the demonstrations schema) plus `sample: u32`.
pub fn write_samples(path: &Path, samples: &[Sample]) -> Result<u64> {
    let mut writer = SampleWriter::create(path)?;
    writer.write(samples)?;
    writer.finish()
}

/// A samples table written chunk by chunk (atomically: it appears at [`SampleWriter::finish`]).
pub struct SampleWriter {
    writer: TableWriter,
}

impl SampleWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let base = Demonstration::schema();
        let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("sample", DataType::UInt32, false));
        let schema = Arc::new(Schema::new(fields).with_metadata(base.metadata().clone()));
        Ok(SampleWriter { writer: TableWriter::create(path, schema)? })
    }

    pub fn write(&mut self, samples: &[Sample]) -> Result<()> {
        let schema = self.writer.schema().clone();
        for chunk in samples.chunks(rlhf_data::BATCH_ROWS) {
            let rows: Vec<Demonstration> = chunk
                .iter()
                .map(|s| Demonstration {
                    id: s.id.clone(),
                    prompt: s.prompt.text.clone(),
                    prompt_messages: s.prompt.messages.clone(),
                    response: s.response.clone(),
                })
                .collect();
            let mut columns = Demonstration::to_batch(&rows)?.columns().to_vec();
            columns.push(Arc::new(UInt32Array::from_iter_values(chunk.iter().map(|s| s.sample))));
            let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::Invalid(e.to_string()))?;
            self.writer.write(&batch)?;
        }
        Ok(())
    }

    /// Moves the table into place; returns its row count.
    pub fn finish(self) -> Result<u64> {
        Ok(self.writer.finish()?)
    }
}

/// What [`generate_file`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerateSummary {
    pub prompts: usize,
    pub rows: u64,
    /// Empty responses dropped.
    pub empty: usize,
}

/// Loads the policy in `model_dir`, samples for every prompt of the `prompts` table (the first
/// `max_prompts`, 0: all) and writes `out` (atomically). `settings` override the checkpoint's
/// `generation_config.json`, which overrides `config`. Prompts stream through in chunks that fill
/// whole generation batches (each batch keeps the seed it has in one pass over all prompts), so
/// memory holds one chunk's prompts and samples however long the table is.
pub fn generate_file(
    model_dir: &Path,
    prompts: &Path,
    out: &Path,
    config: SampleConfig,
    settings: &SampleSettings,
    max_prompts: usize,
    placement: Placement,
) -> Result<GenerateSummary> {
    let config = config.with_settings(settings, &GenerationDefaults::from_dir(model_dir)?);
    let reader = RecordReader::<Prompt>::open(prompts)?;
    if reader.num_rows() == 0 {
        return Err(Error::Invalid(format!("{}: has no prompts", prompts.display())));
    }
    let tokenizer = Tokenizer::from_dir(model_dir)?.with_chat_mode(settings.chat_template);
    let model = CausalLm::from_pretrained(model_dir, placement.device, placement.kind)?;
    tokenizer.check_fits_embedding(model.config().vocab_size())?;
    let batch = config.batch_size.max(1);
    let chunk_prompts = batch * (rlhf_data::BATCH_ROWS / batch).max(1);
    let limit = if max_prompts > 0 { max_prompts } else { usize::MAX };
    let mut writer = SampleWriter::create(out)?;
    let mut summary = GenerateSummary { prompts: 0, rows: 0, empty: 0 };
    let mut sample_chunk = |chunk: &[Prompt], summary: &mut GenerateSummary| -> Result<()> {
        let first_batch = (summary.prompts * config.samples_per_prompt as usize / batch) as u64;
        let chunk_config = SampleConfig { seed: config.seed + first_batch, ..config.clone() };
        let (samples, empty) = sample_responses(&model, &tokenizer, chunk, &chunk_config)?;
        writer.write(&samples)?;
        summary.prompts += chunk.len();
        summary.empty += empty;
        Ok(())
    };
    let mut pending: Vec<Prompt> = Vec::with_capacity(chunk_prompts);
    let mut taken = 0;
    for chunk in reader {
        for prompt in chunk?.records {
            if taken == limit {
                break;
            }
            taken += 1;
            pending.push(prompt);
            if pending.len() == chunk_prompts {
                sample_chunk(&pending, &mut summary)?;
                pending.clear();
            }
        }
        if taken == limit {
            break;
        }
    }
    if !pending.is_empty() {
        sample_chunk(&pending, &mut summary)?;
    }
    if summary.empty > 0 {
        tracing::warn!(empty = summary.empty, "dropped empty responses");
    }
    summary.rows = writer.finish()?;
    Ok(summary)
}
