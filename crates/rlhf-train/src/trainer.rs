//! The gradient-descent loop every trainer runs (SFT and pretraining, the reward model, DPO).
//!
//! A stage implements [`TrainStep`]: the forward, loss and backward of one optimizer step's
//! micro-batches, the summary of a logging interval and the held-out evaluation. [`Trainer`] owns
//! everything else: resuming from the newest checkpoint (tensors, optimizer, data position, RNG,
//! config hash), libtorch's generator reseeded from the seed and the step before every step
//! (dropout), gradient clipping, the learning-rate schedule, the NaN guard, the logging,
//! evaluation and checkpoint cadences, throughput and peak memory, the progress bar and the
//! metrics table. On the CPU, the same seed, config and thread count give bit-identical weights
//! whether or not the run was interrupted.
//!
//! Data parallel (several processes, `rlhf_dist`): every rank deals the same micro-batches and
//! takes its part ([`StepBatches::mine`]: whole micro-batches when `grad_accum` divides among the
//! ranks, else a share of each), so the global batch is `batch_size × grad_accum` whatever the
//! number of processes; a stage normalises its loss by the
//! whole step ([`StepBatches::all`]), so the gradients summed over the ranks (bucketed all-reduce)
//! are the one-process gradients, and every rank takes the same optimizer step. The step's loss,
//! counts and interval sums are summed the same way; rank 0 alone writes checkpoints and metrics,
//! and every rank resumes from its checkpoints. With one process nothing changes, bit for bit.
//!
//! A run is one or more [`Phase`]s (DPO's online rounds are phases; SFT and the reward model run
//! one): each walks its own [`BatchStream`] under its own schedule while the step count runs on.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rlhf_dist::World;
use rlhf_model::device::{peak_memory_bytes, seed_everything};
use rlhf_model::{AdamW, LrSchedule};
use tch::nn::VarStore;

use crate::batching::{BatchStream, StreamPosition};
use crate::config::{OnNonFinite, TrainConfig};
use crate::error::Error;
use crate::metrics_log::MetricsLog;
use crate::stage::StageDir;
use crate::train_state::{self, TrainRng, TrainState};

/// A stream seed for step, iteration or round `index` of a run seeded with `seed`.
pub fn seed_for(seed: u64, index: u64) -> u64 {
    seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// What one optimizer step trained on.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepWork {
    /// The step's loss (what its gradients are of).
    pub loss: f64,
    /// Examples (demonstrations, preferences, pairs) and input tokens of the step.
    pub examples: usize,
    pub tokens: usize,
}

/// One optimizer step's micro-batches (indices into the stage's examples): all of them, and this
/// rank's share of each (the same as `all` in a one-process run).
#[derive(Clone, Copy, Debug)]
pub struct StepBatches<'s> {
    /// Every rank's micro-batches: what the step's loss is normalised by.
    pub all: &'s [&'s [usize]],
    /// What this rank computes (an empty share is skipped).
    pub mine: &'s [&'s [usize]],
}

/// A logging interval's running sums, as numbers the ranks of a data-parallel run add up.
pub trait IntervalSums: Default {
    fn sums(&self) -> Vec<f64>;
    fn set_sums(&mut self, sums: &[f64]);
}

impl IntervalSums for () {
    fn sums(&self) -> Vec<f64> {
        Vec::new()
    }
    fn set_sums(&mut self, _: &[f64]) {}
}

impl IntervalSums for f64 {
    fn sums(&self) -> Vec<f64> {
        vec![*self]
    }
    fn set_sums(&mut self, sums: &[f64]) {
        *self = sums[0];
    }
}

/// The examples a step's micro-batches index into `examples`, batch by batch.
pub fn gather<'a, T>(examples: &'a [T], micro: &[&[usize]]) -> Vec<Vec<&'a T>> {
    micro.iter().map(|batch| batch.iter().map(|&i| &examples[i]).collect()).collect()
}

