//! The preference-optimisation loop: rounds of pairs, each trained for `epochs` passes (or
//! `max_steps` steps) with AdamW, warmup + cosine restarted per round, gradient accumulation and
//! clipping; the TRL metrics every `log_every` steps, held-out evaluation, resumable checkpoints.
//!
//! A checkpoint (`checkpoints/step-N/`) holds the trainable tensors (all weights, or the LoRA
//! adapters), the optimizer state, the data position and RNG state, and the round it belongs to;
//! resuming from it gives bit-identical weights on the CPU with the same thread count. Dropout is
//! off throughout (as TRL's `disable_dropout`), so policy and reference see the same network.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rlhf_data::MetricsLog;
use rlhf_model::device::peak_memory_bytes;
use rlhf_model::{train_state, AdamW, CausalLm, LrSchedule, TrainRng, TrainState};
use tch::{Kind, Tensor};

use crate::config::TrainConfig;
use rlhf_model::batching::{BatchStream, StreamPosition};

use crate::data::{cached_reference, policy_logps, Pair};
use crate::error::{Error, Result};
use crate::loss::{LossConfig, PairTerms, PolicyLogps, ReferenceLogps};
use crate::online::RoundStats;
use crate::reference::Reference;

/// The finished model inside the stage directory.
pub const FINAL_DIR: &str = "final";
/// Resumable checkpoints inside the stage directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// The stage's metrics table.
pub const METRICS_FILE: &str = "metrics.parquet";
/// Name of the trainable tensors' file in a checkpoint.
const CHECKPOINT_MODEL: &str = "policy";

/// Whether `dir` holds a finished model (`final/` is written atomically, so it is whole).
pub fn is_finished(dir: &Path) -> bool {
    let done = dir.join(FINAL_DIR);
    done.join("config.json").is_file() && done.join("model.safetensors").is_file()
}

/// Means over pairs of the metrics TRL's `DPOTrainer` logs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PreferenceStats {
    /// The objective (preference loss, plus the RPO term when enabled).
    pub loss: f64,
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    /// Mean of `chosen_reward − rejected_reward`.
    pub margin: f64,
    /// Share of pairs whose chosen reward is the higher.
    pub accuracy: f64,
    /// Mean summed log-prob of chosen responses under the policy.
    pub chosen_logp: f64,
    pub rejected_logp: f64,
    pub pairs: usize,
}

impl PreferenceStats {
    /// `(name, value)` rows, the names prefixed with `prefix` (`""` or `"eval_"`).
    pub fn rows(&self, prefix: &str) -> Vec<(String, f64)> {
        [
            ("loss", self.loss),
            ("rewards/chosen", self.chosen_reward),
            ("rewards/rejected", self.rejected_reward),
            ("rewards/margins", self.margin),
            ("rewards/accuracies", self.accuracy),
            ("logps/chosen", self.chosen_logp),
            ("logps/rejected", self.rejected_logp),
        ]
        .into_iter()
        .map(|(name, value)| (format!("{prefix}{name}"), value))
        .collect()
    }
}

/// Running sums behind [`PreferenceStats`].
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    /// Σ loss, Σ chosen reward, Σ rejected reward, Σ correct, Σ chosen logp, Σ rejected logp, Σ chosen tokens.
    sums: [f64; 7],
    pairs: usize,
}

impl Totals {
    fn add(&mut self, terms: &PairTerms, policy: &PolicyLogps) -> Result<()> {
        let parts = [
            terms.losses.detach(),
            terms.chosen_rewards.shallow_clone(),
            terms.rejected_rewards.shallow_clone(),
            terms.chosen_rewards.gt_tensor(&terms.rejected_rewards),
            policy.chosen.detach(),
            policy.rejected.detach(),
            policy.chosen_tokens.shallow_clone(),
        ]
        .map(|t| t.to_kind(Kind::Double).sum(Kind::Double));
        let sums = Vec::<f64>::try_from(Tensor::stack(&parts, 0).to_device(tch::Device::Cpu))?;
        for (total, value) in self.sums.iter_mut().zip(sums) {
            *total += value;
        }
        self.pairs += terms.losses.size()[0] as usize;
        Ok(())
    }

