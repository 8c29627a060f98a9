//! A policy checkpoint behind a queue. One worker thread owns the model and runs one job at a
//! time: a completion (one or more rows, streamed token by token with their log-probs, for the
//! chat page and the OpenAI-compatible API) or a batch of samples (the live labelling queue, sampled
//! as `rlhf-eval generate` samples).
//!
//! Text streams as it becomes final: a row's text is its tokens decoded together (without special
//! tokens), so a character split across tokens shows once whole, and text that could be the start
//! of a stop string is held back until it is known not to be one. Reported log-probs are the
//! model's own (`log_softmax` of the raw logits, before temperature or top-p), as vLLM reports them.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use rlhf_data::Prompt;
use rlhf_eval::generate::{sample_tokens, SampleConfig, TokenSample};
use rlhf_model::{
    end_token_ids, generate_streaming, CausalLm, ChatMode, GenerationConfig, GenerationDefaults, Placement, Tokenizer,
};
use tch::{Kind, Tensor};
use tokio::sync::mpsc::UnboundedSender;

/// Jobs that may wait behind the running one; more are refused (the server answers 503).
pub const QUEUE_DEPTH: usize = 16;
/// The most alternatives a token's log-probs list.
pub const MAX_TOP_LOGPROBS: usize = 20;

/// What the served checkpoint is.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// The name clients ask for: the checkpoint directory's name.
    pub name: String,
    pub dir: PathBuf,
    /// Prompt and answer together fit in this many positions.
    pub max_positions: i64,
    /// Whether chat messages go through the checkpoint's chat template.
    pub chat_template: bool,
    /// Its `generation_config.json` (sampling defaults, end tokens).
    pub defaults: GenerationDefaults,
}

/// How to continue one or more prompts.
pub struct Completion {
    /// One row per prompt; a row is one choice.
    pub prompts: Vec<Vec<i64>>,
    pub max_tokens: i64,
    /// 0: greedy.
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: i64,
    pub seed: u64,
    /// Strings that end a row (not included in its text).
    pub stop: Vec<String>,
    /// `Some(k)`: report each token's log-prob and its `k` most likely alternatives.
    pub logprobs: Option<usize>,
    pub events: UnboundedSender<Event>,
}

/// A token with its log-prob, and the most likely alternatives at its place.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

/// Why a row ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end token or a stop string.
    Stop,
    /// `max_tokens`.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// What a completion reports, in order, per row.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// New final text of row `row`, and the tokens whose text it completes.
    Text { row: usize, text: String, tokens: Vec<TokenLogprob> },
    /// Row `row` ended after `tokens` generated tokens.
    Done { row: usize, finish: Finish, tokens: usize },
    /// The job failed; no more events follow.
    Failed(String),
}

/// The answer of a sampling job: every sample (empty ones too), prompt-major.
pub type Sampled = Result<Vec<TokenSample>, String>;

enum Job {
    Complete(Completion),
    Sample { prompts: Vec<Prompt>, config: SampleConfig, reply: Box<dyn FnOnce(Sampled) + Send> },
}

/// A handle on the worker: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Engine {
    jobs: SyncSender<Job>,
    pub tokenizer: Arc<Tokenizer>,
    pub info: Arc<ModelInfo>,
}

/// Why a job was not queued.
#[derive(Debug, thiserror::Error)]
pub enum Busy {
    #[error("the model is busy ({QUEUE_DEPTH} requests wait); try again shortly")]
    Full,
    #[error("the model's worker stopped")]
    Stopped,
}