/// A stage's part of the loop.
pub trait TrainStep {
    /// The stage's error type (the loop's own errors convert into it).
    type Error: From<Error>;
    /// Sums a logging interval gathers (loss, accuracy, ...).
    type Interval: IntervalSums;
    /// A logging interval's summary.
    type Train: Clone + Default;
    /// A held-out evaluation.
    type Eval: Clone;
    /// What an example is called in the throughput metric `<EXAMPLES>_per_s`.
    const EXAMPLES: &'static str;

    /// Forward and backward of this rank's share of one optimizer step's micro-batches, the loss
    /// normalised by all of them: the gradients accumulate in the trainable tensors. The work and
    /// interval sums returned are this rank's share.
    fn backward(&mut self, step: &StepBatches<'_>, interval: &mut Self::Interval) -> Result<StepWork, Self::Error>;
    /// The summary of an interval of `steps` steps.
    fn summarize(&self, interval: &Self::Interval, steps: u64) -> Self::Train;
    /// The metric rows of a summary (the first two also show on the progress bar).
    fn train_metrics(&self, summary: &Self::Train) -> Vec<(String, f64)>;
    /// Held-out metrics (no gradients, dropout off), `None` without a held-out set.
    fn evaluate(&mut self) -> Result<Option<Self::Eval>, Self::Error>;
    /// The metric rows of an evaluation (named by the stage, e.g. `eval_loss`).
    fn eval_metrics(&self, eval: &Self::Eval) -> Vec<(String, f64)>;
}

/// The fixed settings of a training run.
pub struct TrainSpec<'a> {
    /// Shown on the progress bar and in the tracing span.
    pub name: String,
    pub config: &'a TrainConfig,
    /// Where `step-N/` checkpoints go.
    pub checkpoints: PathBuf,
    /// The config the run was started with (named when a checkpoint's config hash differs).
    pub config_file: PathBuf,
    /// Fingerprint of the resolved config; checkpoints written under another are refused.
    pub config_hash: String,
    /// Seeds libtorch's generator each step (the data order is the phases' streams').
    pub seed: u64,
    /// Prefix of every metric name the loop logs (`""`, or `member-<i>/` in an ensemble).
    pub metric_prefix: String,
    /// Which metric names this run owns: those logged after the resumed step are dropped.
    pub owns_metric: fn(&str, &str) -> bool,
    pub progress: bool,
}

impl<'a> TrainSpec<'a> {
    /// The one run of a stage in `dir`: its checkpoints and config file there, no metric prefix,
    /// every metric its own.
    pub fn for_stage(
        name: &str,
        config: &'a TrainConfig,
        dir: &StageDir,
        config_hash: String,
        seed: u64,
        progress: bool,
    ) -> Self {
        TrainSpec {
            name: name.to_string(),
            config,
            checkpoints: dir.checkpoints(),
            config_file: dir.config_file(),
            config_hash,
            seed,
            metric_prefix: String::new(),
            owns_metric: |_, _| true,
            progress,
        }
    }
}

/// Where a resumed run continues.
#[derive(Clone, Debug, PartialEq)]
pub struct Resumed {
    pub dir: PathBuf,
    pub step: u64,
    pub position: StreamPosition,
    /// The stage's own state saved with the checkpoint (e.g. DPO's round).
    pub extra: serde_json::Value,
}

/// One walk over a stream under one schedule.
pub struct Phase<'p> {
    pub stream: &'p mut BatchStream,
    /// Steps of this phase already taken (a resumed phase) and its steps in all.
    pub start: u64,
    pub steps: u64,
    /// Learning rate at each step of the phase.
    pub schedule: LrSchedule,
    /// Whether the run ends with this phase (its last step then needs no checkpoint: the final
    /// model follows).
    pub last: bool,
    /// Also save a checkpoint at the phase's end, off the cadence.
    pub checkpoint_at_end: bool,
    /// The stage's state saved in a checkpoint taken after `phase_steps` steps of this phase.
    pub extra: &'p dyn Fn(u64) -> serde_json::Value,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSummary<T, E> {
    /// Optimizer steps of the run (all of them, resumed or not).
    pub steps: u64,
    /// The checkpoint step it continued from.
    pub resumed_from: Option<u64>,
    /// The last logging interval's summary.
    pub last: T,
    /// Held-out metrics before the first step (when the run started from scratch) and after the last.
    pub eval_before: Option<E>,
    pub eval_after: Option<E>,
    /// Steps the numerical guard skipped.
    pub skipped: u64,
    /// Throughput of this process's training steps.
    pub examples_per_s: f64,
    pub tokens_per_s: f64,
}