    fn stats(&self, loss: &LossConfig) -> PreferenceStats {
        let n = self.pairs.max(1) as f64;
        let [losses, chosen, rejected, correct, chosen_logp, rejected_logp, chosen_tokens] = self.sums;
        let nll = if loss.rpo_alpha > 0.0 { loss.rpo_alpha * -chosen_logp / chosen_tokens.max(1.0) } else { 0.0 };
        PreferenceStats {
            loss: losses / n + nll,
            chosen_reward: chosen / n,
            rejected_reward: rejected / n,
            margin: (chosen - rejected) / n,
            accuracy: correct / n,
            chosen_logp: chosen_logp / n,
            rejected_logp: rejected_logp / n,
            pairs: self.pairs,
        }
    }
}

/// Pairs and tokens trained on, and the seconds it took.
#[derive(Clone, Copy, Debug, Default)]
struct Throughput {
    pairs: usize,
    tokens: usize,
    seconds: f64,
}

impl Throughput {
    fn add(&mut self, pairs: usize, tokens: usize, seconds: f64) {
        (self.pairs, self.tokens, self.seconds) = (self.pairs + pairs, self.tokens + tokens, self.seconds + seconds);
    }
    /// Pairs/s and tokens/s.
    fn rates(&self) -> (f64, f64) {
        let seconds = self.seconds.max(1e-9);
        (self.pairs as f64 / seconds, self.tokens as f64 / seconds)
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainSummary {
    /// Optimizer steps of the whole run (resumed or not).
    pub steps: u64,
    /// The checkpoint step it continued from.
    pub resumed_from: Option<u64>,
    /// Training metrics over the last logging interval.
    pub last: PreferenceStats,
    /// Held-out metrics before the first step (when the run started from scratch).
    pub eval_before: Option<PreferenceStats>,
    /// Held-out metrics after the last step.
    pub eval_after: Option<PreferenceStats>,
    /// Comparisons files whose reference log-probs were computed (not read from their cache).
    pub reference_passes: usize,
    /// Training throughput of this process.
    pub pairs_per_s: f64,
    pub tokens_per_s: f64,
}

/// Where a resumed run continues.
#[derive(Clone, Debug, PartialEq)]
pub struct ResumePoint {
    pub round: usize,
    /// Steps of that round already taken.
    pub round_step: u64,
    pub position: StreamPosition,
}

/// The fixed inputs of a training run.
pub struct TrainJob<'a> {
    /// The stage directory.
    pub dir: &'a Path,
    pub train: &'a TrainConfig,
    pub loss: &'a LossConfig,
    pub seed: u64,
    /// Fingerprint of the resolved config; checkpoints written under another are refused.
    pub config_hash: String,
    /// Held-out pairs (may be empty), with reference log-probs unless they are scored live.
    pub heldout: Vec<Pair>,
    pub pad_id: i64,
    /// Draw a progress bar.
    pub progress: bool,
}

/// Trains a policy round after round; see the module doc.
pub struct Trainer<'a> {
    policy: &'a CausalLm,
    /// The reference scored with every batch (on-the-fly mode), `None` when pairs carry cached
    /// log-probs or the loss needs none.
    live_reference: Option<Reference>,
    job: TrainJob<'a>,
    optimizer: AdamW,
    metrics: MetricsLog,
    progress: ProgressBar,
    step: u64,
    resume: Option<ResumePoint>,
    summary: TrainSummary,
    /// The training steps this process ran.
    throughput: Throughput,
    /// The step of the latest held-out evaluation.
    evaluated_at: Option<u64>,
}

