//! The training loop of one reward model: Bradley–Terry loss over preference batches, gradient
//! accumulation, AdamW with warmup + cosine, gradient clipping, held-out metrics, resumable
//! checkpoints and metrics rows.
//!
//! A checkpoint (`step-N/`) holds all weights, the optimizer state, the data position and the
//! RNG state; a run continues from the newest one. On the CPU, the same seed, config and thread
//! count give the same weights whether or not the run was interrupted: the data order comes from a
//! seeded [`TrainRng`] whose state is checkpointed, and libtorch's generator (dropout) is reseeded
//! from the seed and the step before every step.

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rlhf_data::MetricsLog;
use rlhf_model::device::{peak_memory_bytes, seed_everything};
use rlhf_model::reward::score_rows;
use rlhf_model::{train_state, AdamW, LrSchedule, SequenceClassifier, TrainRng, TrainState};
use tch::{Device, Tensor};

use crate::config::{LossConfig, TrainConfig};
use rlhf_model::batching::{BatchStream, StreamPosition};

use crate::data::TokenizedPreference;
use crate::error::{Error, Result};
use crate::loss::{accuracy_and_margin, preference_loss, PairIndex, PreferenceBatch};

/// Name of the weights' file in a training checkpoint.
const CHECKPOINT_MODEL: &str = "model";

/// Held-out preferences, laid out once for scoring.
pub struct HeldOut {
    rows: Vec<Vec<i64>>,
    pairs: PairIndex,
    /// Per pair: whether the gold judge prefers the better-labelled response (`None`: a tie).
    gold: Option<Vec<Option<bool>>>,
}

impl HeldOut {
    /// `gold` (when given) has one entry per pair, in the order of `preferences`' pairs.
    pub fn new(preferences: &[TokenizedPreference], gold: Option<Vec<Option<bool>>>) -> Self {
        let refs: Vec<&TokenizedPreference> = preferences.iter().collect();
        HeldOut {
            rows: preferences.iter().flat_map(|p| p.rows.iter().cloned()).collect(),
            pairs: PairIndex::new(&refs, refs.len(), Device::Cpu),
            gold,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn pair_count(&self) -> usize {
        self.pairs.better.size()[0] as usize
    }
}

/// Held-out metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Mean preference loss.
    pub loss: f64,
    /// Share of pairs whose labelled-better response gets the higher reward.
    pub accuracy: f64,
    /// Mean `r_better − r_worse`.
    pub margin: f64,
    /// Share of pairs (gold ties excluded) where the reward model agrees with the gold judge.
    pub gold_accuracy: Option<f64>,
}

/// Scores the held-out set (no gradients, dropout off).
pub fn evaluate(model: &SequenceClassifier, heldout: &HeldOut, loss: &LossConfig, batch_size: usize) -> Result<Evaluation> {
    model.set_training(false);
    let scores = score_rows(model, &heldout.rows, batch_size)?;
    let d = heldout.pairs.differences(&Tensor::from_slice(&scores));
    let (accuracy, margin) = accuracy_and_margin(&d);
    let gold_accuracy = heldout.gold.as_ref().map(|gold| {
        let d = Vec::<f32>::try_from(&d).unwrap_or_default();
        let decided: Vec<bool> = d.iter().zip(gold).filter_map(|(&d, g)| g.map(|g| (d > 0.0) == g)).collect();
        decided.iter().filter(|&&agree| agree).count() as f64 / decided.len().max(1) as f64
    });
    Ok(Evaluation { loss: preference_loss(&d, &heldout.pairs, loss).double_value(&[]), accuracy, margin, gold_accuracy })
}

/// Whether a metric belongs to a namespace: `ns/` holds the names starting with it, the empty one
/// the names without a `/` (an ensemble member logs under `member-<i>/`).
pub fn in_namespace(namespace: &str, name: &str) -> bool {
    if namespace.is_empty() {
        !name.contains('/')
    } else {
        name.starts_with(namespace)
    }
}

/// One reward model's training run.
pub struct TrainJob<'a> {
    /// Where its `step-N/` checkpoints go.
    pub checkpoints: &'a Path,
    /// Prefix of its metric names (`""`, or `member-<i>/` in an ensemble).
    pub metric_prefix: &'a str,
    pub train_config: &'a TrainConfig,
    pub loss: &'a LossConfig,
    /// Seeds the data order and libtorch's generator.
    pub seed: u64,
    /// Fingerprint of the resolved config; checkpoints written under another are refused.
    pub config_hash: &'a str,
    pub train: &'a [TokenizedPreference],
    pub heldout: &'a HeldOut,
    pub pad_id: i64,
    pub progress: bool,
}