/// The summary of a run of stage `S`.
pub type Summary<S> = TrainSummary<<S as TrainStep>::Train, <S as TrainStep>::Eval>;

/// Examples, tokens and seconds of training steps.
#[derive(Clone, Copy, Debug, Default)]
struct Throughput {
    examples: usize,
    tokens: usize,
    seconds: f64,
}

impl Throughput {
    fn add(&mut self, work: &StepWork, seconds: f64) {
        self.examples += work.examples;
        self.tokens += work.tokens;
        self.seconds += seconds;
    }
    /// (examples/s, tokens/s).
    fn rates(&self) -> (f64, f64) {
        let seconds = self.seconds.max(1e-9);
        (self.examples as f64 / seconds, self.tokens as f64 / seconds)
    }
}

/// A progress bar over `unit`s (hidden off a terminal).
pub fn progress_bar(enabled: bool, prefix: &str, unit: &str) -> ProgressBar {
    let bar = if enabled { ProgressBar::new(0) } else { ProgressBar::hidden() };
    let template =
        format!("{{prefix}} {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  [{{elapsed_precise}} < {{eta_precise}}]");
    bar.set_style(ProgressStyle::with_template(&template).expect("a valid progress template"));
    bar.set_prefix(prefix.to_string());
    bar
}

/// The loop of one training run (see the module doc).
pub struct Trainer<'a, S: TrainStep> {
    spec: TrainSpec<'a>,
    stores: Vec<(&'a str, &'a VarStore)>,
    /// The processes this run spans (one, unless launched data parallel), and the tensors whose
    /// gradients they reduce.
    world: &'static World,
    params: Vec<tch::Tensor>,
    optimizer: AdamW,
    metrics: MetricsLog,
    progress: ProgressBar,
    step: u64,
    resumed: Option<Resumed>,
    evaluated_at: Option<u64>,
    /// Every step of this process, and the current logging interval.
    throughput: Throughput,
    interval: (S::Interval, u64, Throughput),
    summary: Summary<S>,
}

impl<'a, S: TrainStep> Trainer<'a, S> {
    /// Sets up the optimizer over `stores`' trainable variables, continues from the newest checkpoint in `spec.checkpoints` when
    /// there is one (dropping the metrics logged after it), and evaluates a fresh run before its
    /// first step.
    pub fn open(
        spec: TrainSpec<'a>,
        stores: Vec<(&'a str, &'a VarStore)>,
        mut metrics: MetricsLog,
        stage: &mut S,
    ) -> Result<Self, S::Error> {
        spec.config.check()?;
        if spec.config.threads > 0 {
            tch::set_num_threads(spec.config.threads as i32);
        }
        let world = rlhf_dist::world().map_err(Error::from)?;
        let variables = trainable_variables(&stores);
        let params = variables.iter().map(|(_, t)| t.shallow_clone()).collect();
        let mut optimizer = AdamW::from_named(variables, spec.config.adamw.clone());
        let resumed = train_state::resume(
            &spec.checkpoints,
            &stores,
            &mut optimizer,
            &spec.config_hash,
            &spec.config_file,
        )?
        .map(|(dir, state)| Resumed {
            dir,
            step: state.step,
            position: StreamPosition { epoch: state.epoch, batches: state.data_position, rng_state: state.rng_state },
            extra: state.extra,
        });
        let step = resumed.as_ref().map_or(0, |r| r.step);
        let (prefix, owns) = (spec.metric_prefix.clone(), spec.owns_metric);
        metrics.rewind(resumed.as_ref().map(|r| r.step), |name| owns(&prefix, name))?;
        let progress = progress_bar(spec.progress, &spec.name, "steps");
        progress.set_length(step);
        progress.set_position(step);
        let summary = TrainSummary {
            steps: step,
            resumed_from: resumed.as_ref().map(|r| r.step),
            last: S::Train::default(),
            eval_before: None,
            eval_after: None,
            skipped: 0,
            examples_per_s: 0.0,
            tokens_per_s: 0.0,
        };
        let mut trainer = Trainer {
            spec,
            stores,
            world,
            params,
            optimizer,
            metrics,
            progress,
            step,
            resumed,
            evaluated_at: None,
            throughput: Throughput::default(),
            interval: Default::default(),
            summary,
        };
        if trainer.resumed.is_none() {
            trainer.summary.eval_before = trainer.evaluate(stage)?;
        }
        Ok(trainer)
    }