fn step_seed(seed: u64, round: usize) -> u64 {
    seed ^ (round as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl<'a> Trainer<'a> {
    /// Sets up the optimizer and metrics, continuing from the newest checkpoint in `job.dir` when
    /// there is one (then [`Self::resume_point`] tells which round to continue).
    pub fn new(policy: &'a CausalLm, live_reference: Option<Reference>, job: TrainJob<'a>) -> Result<Self> {
        let mut optimizer = AdamW::from_named(policy.trainable_variables(), job.train.adamw.clone());
        let checkpoints = job.dir.join(CHECKPOINTS_DIR);
        let mut summary = TrainSummary::default();
        let resume = match train_state::latest(&checkpoints)? {
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
                restore_trainable(policy, &dir.join(format!("{CHECKPOINT_MODEL}.safetensors")))?;
                let field = |name: &str| state.extra.get(name).and_then(serde_json::Value::as_u64);
                let (Some(round), Some(round_step)) = (field("round"), field("round_step")) else {
                    return Err(Error::Resume { path: dir, message: "has no round in its train state".into() });
                };
                tracing::info!(step = state.step, round, dir = %dir.display(), "resuming");
                summary.resumed_from = Some(state.step);
                Some(ResumePoint {
                    round: round as usize,
                    round_step,
                    position: StreamPosition { epoch: state.epoch, batches: state.data_position, rng_state: state.rng_state },
                })
            }
            None => None,
        };
        let progress = if job.progress { ProgressBar::new(0) } else { ProgressBar::hidden() };
        progress.set_style(
            ProgressStyle::with_template("dpo {bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise}]")
                .expect("a valid progress template"),
        );
        let step = summary.resumed_from.unwrap_or(0);
        progress.set_length(step);
        progress.set_position(step);
        let mut trainer = Trainer {
            policy,
            live_reference,
            metrics: {
                let mut log = MetricsLog::open(job.dir.join(METRICS_FILE), crate::STAGE_DIR)?;
                log.rewind(summary.resumed_from, |_| true)?;
                log
            },
            job,
            optimizer,
            progress,
            step,
            resume,
            summary,
            throughput: Throughput::default(),
            evaluated_at: None,
        };
        if trainer.resume.is_none() {
            trainer.summary.eval_before = trainer.evaluate()?;
        }
        Ok(trainer)
    }

    /// Where this run continues (rounds before it are done), `None` for a fresh run.
    pub fn resume_point(&self) -> Option<&ResumePoint> {
        self.resume.as_ref()
    }

    /// Logs the labelling of an online round (at the step the round starts) and flushes the metrics.
    pub fn log_round(&mut self, round: usize, stats: &RoundStats) -> Result<()> {
        let mut rows = vec![
            ("online/round", round as f64),
            ("online/pairs", stats.pairs as f64),
            ("online/dropped", stats.dropped as f64),
            ("online/gold_score", stats.gold_score),
        ];
        rows.extend(stats.gold_agreement.map(|v| ("online/gold_agreement", v)));
        rows.extend(stats.reward.map(|v| ("online/reward", v)));
        for (name, value) in rows {
            self.metrics.push(self.step, name, value);
        }
        tracing::info!(round, pairs = stats.pairs, dropped = stats.dropped, gold_score = stats.gold_score, "labelled an online round");
        Ok(self.metrics.flush()?)
    }

    fn reference_logps(&self, batch: &[&Pair]) -> Result<Option<ReferenceLogps>> {
        if !self.job.loss.needs_reference() {
            return Ok(None);
        }
        Ok(Some(match &self.live_reference {
            Some(reference) => reference.logps(self.policy, batch, self.job.pad_id)?,
            None => cached_reference(batch)?,
        }))
    }

    /// Loss terms of one micro-batch, with the graph.
    fn forward(&self, batch: &[&Pair]) -> Result<(PairTerms, PolicyLogps)> {
        let reference = self.reference_logps(batch)?;
        let policy = policy_logps(self.policy, batch, self.job.pad_id)?;
        let terms = self.job.loss.pair_terms(&policy, reference.as_ref())?;
        Ok((terms, policy))
    }

    /// Held-out metrics under no-grad (`None` without held-out pairs).
    pub fn evaluate(&mut self) -> Result<Option<PreferenceStats>> {
        if self.job.heldout.is_empty() {
            return Ok(None);
        }
        let mut totals = Totals::default();
        let pairs: Vec<&Pair> = self.job.heldout.iter().collect();
        for batch in pairs.chunks(self.job.train.eval_batch_size) {
            let (terms, policy) = tch::no_grad(|| self.forward(batch))?;
            totals.add(&terms, &policy)?;
        }
        let stats = totals.stats(self.job.loss);
        self.evaluated_at = Some(self.step);
        for (name, value) in stats.rows("eval_") {
            self.metrics.push(self.step, &name, value);
        }
        self.progress.suspend(|| {
            tracing::info!(
                step = self.step,
                loss = stats.loss,
                accuracy = stats.accuracy,
                margin = stats.margin,
                chosen_logp = stats.chosen_logp,
                rejected_logp = stats.rejected_logp,
                "held-out"
            )
        });
        Ok(Some(stats))
    }

    /// Trains on `pairs` for the round's steps (continuing a resumed round where it stopped).
    /// `more_rounds` says whether another round follows (its start gets a checkpoint).
    pub fn train_round(&mut self, round: usize, pairs: &[Pair], more_rounds: bool) -> Result<()> {
        let cfg = self.job.train;
        if pairs.is_empty() {
            return Err(Error::Invalid(format!("round {round} has no pairs to train on")));
        }
        let resume = self.resume.take().filter(|r| r.round == round);
        let rng = TrainRng::seed_from_u64(step_seed(self.job.seed, round));
        let mut stream = BatchStream::shuffled(pairs.len(), cfg.batch_size, rng, resume.as_ref().map(|r| &r.position))?;
        let steps = if cfg.max_steps > 0 {
            cfg.max_steps
        } else {
            (cfg.epochs * stream.batches_per_epoch() as u64).div_ceil(cfg.grad_accum as u64)
        };
        let start = resume.map_or(0, |r| r.round_step);
        self.progress.inc_length(steps - start.min(steps));
        let schedule = LrSchedule {
            kind: cfg.schedule,
            peak_lr: cfg.lr,
            warmup_steps: cfg.warmup_steps,
            total_steps: steps,
            min_lr_ratio: cfg.min_lr_ratio,
        };
        let max_norm = if cfg.max_grad_norm > 0.0 { cfg.max_grad_norm } else { f64::INFINITY };
        let (mut interval, mut interval_speed) = (Totals::default(), Throughput::default());
        for round_step in start..steps {
            let began = Instant::now();
            let micro: Vec<Vec<&Pair>> = (0..cfg.grad_accum)
                .map(|_| stream.next_batch().iter().map(|&i| &pairs[i]).collect())
                .collect();
            let step_pairs: usize = micro.iter().map(Vec::len).sum();
            let step_chosen_tokens: usize = micro.iter().flatten().map(|p| p.chosen.len()).sum();
            for batch in &micro {
                let (terms, policy) = self.forward(batch)?;
                self.job.loss.objective(&terms, &policy, step_pairs as f64, step_chosen_tokens as f64).backward();
                interval.add(&terms, &policy)?;
            }
            let grad_norm = self.optimizer.clip_grad_norm(max_norm)?;
            let lr = schedule.lr_at(round_step);
            self.optimizer.step(lr)?;
            self.optimizer.zero_grad();
            let tokens: usize = micro.iter().flatten().map(|p| p.tokens()).sum();
            let seconds = began.elapsed().as_secs_f64();
            interval_speed.add(step_pairs, tokens, seconds);
            self.throughput.add(step_pairs, tokens, seconds);
            self.step += 1;
            self.progress.inc(1);
            let round_done = round_step + 1 == steps;

            if self.step % cfg.log_every.max(1) == 0 || round_done {
                let stats = interval.stats(self.job.loss);
                let (pairs_per_s, tokens_per_s) = interval_speed.rates();
                let mut rows = stats.rows("");
                rows.extend([
                    ("lr".to_string(), lr),
                    ("grad_norm".to_string(), grad_norm),
                    ("pairs_per_s".to_string(), pairs_per_s),
                    ("tokens_per_s".to_string(), tokens_per_s),
                ]);
                rows.extend(peak_memory_bytes(self.policy.device()).map(|b| ("peak_memory_bytes".to_string(), b as f64)));
                for (name, value) in rows {
                    self.metrics.push(self.step, &name, value);
                }
                self.progress.set_message(format!("loss {:.4} acc {:.2}", stats.loss, stats.accuracy));
                self.progress.suspend(|| {
                    tracing::info!(
                        step = self.step,
                        round,
                        loss = stats.loss,
                        accuracy = stats.accuracy,
                        margin = stats.margin,
                        chosen_logp = stats.chosen_logp,
                        rejected_logp = stats.rejected_logp,
                        lr,
                        grad_norm,
                        pairs_per_s,
                        "train"
                    )
                });
                self.summary.last = stats;
                (interval, interval_speed) = (Totals::default(), Throughput::default());
            }
            if cfg.eval_every > 0 && self.step % cfg.eval_every == 0 {
                self.summary.eval_after = self.evaluate()?;
            }
            // The run's very last step needs no checkpoint: the final model follows.
            let last_of_run = round_done && !more_rounds;
            if cfg.checkpoint_every > 0 && !last_of_run && (self.step % cfg.checkpoint_every == 0 || round_done) {
                self.checkpoint(round, round_step + 1, stream.position())?;
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, round: usize, round_step: u64, position: &StreamPosition) -> Result<()> {
        self.metrics.flush()?;
        let state = TrainState {
            step: self.step,
            epoch: position.epoch,
            data_position: position.batches,
            rng_state: position.rng_state.clone(),
            tch_seed: self.job.seed,
            config_hash: self.job.config_hash.clone(),
            extra: serde_json::json!({ "round": round, "round_step": round_step }),
        };
        let checkpoints = self.job.dir.join(CHECKPOINTS_DIR);
        let store = self.policy.lora().map_or_else(|| self.policy.var_store(), |lora| &lora.var_store);
        train_state::save(&checkpoints, &state, &[(CHECKPOINT_MODEL, store)], &self.optimizer)?;
        train_state::prune(&checkpoints, self.job.train.keep_checkpoints.max(1))?;
        Ok(())
    }

    /// Final held-out evaluation, metrics, and the policy saved to `<dir>/final/`.
    pub fn finish(mut self) -> Result<TrainSummary> {
        self.progress.finish_and_clear();
        if self.evaluated_at != Some(self.step) {
            self.summary.eval_after = self.evaluate()?;
        }
        self.metrics.flush()?;
        self.policy.save_pretrained(self.job.dir.join(FINAL_DIR))?;
        self.summary.steps = self.step;
        (self.summary.pairs_per_s, self.summary.tokens_per_s) = self.throughput.rates();
        Ok(self.summary)
    }
}

/// Copies a checkpoint's tensors into the policy's trainable variables, checking names and shapes.
fn restore_trainable(policy: &CausalLm, file: &Path) -> Result<()> {
    let bad = |message: String| Error::Resume { path: file.to_path_buf(), message };
    let mut saved: HashMap<String, Tensor> =
        Tensor::read_safetensors(file).map_err(|e| bad(e.to_string()))?.into_iter().collect();
    for (name, var) in policy.trainable_variables() {
        let src = saved.remove(&name).ok_or_else(|| bad(format!("has no tensor `{name}` for this model")))?;
        if src.size() != var.size() {
            return Err(bad(format!("tensor `{name}` has shape {:?}, the model's has {:?}", src.size(), var.size())));
        }
        tch::no_grad(|| var.shallow_clone().f_copy_(&src))?;
    }
    match saved.keys().min() {
        Some(name) => Err(bad(format!("tensor `{name}` is not a trainable parameter of this model"))),
        None => Ok(()),
    }
}