impl Engine {
    /// Loads the policy in `dir` (its tokenizer in chat mode `chat`) on a worker thread of its own;
    /// returns once it is loaded, or with the reason it cannot be.
    pub fn load(dir: &Path, placement: Placement, chat: ChatMode) -> anyhow::Result<Engine> {
        let tokenizer = Arc::new(Tokenizer::from_dir(dir)?.with_chat_mode(chat));
        let defaults = GenerationDefaults::from_dir(dir)?;
        let (jobs, queue) = sync_channel::<Job>(QUEUE_DEPTH);
        let (loaded, ready) = std::sync::mpsc::channel();
        let worker_tokenizer = tokenizer.clone();
        let worker_dir = dir.to_path_buf();
        let extra_eos = defaults.eos_token_ids();
        std::thread::Builder::new().name("rlhf-studio-model".into()).spawn(move || {
            let model = match CausalLm::from_pretrained(&worker_dir, placement.device, placement.kind)
                .and_then(|model| worker_tokenizer.check_fits_embedding(model.config().vocab_size()).map(|()| model))
            {
                Ok(model) => model,
                Err(e) => return drop(loaded.send(Err(e))),
            };
            let eos = end_token_ids(&model, &worker_tokenizer, &extra_eos);
            let _ = loaded.send(Ok(model.config().max_positions()));
            let worker = Worker { model, tokenizer: worker_tokenizer, eos };
            for job in queue {
                worker.run(job);
            }
        })?;
        let max_positions = ready.recv().map_err(|_| anyhow::anyhow!("the model's worker died while loading"))??;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        let info = ModelInfo {
            name,
            dir: dir.to_path_buf(),
            max_positions,
            chat_template: tokenizer.uses_chat_template(),
            defaults,
        };
        Ok(Engine { jobs, tokenizer, info: Arc::new(info) })
    }

    /// Queues a completion; its events arrive on `completion.events`.
    pub fn complete(&self, completion: Completion) -> Result<(), Busy> {
        self.submit(Job::Complete(completion))
    }

    /// Queues sampling `config.samples_per_prompt` responses to each prompt; `reply` gets them.
    pub fn sample(
        &self,
        prompts: Vec<Prompt>,
        config: SampleConfig,
        reply: impl FnOnce(Sampled) + Send + 'static,
    ) -> Result<(), Busy> {
        self.submit(Job::Sample { prompts, config, reply: Box::new(reply) })
    }

    fn submit(&self, job: Job) -> Result<(), Busy> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Busy::Full,
            TrySendError::Disconnected(_) => Busy::Stopped,
        })
    }
}

struct Worker {
    model: CausalLm,
    tokenizer: Arc<Tokenizer>,
    eos: Vec<i64>,
}

impl Worker {
    fn run(&self, job: Job) {
        match job {
            Job::Complete(completion) => {
                if let Err(e) = self.complete(&completion) {
                    let _ = completion.events.send(Event::Failed(e.to_string()));
                }
            }
            Job::Sample { prompts, config, reply } => {
                let _span = tracing::info_span!("live sampling", prompts = prompts.len()).entered();
                reply(sample_tokens(&self.model, &self.tokenizer, &prompts, &config).map_err(|e| e.to_string()));
            }
        }
    }