    /// A whole run of one phase over length-bucketed micro-batches of the examples whose lengths
    /// are given (SFT, the reward model): opens the trainer (resuming where a checkpoint says),
    /// trains `config.total_steps` steps under the config's schedule and finishes.
    pub fn train_bucketed(
        spec: TrainSpec<'a>,
        stores: Vec<(&'a str, &'a VarStore)>,
        metrics: MetricsLog,
        stage: &mut S,
        lengths: Vec<usize>,
    ) -> Result<(Summary<S>, MetricsLog), S::Error> {
        let (config, seed) = (spec.config, spec.seed);
        let mut trainer = Self::open(spec, stores, metrics, stage)?;
        let resume = trainer.resumed().map(|r| r.position.clone());
        let rng = TrainRng::seed_from_u64(seed);
        let mut stream = BatchStream::length_bucketed(lengths, config.batch_size, rng, resume.as_ref())?;
        let total = config.total_steps(stream.batches_per_epoch());
        let phase = Phase {
            stream: &mut stream,
            start: trainer.step(),
            steps: total,
            schedule: config.schedule(total),
            last: true,
            checkpoint_at_end: false,
            extra: &|_| serde_json::Value::Null,
        };
        trainer.run(stage, phase)?;
        trainer.finish(stage)
    }

    /// Where this run continues, `None` for a fresh run.
    pub fn resumed(&self) -> Option<&Resumed> {
        self.resumed.as_ref()
    }

    /// Optimizer steps taken so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Logs a stage metric at the current step (under the run's prefix).
    pub fn log(&mut self, name: &str, value: f64) {
        self.metrics.push(self.step, &format!("{}{name}", self.spec.metric_prefix), value);
    }

    /// Drops the stage metrics named `name_prefix…` (under the run's prefix) logged at the current
    /// step: the rows a killed run logged for work whose result it did not get to save, about to be
    /// logged again.
    pub fn forget_metrics_of_this_step(&mut self, name_prefix: &str) -> Result<(), S::Error> {
        let prefix = format!("{}{name_prefix}", self.spec.metric_prefix);
        Ok(self.metrics.rewind(self.step.checked_sub(1), |name| name.starts_with(&prefix))?)
    }

    /// Writes the metrics table.
    pub fn flush_metrics(&mut self) -> Result<(), S::Error> {
        Ok(self.metrics.flush()?)
    }

    /// Held-out evaluation now, logged (`None` without a held-out set).
    pub fn evaluate(&mut self, stage: &mut S) -> Result<Option<S::Eval>, S::Error> {
        let Some(eval) = stage.evaluate()? else { return Ok(None) };
        let rows = stage.eval_metrics(&eval);
        self.push_rows(&rows);
        let step = self.step;
        self.progress.suspend(|| tracing::info!(step, "held-out {}", render(&rows)));
        self.evaluated_at = Some(step);
        Ok(Some(eval))
    }

