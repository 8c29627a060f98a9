//! The language-model training loop behind both pretraining and SFT (pretraining is SFT with
//! nothing masked): masked next-token loss, gradient accumulation, AdamW with warmup + cosine,
//! gradient clipping, held-out loss/perplexity, resumable checkpoints, metrics and the final save.
//!
//! A stage directory holds `checkpoints/step-N/` (trainable tensors, optimizer state, data
//! position and RNG state), `metrics.parquet` (rlhf-data `Metric` rows) and `final/` (a Hugging
//! Face checkpoint, written atomically). [`train`] skips a directory whose `final/` exists and
//! continues from the newest checkpoint when there is one. On the CPU, the same seed, config and
//! thread count give bit-identical weights, interrupted or not: the data order comes from a seeded
//! [`TrainRng`] whose state is checkpointed, and libtorch's generator (dropout) is reseeded from
//! the seed and the step before every step.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rlhf_data::MetricsLog;
use rlhf_model::device::{peak_memory_bytes, seed_everything};
use rlhf_model::{
    build_batch, sequence_logprobs, train_state, AdamW, CausalLm, LogprobOptions, LrSchedule, PaddingSide,
    TrainRng, TrainState,
};
use tch::{nn::VarStore, Kind, Tensor};

use crate::config::TrainConfig;
use rlhf_model::batching::{BatchStream, StreamPosition};

use crate::data::Example;
use crate::error::{Error, Result};

/// The finished model inside a stage directory.
pub const FINAL_DIR: &str = "final";
/// Resumable checkpoints inside a stage directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// The stage's metrics table.
pub const METRICS_FILE: &str = "metrics.parquet";
/// Name of the trainable tensors' file in a checkpoint.
const CHECKPOINT_MODEL: &str = "model";

/// One training run of a model on examples.
pub struct TrainJob<'a> {
    /// Stage name written into the metrics (`base`, `sft`).
    pub stage: &'a str,
    /// The stage directory.
    pub dir: &'a Path,
    pub config: &'a TrainConfig,
    /// Seeds the data order and libtorch's generator.
    pub seed: u64,
    /// Fingerprint of the resolved config; checkpoints written under another are refused.
    pub config_hash: String,
    pub train: &'a [Example],
    /// Held-out examples for the eval loss (may be empty).
    pub eval: &'a [Example],
    /// Padding token id.
    pub pad_id: i64,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainSummary {
    /// Optimizer steps of the run (all of them, resumed or not).
    pub steps: u64,
    /// The checkpoint step it continued from.
    pub resumed_from: Option<u64>,
    /// Mean training loss over the last logging interval.
    pub last_loss: f64,
    /// Held-out loss before the first step (when this run started from scratch).
    pub eval_before: Option<Evaluation>,
    /// Held-out loss after the last step.
    pub eval_after: Option<Evaluation>,
    /// Training throughput of this process (input tokens per second of training steps).
    pub tokens_per_s: f64,
}

/// Held-out loss: mean negative log-likelihood per target token, and its perplexity.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub ppl: f64,
    pub tokens: usize,
}

/// Whether `dir` holds a finished model (`final/` is written atomically, so it is whole).
pub fn is_finished(dir: &Path) -> bool {
    let done = dir.join(FINAL_DIR);
    done.join("config.json").is_file() && done.join("model.safetensors").is_file()
}

/// Sum of the target tokens' negative log-likelihood of `examples` (a graph for backward).
pub fn nll_sum(model: &CausalLm, examples: &[&Example], pad_id: i64) -> Result<Tensor> {
    let pairs: Vec<(&[i64], &[i64])> = examples.iter().map(|e| (e.prompt.as_slice(), e.target.as_slice())).collect();
    let batch = build_batch(&pairs, None, pad_id, PaddingSide::Right, model.device())?;
    let logprobs = sequence_logprobs(model, &batch, LogprobOptions::default())?;
    Ok(-logprobs.sum.sum(Kind::Float))
}

/// Held-out loss and perplexity of `model` on `examples`, without gradients or dropout.
pub fn evaluate(model: &CausalLm, examples: &[Example], batch_size: usize, pad_id: i64) -> Result<Evaluation> {
    let was_training = model.is_training();
    model.set_training(false);
    let mut order: Vec<&Example> = examples.iter().collect();
    order.sort_by_key(|e| e.len());
    let result = tch::no_grad(|| -> Result<f64> {
        let mut total = 0.0;
        for chunk in order.chunks(batch_size.max(1)) {
            total += nll_sum(model, chunk, pad_id)?.double_value(&[]);
        }
        Ok(total)
    });
    model.set_training(was_training);
    let tokens: usize = examples.iter().map(Example::scored).sum();
    let loss = result? / tokens.max(1) as f64;
    Ok(Evaluation { loss, ppl: loss.exp(), tokens })
}