    fn complete(&self, job: &Completion) -> anyhow::Result<()> {
        let config = GenerationConfig {
            max_new_tokens: job.max_tokens,
            top_p: job.top_p,
            top_k: job.top_k,
            eos_token_ids: self.eos.clone(),
            pad_token_id: self.tokenizer.pad_id(),
            seed: job.seed,
            ..GenerationConfig::default()
        }
        .at_temperature(job.temperature);
        let mut rows: Vec<Row> = job.prompts.iter().map(|_| Row::default()).collect();
        let mut failure = None;
        generate_streaming(&self.model, &job.prompts, &config, |next, logits| {
            match self.step(job, &mut rows, next, logits) {
                Ok(go_on) => go_on,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        for (index, row) in rows.iter_mut().enumerate().filter(|(_, row)| !row.done) {
            // The client may be gone; nothing is left to stop.
            let _ = self.finish(job, index, row, Finish::Length, row.tokens.len());
        }
        Ok(())
    }

    /// Ends row `index`: sends the text not yet sent (a held-back tail included) and why it ended.
    fn finish(
        &self,
        job: &Completion,
        index: usize,
        row: &mut Row,
        finish: Finish,
        tokens: usize,
    ) -> anyhow::Result<()> {
        row.done = true;
        let text = self.tokenizer.decode(&row.tokens, true)?;
        let rest = text.get(row.emitted..).unwrap_or_default().to_string();
        let pending = std::mem::take(&mut row.pending);
        job.events.send(Event::Text { row: index, text: rest, tokens: pending })?;
        job.events.send(Event::Done { row: index, finish, tokens })?;
        Ok(())
    }

    /// Takes one step's tokens; whether generation should go on.
    fn step(&self, job: &Completion, rows: &mut [Row], next: &Tensor, logits: &Tensor) -> anyhow::Result<bool> {
        let next = Vec::<i64>::try_from(next)?;
        let logprobs = job.logprobs.map(|k| self.logprobs(&next, logits, k)).transpose()?;
        for (index, row) in rows.iter_mut().enumerate().filter(|(_, row)| !row.done) {
            let token = next[index];
            if self.eos.contains(&token) {
                let generated = row.tokens.len() + 1;
                self.finish(job, index, row, Finish::Stop, generated)?;
                continue;
            }
            row.tokens.push(token);
            if let Some(logprobs) = &logprobs {
                row.pending.push(logprobs[index].clone());
            }
            let text = self.tokenizer.decode(&row.tokens, true)?;
            let (end, stopped) = final_text_end(&text, row.emitted, &job.stop);
            if end > row.emitted && !text[row.emitted..end].ends_with('\u{FFFD}') || stopped {
                let fresh = text.get(row.emitted..end).unwrap_or_default().to_string();
                row.emitted = end.max(row.emitted);
                let tokens = std::mem::take(&mut row.pending);
                job.events.send(Event::Text { row: index, text: fresh, tokens })?;
            }
            if stopped {
                row.done = true;
                job.events.send(Event::Done { row: index, finish: Finish::Stop, tokens: row.tokens.len() })?;
            }
        }
        Ok(rows.iter().any(|row| !row.done))
    }

    /// Each row's token with its log-prob and the `k` most likely tokens.
    fn logprobs(&self, next: &[i64], logits: &Tensor, k: usize) -> anyhow::Result<Vec<TokenLogprob>> {
        let log_probs = logits.log_softmax(-1, Kind::Float);
        let chosen =
            Vec::<f32>::try_from(log_probs.gather(1, &Tensor::from_slice(next).unsqueeze(1), false).view([-1]))?;
        let (top_values, top_ids) =
            if k > 0 { log_probs.topk(k as i64, -1, true, true) } else { (Tensor::new(), Tensor::new()) };
        let mut out = Vec::with_capacity(next.len());
        for (row, (&token, &logprob)) in next.iter().zip(&chosen).enumerate() {
            let mut top = Vec::with_capacity(k);
            if k > 0 {
                let values = Vec::<f32>::try_from(top_values.get(row as i64))?;
                let ids = Vec::<i64>::try_from(top_ids.get(row as i64))?;
                for (id, value) in ids.into_iter().zip(values) {
                    top.push((self.tokenizer.decode(&[id], false)?, value));
                }
            }
            out.push(TokenLogprob { token: self.tokenizer.decode(&[token], false)?, logprob, top });
        }
        Ok(out)
    }
}

/// A row's progress: its tokens (no end token), how much of its text was sent, and the tokens not
/// yet reported with text.
#[derive(Default)]
struct Row {
    tokens: Vec<i64>,
    emitted: usize,
    pending: Vec<TokenLogprob>,
    done: bool,
}

/// How far `text` (of which `emitted` bytes were sent) is final, and whether a stop string ends it:
/// at the first stop string, or before the longest tail that could still become one.
pub fn final_text_end(text: &str, emitted: usize, stop: &[String]) -> (usize, bool) {
    let longest = stop.iter().map(String::len).max().unwrap_or(0);
    // A stop string cannot start inside text already sent (it was checked then) more than
    // `longest` bytes back.
    let mut from = emitted.saturating_sub(longest);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let first =
        stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text[from..].find(s.as_str()).map(|at| from + at)).min();
    if let Some(at) = first {
        return (at.max(emitted), true);
    }
    let held = stop
        .iter()
        .flat_map(|s| (1..s.len()).filter(|&n| s.is_char_boundary(n)).map(move |n| &s[..n]))
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0);
    ((text.len() - held).max(emitted), false)
}

#[cfg(test)]
mod tests {
    use super::final_text_end;

    #[test]
    fn text_is_held_back_only_while_it_could_start_a_stop_string() {
        let stop = vec!["\nUser:".to_string(), "###".to_string()];
        assert_eq!(final_text_end("Hello", 0, &stop), (5, false));
        assert_eq!(final_text_end("Hello\nUs", 0, &stop), (5, false));
        assert_eq!(final_text_end("Hello\nUser: hi", 5, &stop), (5, true));
        assert_eq!(final_text_end("a ## b", 0, &stop), (6, false));
        assert_eq!(final_text_end("a #", 3, &stop), (3, false));
        assert_eq!(final_text_end("a ###", 2, &stop), (2, true));
        assert_eq!(final_text_end("naïve", 0, &[]), (6, false));
    }
}