/// What a training run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainSummary {
    pub steps: u64,
    /// The checkpoint step it continued from.
    pub resumed_from: Option<u64>,
    /// Mean training loss over the last logging interval.
    pub last_loss: f64,
    pub eval_before: Option<Evaluation>,
    pub eval_after: Option<Evaluation>,
    /// Judged pairs per second of training steps in this process.
    pub pairs_per_s: f64,
}

fn check(config: &TrainConfig, loss: &LossConfig, train: &[TokenizedPreference]) -> Result<()> {
    let invalid = |m: &str| Err(Error::Invalid(m.into()));
    if train.is_empty() {
        return invalid("no training preferences (every pair was dropped or held out)");
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
    if !(0.0..0.5).contains(&loss.label_smoothing) {
        return invalid("loss.label_smoothing must be in [0, 0.5)");
    }
    Ok(())
}

fn step_seed(seed: u64, step: u64) -> u64 {
    seed ^ step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn log_eval(pb: &ProgressBar, metrics: &mut MetricsLog, prefix: &str, step: u64, eval: &Evaluation) {
    let named = [("eval_loss", Some(eval.loss)), ("eval_accuracy", Some(eval.accuracy)), ("eval_margin", Some(eval.margin))];
    for (name, value) in named.into_iter().chain([("eval_gold_accuracy", eval.gold_accuracy)]) {
        if let Some(value) = value {
            metrics.push(step, &format!("{prefix}{name}"), value);
        }
    }
    pb.suspend(|| {
        tracing::info!(step, loss = eval.loss, accuracy = eval.accuracy, margin = eval.margin, gold_accuracy = eval.gold_accuracy, "held-out")
    });
}

/// Training loss, accuracy and margin gathered over a logging interval.
#[derive(Default)]
struct Interval {
    loss: f64,
    steps: u64,
    correct: f64,
    margin: f64,
    pairs: usize,
    seconds: f64,
}

/// Trains every weight of `model` on `job.train` (continuing from the newest checkpoint in
/// `job.checkpoints`), logging into `metrics`. Leaves the model in eval mode; saving is the caller's.
pub fn train(model: &mut SequenceClassifier, job: &TrainJob<'_>, metrics: &mut MetricsLog) -> Result<TrainSummary> {
    let cfg = job.train_config;
    check(cfg, job.loss, job.train)?;
    let prefix = job.metric_prefix;
    let _span = tracing::info_span!("train_reward_model", member = prefix).entered();
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads as i32);
    }
    let lengths: Vec<usize> = job.train.iter().map(TokenizedPreference::tokens).collect();
    let mut optimizer = AdamW::from_named(model.trainable_variables(), cfg.adamw.clone());

    let mut summary = TrainSummary::default();
    let mut stream = match train_state::latest(job.checkpoints)? {
        Some(dir) => {
            let state = train_state::load(&dir, &mut [(CHECKPOINT_MODEL, model.var_store_mut())], &mut optimizer)?;
            if state.config_hash != job.config_hash {
                return Err(Error::file(
                    dir,
                    "was written under a different config; use the run's rm/config.toml or start in a new run directory",
                ));
            }
            tracing::info!(step = state.step, dir = %dir.display(), "resuming");
            summary.resumed_from = Some(state.step);
            let position = StreamPosition { epoch: state.epoch, batches: state.data_position, rng_state: state.rng_state };
            BatchStream::length_bucketed(lengths, cfg.batch_size, TrainRng::seed_from_u64(job.seed), Some(&position))?
        }
        None => BatchStream::length_bucketed(lengths, cfg.batch_size, TrainRng::seed_from_u64(job.seed), None)?,
    };
    metrics.rewind(summary.resumed_from, |name| in_namespace(prefix, name))?;
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

    let pb = if job.progress { ProgressBar::new(total) } else { ProgressBar::hidden() };
    pb.set_style(
        ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]")
            .expect("a valid progress template"),
    );
    pb.set_prefix(format!("reward {prefix}"));
    pb.set_position(start);
    let eval = |step: u64, metrics: &mut MetricsLog| -> Result<Option<Evaluation>> {
        if job.heldout.is_empty() {
            return Ok(None);
        }
        let result = evaluate(model, job.heldout, job.loss, cfg.eval_batch_size)?;
        log_eval(&pb, metrics, prefix, step, &result);
        Ok(Some(result))
    };
    if start == 0 {
        summary.eval_before = eval(0, metrics)?;
    }

    let device = model.device();
    let max_norm = if cfg.max_grad_norm > 0.0 { cfg.max_grad_norm } else { f64::INFINITY };
    let mut interval = Interval::default();
    let (mut all_pairs, mut all_seconds) = (0usize, 0.0);
    let mut evaluated_at = None;
    for step in start..total {
        model.set_training(true);
        let began = Instant::now();
        seed_everything(step_seed(job.seed, step));
        let micro: Vec<Vec<&TokenizedPreference>> = (0..cfg.grad_accum)
            .map(|_| stream.next_batch().iter().map(|&i| &job.train[i]).collect())
            .collect();
        let in_step: usize = micro.iter().map(Vec::len).sum();
        for preferences in &micro {
            let batch = PreferenceBatch::new(preferences, in_step, job.pad_id, device)?;
            let d = batch.pairs.differences(&batch.rewards(model)?);
            let loss = preference_loss(&d, &batch.pairs, job.loss);
            loss.backward();
            let (accuracy, margin) = accuracy_and_margin(&d);
            let pairs = batch.pairs.better.size()[0] as usize;
            interval.loss += loss.double_value(&[]);
            interval.correct += accuracy * pairs as f64;
            interval.margin += margin * pairs as f64;
            interval.pairs += pairs;
        }
        let grad_norm = optimizer.clip_grad_norm(max_norm)?;
        let lr = schedule.lr_at(step);
        optimizer.step(lr)?;
        optimizer.zero_grad();
        let seconds = began.elapsed().as_secs_f64();
        interval.steps += 1;
        interval.seconds += seconds;
        all_seconds += seconds;
        all_pairs += micro.iter().flatten().map(|p| p.pairs.len()).sum::<usize>();
        let done = step + 1;
        pb.set_position(done);

        if done % cfg.log_every.max(1) == 0 || done == total {
            let loss = interval.loss / interval.steps as f64;
            let pairs = interval.pairs.max(1) as f64;
            let (accuracy, margin) = (interval.correct / pairs, interval.margin / pairs);
            let pairs_per_s = interval.pairs as f64 / interval.seconds.max(1e-9);
            let named = [
                ("loss", loss),
                ("accuracy", accuracy),
                ("margin", margin),
                ("lr", lr),
                ("grad_norm", grad_norm),
                ("pairs_per_s", pairs_per_s),
            ];
            for (name, value) in named {
                metrics.push(done, &format!("{prefix}{name}"), value);
            }
            if let Some(bytes) = peak_memory_bytes(device) {
                metrics.push(done, &format!("{prefix}peak_memory_bytes"), bytes as f64);
            }
            pb.set_message(format!("loss {loss:.4} acc {accuracy:.3}"));
            pb.suspend(|| tracing::info!(step = done, loss, accuracy, margin, lr, grad_norm, pairs_per_s, "train"));
            summary.last_loss = loss;
            interval = Interval::default();
        }
        if cfg.eval_every > 0 && done % cfg.eval_every == 0 {
            summary.eval_after = eval(done, metrics)?;
            evaluated_at = Some(done);
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
                config_hash: job.config_hash.to_string(),
                extra: serde_json::Value::Null,
            };
            train_state::save(job.checkpoints, &state, &[(CHECKPOINT_MODEL, model.var_store())], &optimizer)?;
            train_state::prune(job.checkpoints, cfg.keep_checkpoints.max(1))?;
        }
    }
    model.set_training(false);
    pb.finish_and_clear();
    if evaluated_at != Some(total) {
        summary.eval_after = eval(total, metrics)?;
    }
    summary.steps = total;
    summary.pairs_per_s = all_pairs as f64 / all_seconds.max(1e-9);
    Ok(summary)
}