/// The tensors a checkpoint holds: the adapters under LoRA, every weight otherwise.
fn trainable_store(model: &CausalLm) -> &VarStore {
    model.lora().map_or_else(|| model.var_store(), |lora| &lora.var_store)
}

/// Copies a checkpoint's tensors into the model's trainable variables, checking names and shapes.
fn load_trainable(model: &CausalLm, file: &Path) -> Result<()> {
    let bad = |message: String| Error::Resume { path: file.to_path_buf(), message };
    let mut saved: HashMap<String, Tensor> = Tensor::read_safetensors(file)
        .map_err(|e| bad(e.to_string()))?
        .into_iter()
        .collect();
    for (name, var) in model.trainable_variables() {
        let src = saved.remove(&name).ok_or_else(|| bad(format!("has no tensor `{name}` for this model")))?;
        if src.size() != var.size() {
            return Err(bad(format!("tensor `{name}` has shape {:?}, the model's has {:?}", src.size(), var.size())));
        }
        tch::no_grad(|| var.shallow_clone().f_copy_(&src)).map_err(rlhf_model::Error::from)?;
    }
    match saved.keys().min() {
        Some(name) => Err(bad(format!("tensor `{name}` is not a trainable parameter of this model"))),
        None => Ok(()),
    }
}

fn check(config: &TrainConfig, train: &[Example]) -> Result<()> {
    let invalid = |m: &str| Err(Error::Invalid(m.into()));
    if train.iter().all(|e| e.scored() == 0) {
        return invalid("no training example has a token to learn from");
    }
    if config.batch_size == 0 || config.grad_accum == 0 || config.eval_batch_size == 0 {
        return invalid("train.batch_size, train.grad_accum and train.eval_batch_size must be at least 1");
    }
    if config.max_steps == 0 && config.epochs == 0 {
        return invalid("set train.max_steps or train.epochs above 0");
    }
    if !(config.lr > 0.0) || config.max_grad_norm < 0.0 {
        return invalid("train.lr must be > 0 and train.max_grad_norm >= 0");
    }
    Ok(())
}