    /// Runs the phase's steps from `phase.start` to `phase.steps`.
    pub fn run(&mut self, stage: &mut S, phase: Phase<'_>) -> Result<(), S::Error> {
        let cfg = self.spec.config;
        let _span = tracing::info_span!("train", stage = %self.spec.name).entered();
        self.progress.inc_length(phase.steps.saturating_sub(phase.start));
        let max_norm = if cfg.max_grad_norm > 0.0 { cfg.max_grad_norm } else { f64::INFINITY };
        for phase_step in phase.start..phase.steps {
            let began = Instant::now();
            seed_everything(rank_seed(seed_for(self.spec.seed, self.step), self.world.rank()));
            let micro: Vec<Vec<usize>> = (0..cfg.grad_accum).map(|_| phase.stream.next_batch().to_vec()).collect();
            let all: Vec<&[usize]> = micro.iter().map(Vec::as_slice).collect();
            let mine = self.world.share_step(&all);
            let before = self.world.is_distributed().then(|| self.interval.0.sums());
            let mut work = stage.backward(&StepBatches { all: &all, mine: &mine }, &mut self.interval.0)?;
            if let Some(before) = before {
                work = self.reduce_step(work, &before)?;
            }
            let grad_norm = self.optimizer.clip_grad_norm(max_norm).map_err(Error::from)?;
            let lr = phase.schedule.lr_at(phase_step);
            let nonfinite =
                [("loss", work.loss), ("gradient norm", grad_norm)].into_iter().find(|(_, v)| !v.is_finite());
            match nonfinite {
                None => self.optimizer.step(lr).map_err(Error::from)?,
                Some((quantity, _)) => {
                    if cfg.on_nonfinite == OnNonFinite::Abort {
                        return Err(Error::non_finite(quantity, "step", self.step + 1).into());
                    }
                    tracing::warn!(step = self.step + 1, "non-finite {quantity}: skipping the step");
                    self.summary.skipped += 1;
                }
            }
            self.optimizer.zero_grad();
            let seconds = began.elapsed().as_secs_f64();
            self.throughput.add(&work, seconds);
            self.interval.1 += 1;
            self.interval.2.add(&work, seconds);
            self.step += 1;
            self.progress.inc(1);
            let phase_done = phase_step + 1 == phase.steps;

            if self.step.is_multiple_of(cfg.log_every.max(1)) || phase_done {
                self.log_interval(stage, lr, grad_norm);
            }
            if cfg.eval_every > 0 && self.step.is_multiple_of(cfg.eval_every) {
                self.summary.eval_after = self.evaluate(stage)?;
            }
            let on_cadence = cfg.checkpoint_every > 0 && self.step.is_multiple_of(cfg.checkpoint_every);
            let at_end = cfg.checkpoint_every > 0 && phase_done && phase.checkpoint_at_end;
            if (on_cadence || at_end) && !(phase_done && phase.last) {
                // A logging interval also ends at a checkpoint: its running sums are not saved, so
                // a run resumed there logs what an uninterrupted one does.
                if self.interval.1 > 0 {
                    self.log_interval(stage, lr, grad_norm);
                }
                self.checkpoint(phase.stream.position(), (phase.extra)(phase_step + 1))?;
            }
        }
        Ok(())
    }

    /// Sums the ranks' gradients, step work and interval sums (what each added this step).
    fn reduce_step(&mut self, work: StepWork, before: &[f64]) -> Result<StepWork, S::Error> {
        self.world.all_reduce_gradients(&self.params).map_err(Error::from)?;
        let after = self.interval.0.sums();
        let mut values = vec![work.loss, work.examples as f64, work.tokens as f64];
        values.extend(after.iter().zip(before).map(|(a, b)| a - b));
        self.world.sum_f64(&mut values).map_err(Error::from)?;
        let sums: Vec<f64> = before.iter().zip(&values[3..]).map(|(b, d)| b + d).collect();
        self.interval.0.set_sums(&sums);
        Ok(StepWork { loss: values[0], examples: values[1] as usize, tokens: values[2] as usize })
    }