fn step_seed(seed: u64, step: u64) -> u64 {
    seed ^ step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn log_eval(pb: &ProgressBar, metrics: &mut MetricsLog, step: u64, eval: &Evaluation) {
    metrics.push(step, "eval_loss", eval.loss);
    metrics.push(step, "eval_ppl", eval.ppl);
    pb.suspend(|| tracing::info!(step, eval_loss = eval.loss, eval_ppl = eval.ppl, "held-out"));
}

/// Trains `model` (its trainable variables: all weights, or the LoRA adapters) on `job.train`
/// and saves it to `<job.dir>/final/`. See the module doc for the directory and resume rules.
pub fn train(model: &CausalLm, job: &TrainJob<'_>) -> Result<TrainSummary> {
    let cfg = job.config;
    check(cfg, job.train)?;
    let _span = tracing::info_span!("train", stage = job.stage).entered();
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads as i32);
    }
    let checkpoints = job.dir.join(CHECKPOINTS_DIR);
    let lengths: Vec<usize> = job.train.iter().map(Example::len).collect();
    let mut optimizer = AdamW::from_named(model.trainable_variables(), cfg.adamw.clone());

    let mut summary = TrainSummary::default();
    let mut stream = match train_state::latest(&checkpoints)? {
        Some(dir) => {
            let state = train_state::load(&dir, &mut [], &mut optimizer)?;
            if state.config_hash != job.config_hash {
                return Err(Error::Resume {
                    path: dir,
                    message: format!(
                        "was written under a different config; use the config in {} or start in a new directory",
                        job.dir.join("config.toml").display()
                    ),
                });
            }
            load_trainable(model, &dir.join(format!("{CHECKPOINT_MODEL}.safetensors")))?;
            tracing::info!(step = state.step, dir = %dir.display(), "resuming");
            summary.resumed_from = Some(state.step);
            let position = StreamPosition { epoch: state.epoch, batches: state.data_position, rng_state: state.rng_state };
            BatchStream::length_bucketed(lengths, cfg.batch_size, TrainRng::seed_from_u64(job.seed), Some(&position))?
        }
        None => BatchStream::length_bucketed(lengths, cfg.batch_size, TrainRng::seed_from_u64(job.seed), None)?,
    };
    let start = summary.resumed_from.unwrap_or(0);
    let total = if cfg.max_steps > 0 {
        cfg.max_steps
    } else {
        (cfg.epochs * stream.batches_per_epoch() as u64).div_ceil(cfg.grad_accum as u64)
    };
    let schedule = LrSchedule {
        kind: cfg.schedule,
        peak_lr: cfg.lr,
        warmup_steps: cfg.warmup_steps,
        total_steps: total,
        min_lr_ratio: cfg.min_lr_ratio,
    };
    let mut metrics = MetricsLog::open(job.dir.join(METRICS_FILE), job.stage)?;
    metrics.rewind(summary.resumed_from, |_| true)?;

    let pb = if job.progress { ProgressBar::new(total) } else { ProgressBar::hidden() };
    pb.set_style(
        ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]")
            .expect("a valid progress template"),
    );
    pb.set_prefix(job.stage.to_string());
    pb.set_position(start);
    let eval = |step: u64, metrics: &mut MetricsLog| -> Result<Option<Evaluation>> {
        if job.eval.is_empty() {
            return Ok(None);
        }
        let result = evaluate(model, job.eval, cfg.eval_batch_size, job.pad_id)?;
        log_eval(&pb, metrics, step, &result);
        Ok(Some(result))
    };
    if start == 0 {
        summary.eval_before = eval(0, &mut metrics)?;
    }

    let max_norm = if cfg.max_grad_norm > 0.0 { cfg.max_grad_norm } else { f64::INFINITY };
    let (mut interval_loss, mut interval_steps, mut interval_tokens, mut interval_time) = (0.0, 0u64, 0usize, 0.0);
    let (mut all_tokens, mut all_time) = (0usize, 0.0);
    let mut evaluated_at = None;
    model.set_training(true);
    for step in start..total {
        let began = Instant::now();
        seed_everything(step_seed(job.seed, step));
        let micro: Vec<Vec<&Example>> = (0..cfg.grad_accum)
            .map(|_| stream.next_batch().iter().map(|&i| &job.train[i]).collect())
            .collect();
        let scored: usize = micro.iter().flatten().map(|e| e.scored()).sum();
        let mut loss = 0.0;
        for batch in &micro {
            let part = nll_sum(model, batch, job.pad_id)? / scored.max(1) as f64;
            part.backward();
            loss += part.double_value(&[]);
        }
        let grad_norm = optimizer.clip_grad_norm(max_norm)?;
        let lr = schedule.lr_at(step);
        optimizer.step(lr)?;
        optimizer.zero_grad();
        let tokens: usize = micro.iter().flatten().map(|e| e.len()).sum();
        let seconds = began.elapsed().as_secs_f64();
        (interval_loss, interval_steps, interval_tokens, interval_time) =
            (interval_loss + loss, interval_steps + 1, interval_tokens + tokens, interval_time + seconds);
        (all_tokens, all_time) = (all_tokens + tokens, all_time + seconds);
        let done = step + 1;
        pb.set_position(done);

        if done % cfg.log_every.max(1) == 0 || done == total {
            let mean_loss = interval_loss / interval_steps as f64;
            let tokens_per_s = interval_tokens as f64 / interval_time.max(1e-9);
            for (name, value) in [("loss", mean_loss), ("lr", lr), ("grad_norm", grad_norm), ("tokens_per_s", tokens_per_s)] {
                metrics.push(done, name, value);
            }
            if let Some(bytes) = peak_memory_bytes(model.device()) {
                metrics.push(done, "peak_memory_bytes", bytes as f64);
            }
            pb.set_message(format!("loss {mean_loss:.4}"));
            pb.suspend(|| tracing::info!(step = done, loss = mean_loss, lr, grad_norm, tokens_per_s, "train"));
            summary.last_loss = mean_loss;
            (interval_loss, interval_steps, interval_tokens, interval_time) = (0.0, 0, 0, 0.0);
        }
        if cfg.eval_every > 0 && done % cfg.eval_every == 0 {
            summary.eval_after = eval(done, &mut metrics)?;
            evaluated_at = Some(done);
            model.set_training(true);
        }
        if cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0 && done < total {
            metrics.flush()?;
            let position = stream.position();
            let state = TrainState {
                step: done,
                epoch: position.epoch,
                data_position: position.batches,
                rng_state: position.rng_state.clone(),
                tch_seed: job.seed,
                config_hash: job.config_hash.clone(),
                extra: serde_json::Value::Null,
            };
            train_state::save(&checkpoints, &state, &[(CHECKPOINT_MODEL, trainable_store(model))], &optimizer)?;
            train_state::prune(&checkpoints, cfg.keep_checkpoints.max(1))?;
        }
    }
    model.set_training(false);
    pb.finish_and_clear();
    if evaluated_at != Some(total) {
        summary.eval_after = eval(total, &mut metrics)?;
    }
    metrics.flush()?;
    model.save_pretrained(job.dir.join(FINAL_DIR))?;
    summary.steps = total;
    summary.tokens_per_s = all_tokens as f64 / all_time.max(1e-9);
    Ok(summary)
}