    fn log_interval(&mut self, stage: &S, lr: f64, grad_norm: f64) {
        let (interval, steps, speed) = std::mem::take(&mut self.interval);
        let summary = stage.summarize(&interval, steps);
        let mut rows = stage.train_metrics(&summary);
        let message: Vec<String> = rows.iter().take(2).map(|(name, value)| format!("{name} {value:.4}")).collect();
        let (examples_per_s, tokens_per_s) = speed.rates();
        rows.extend([
            ("lr".to_string(), lr),
            ("grad_norm".to_string(), grad_norm),
            ("tokens_per_s".to_string(), tokens_per_s),
            (format!("{}_per_s", S::EXAMPLES), examples_per_s),
        ]);
        if self.summary.skipped > 0 {
            rows.push(("skipped_steps".to_string(), self.summary.skipped as f64));
        }
        let device = self.stores.first().map_or(tch::Device::Cpu, |(_, store)| store.device());
        rows.extend(peak_memory_bytes(device).map(|bytes| ("peak_memory_bytes".to_string(), bytes as f64)));
        self.push_rows(&rows);
        self.progress.set_message(message.join(" "));
        let step = self.step;
        self.progress.suspend(|| tracing::info!(step, "train {}", render(&rows)));
        self.summary.last = summary;
    }

    fn push_rows(&mut self, rows: &[(String, f64)]) {
        for (name, value) in rows {
            self.metrics.push(self.step, &format!("{}{name}", self.spec.metric_prefix), *value);
        }
    }

    fn checkpoint(&mut self, position: &StreamPosition, extra: serde_json::Value) -> Result<(), S::Error> {
        if !train_state::all_finite(&self.stores) {
            return Err(Error::non_finite("parameters", "step", self.step).into());
        }
        self.metrics.flush()?;
        if !self.world.is_writer() {
            return Ok(());
        }
        let state = TrainState {
            step: self.step,
            epoch: position.epoch,
            data_position: position.batches,
            rng_state: position.rng_state.clone(),
            tch_seed: self.spec.seed,
            config_hash: self.spec.config_hash.clone(),
            extra,
        };
        train_state::save(&self.spec.checkpoints, &state, &self.stores, &self.optimizer)?;
        train_state::prune(&self.spec.checkpoints, self.spec.config.keep_checkpoints.max(1))?;
        Ok(())
    }

    /// Ends the run: a last held-out evaluation unless one was just taken, the metrics written.
    /// Saving the model is the stage's. Returns the summary and the metrics log.
    pub fn finish(mut self, stage: &mut S) -> Result<(Summary<S>, MetricsLog), S::Error> {
        self.progress.finish_and_clear();
        if self.evaluated_at != Some(self.step) {
            self.summary.eval_after = self.evaluate(stage)?;
        }
        if !train_state::all_finite(&self.stores) {
            return Err(Error::non_finite("parameters", "step", self.step).into());
        }
        self.metrics.flush()?;
        self.summary.steps = self.step;
        (self.summary.examples_per_s, self.summary.tokens_per_s) = self.throughput.rates();
        Ok((self.summary, self.metrics))
    }
}

/// Rank `rank`'s libtorch seed for a step seeded `step_seed` (rank 0 keeps it: a one-process run
/// is unchanged).
fn rank_seed(step_seed: u64, rank: usize) -> u64 {
    if rank == 0 {
        step_seed
    } else {
        seed_for(step_seed, (rank as u64) << 32)
    }
}

/// Every variable of `stores` that requires grad, named `<store>.<variable>`, for one optimizer
/// over all of them, sorted by name: the same order in every process (a `VarStore` hands them out
/// in hash order, which differs between processes), as the ranks' gradient buckets need.
pub fn trainable_variables(stores: &[(&str, &VarStore)]) -> Vec<(String, tch::Tensor)> {
    let mut variables: Vec<(String, tch::Tensor)> = stores
        .iter()
        .flat_map(|(store, vs)| {
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(move |(n, t)| (format!("{store}.{n}"), t))
        })
        .collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    variables
}

/// `name value` pairs for a log line.
fn render(rows: &[(String, f64)]) -> String {
    rows.iter().map(|(name, value)| format!("{name}={value:.5}")).collect::<Vec<_>>().join(" ")
}
