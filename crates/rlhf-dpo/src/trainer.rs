//! The preference-optimisation loop: rounds of pairs (an offline round 0 and online rounds), each
//! a [`Phase`] of `rlhf_train`'s [`Trainer`] trained for `epochs` passes (or `max_steps` steps)
//! with warmup + cosine restarted per round; the TRL metrics every `log_every` steps, held-out
//! evaluation, resumable checkpoints (which also record the round and its step). Resuming gives
//! bit-identical weights on the CPU with the same thread count. Dropout is off throughout (as TRL's
//! `disable_dropout`), so policy and reference see the same network.

use rand::SeedableRng;
use rlhf_model::CausalLm;
use rlhf_train::batching::{BatchStream, StreamPosition};
use rlhf_train::MetricsLog;
use rlhf_train::{seed_for, IntervalSums, Phase, StageDir, StepBatches, StepWork, TrainRng, TrainSpec, TrainStep};
use tch::{Kind, Tensor};

use crate::config::TrainConfig;
use crate::data::{cached_reference, policy_logps, Pair};
use crate::loss::{LossConfig, PairTerms, PolicyLogps, ReferenceLogps};
use crate::online::RoundStats;
use crate::reference::Reference;
use crate::{Error, Result};

/// Name of the trainable tensors' file in a checkpoint.
const CHECKPOINT_MODEL: &str = "policy";

/// Means over pairs of the metrics TRL's `DPOTrainer` logs (for KTO, as its `KTOTrainer` does:
/// chosen and rejected are the desirable and undesirable examples).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PreferenceStats {
    /// The objective (preference loss, plus the NLL term of RPO and ORPO).
    pub loss: f64,
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    /// `chosen_reward − rejected_reward`.
    pub margin: f64,
    /// Share of pairs whose chosen reward is the higher (KTO: of examples whose reward is on the
    /// side of the reference point that their label says).
    pub accuracy: f64,
    /// Mean summed log-prob of chosen responses under the policy.
    pub chosen_logp: f64,
    pub rejected_logp: f64,
    /// KTO's mean reference point `z`.
    pub kl: Option<f64>,
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
        .chain(self.kl.map(|kl| ("kl", kl)))
        .map(|(name, value)| (format!("{prefix}{name}"), value))
        .collect()
    }
}

/// Running sums behind [`PreferenceStats`].
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    /// Σ loss, Σ chosen reward, Σ rejected reward, Σ correct, Σ chosen logp, Σ rejected logp,
    /// Σ chosen tokens, chosen count, rejected count, Σ z (per example).
    sums: [f64; 10],
    pairs: usize,
}

impl IntervalSums for Totals {
    fn sums(&self) -> Vec<f64> {
        self.sums.iter().copied().chain([self.pairs as f64]).collect()
    }
    fn set_sums(&mut self, sums: &[f64]) {
        self.sums.copy_from_slice(&sums[..10]);
        self.pairs = sums[10] as usize;
    }
}

impl Totals {
    fn add(&mut self, terms: &PairTerms, policy: &PolicyLogps) -> Result<()> {
        let device = terms.losses.device();
        let f64s = |t: &Tensor| t.detach().to_kind(Kind::Double).to_device(device);
        let correct = terms.chosen_rewards.gt_tensor(&terms.rejected_rewards).to_kind(Kind::Double);
        let parts: Vec<Tensor> = match (&policy.labels, &terms.kl) {
            (Some(labels), Some(z)) => {
                let (desirable, chosen_reward) = (f64s(labels), f64s(&terms.chosen_rewards));
                let undesirable = -&desirable + 1.0;
                let logp = f64s(&policy.chosen);
                vec![
                    &chosen_reward * &desirable,
                    &chosen_reward * &undesirable,
                    correct.eq_tensor(&desirable).to_kind(Kind::Double),
                    &logp * &desirable,
                    &logp * &undesirable,
                    f64s(&policy.chosen_tokens),
                    desirable.shallow_clone(),
                    undesirable,
                    f64s(z).expand_as(&desirable),
                ]
            }
            _ => {
                let ones = f64s(&terms.chosen_rewards).ones_like();
                vec![
                    f64s(&terms.chosen_rewards),
                    f64s(&terms.rejected_rewards),
                    correct,
                    f64s(&policy.chosen),
                    f64s(&policy.rejected),
                    f64s(&policy.chosen_tokens),
                    ones.shallow_clone(),
                    ones.shallow_clone(),
                    ones.zeros_like(),
                ]
            }
        };
        let parts: Vec<Tensor> =
            std::iter::once(f64s(&terms.losses)).chain(parts).map(|t| t.sum(Kind::Double)).collect();
        let sums = Vec::<f64>::try_from(Tensor::stack(&parts, 0).to_device(tch::Device::Cpu))?;
        for (total, value) in self.sums.iter_mut().zip(sums) {
            *total += value;
        }
        self.pairs += terms.losses.size()[0] as usize;
        Ok(())
    }

    fn stats(&self, loss: &LossConfig) -> PreferenceStats {
        let n = self.pairs.max(1) as f64;
        let [losses, chosen, rejected, correct, chosen_logp, rejected_logp, chosen_tokens, n_chosen, n_rejected, z] =
            self.sums;
        let mean = |sum: f64, count: f64| if count > 0.0 { sum / count } else { 0.0 };
        let nll = loss.nll_weight() * -chosen_logp / chosen_tokens.max(1.0);
        let (chosen_reward, rejected_reward) = (mean(chosen, n_chosen), mean(rejected, n_rejected));
        PreferenceStats {
            loss: losses / n + nll,
            chosen_reward,
            rejected_reward,
            margin: chosen_reward - rejected_reward,
            accuracy: correct / n,
            chosen_logp: mean(chosen_logp, n_chosen),
            rejected_logp: mean(rejected_logp, n_rejected),
            kl: loss.unpaired().then(|| z / n),
            pairs: self.pairs,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSummary {
    /// Steps, the last interval's and the held-out metrics, throughput.
    pub train: rlhf_train::TrainSummary<PreferenceStats, PreferenceStats>,
    /// Comparisons files whose reference log-probs were computed (not read from their cache).
    pub reference_passes: usize,
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
    pub dir: &'a StageDir,
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

/// The DPO-family step over a batch of pairs of the current round.
struct PairStep<'a> {
    policy: &'a CausalLm,
    /// The reference scored with every batch (on-the-fly mode), `None` when pairs carry cached
    /// log-probs or the loss needs none.
    live_reference: Option<Reference>,
    loss: &'a LossConfig,
    pad_id: i64,
    eval_batch_size: usize,
    heldout: Vec<Pair>,
    /// The round being trained.
    pairs: Vec<Pair>,
}

impl PairStep<'_> {
    fn reference_logps(&self, batch: &[&Pair]) -> Result<Option<ReferenceLogps>> {
        if !self.loss.needs_reference() {
            return Ok(None);
        }
        Ok(Some(match &self.live_reference {
            Some(reference) => reference.logps(self.policy, batch, self.pad_id)?,
            None => cached_reference(batch)?,
        }))
    }

    /// Loss terms of one micro-batch, with the graph.
    fn forward(&self, batch: &[&Pair]) -> Result<(PairTerms, PolicyLogps)> {
        let reference = self.reference_logps(batch)?;
        let policy = policy_logps(self.policy, batch, self.pad_id)?;
        let terms = self.loss.pair_terms(&policy, reference.as_ref())?;
        Ok((terms, policy))
    }
}

impl TrainStep for PairStep<'_> {
    type Error = Error;
    type Interval = Totals;
    type Train = PreferenceStats;
    type Eval = PreferenceStats;
    const EXAMPLES: &'static str = "pairs";

    fn backward(&mut self, step: &StepBatches<'_>, interval: &mut Totals) -> Result<StepWork> {
        let all = rlhf_train::gather(&self.pairs, step.all);
        let step_pairs: usize = all.iter().map(Vec::len).sum();
        let step_chosen_tokens: usize = all.iter().flatten().map(|p| p.chosen.len()).sum();
        let micro = rlhf_train::gather(&self.pairs, step.mine);
        let mut loss = 0.0;
        for batch in micro.iter().filter(|b| !b.is_empty()) {
            let (terms, policy) = self.forward(batch)?;
            let objective = self.loss.objective(&terms, &policy, step_pairs as f64, step_chosen_tokens as f64);
            objective.backward();
            loss += objective.double_value(&[]);
            interval.add(&terms, &policy)?;
        }
        let tokens = micro.iter().flatten().map(|p| p.tokens()).sum();
        Ok(StepWork { loss, examples: micro.iter().map(Vec::len).sum(), tokens })
    }

    fn summarize(&self, interval: &Totals, _steps: u64) -> PreferenceStats {
        interval.stats(self.loss)
    }

    fn train_metrics(&self, stats: &PreferenceStats) -> Vec<(String, f64)> {
        stats.rows("")
    }

    fn evaluate(&mut self) -> Result<Option<PreferenceStats>> {
        if self.heldout.is_empty() {
            return Ok(None);
        }
        let mut totals = Totals::default();
        let pairs: Vec<&Pair> = self.heldout.iter().collect();
        for batch in pairs.chunks(self.eval_batch_size) {
            let (terms, policy) = tch::no_grad(|| self.forward(batch))?;
            totals.add(&terms, &policy)?;
        }
        Ok(Some(totals.stats(self.loss)))
    }

    fn eval_metrics(&self, stats: &PreferenceStats) -> Vec<(String, f64)> {
        stats.rows("eval_")
    }
}

/// Trains a policy round after round; see the module doc.
pub struct Trainer<'a> {
    core: rlhf_train::Trainer<'a, PairStep<'a>>,
    step: PairStep<'a>,
    job: TrainJob<'a>,
    resume: Option<ResumePoint>,
}

impl<'a> Trainer<'a> {
    /// Sets up the optimizer and metrics, continuing from the newest checkpoint in `job.dir` when
    /// there is one (then [`Self::resume_point`] tells which round to continue).
    pub fn new(policy: &'a CausalLm, live_reference: Option<Reference>, mut job: TrainJob<'a>) -> Result<Self> {
        let spec =
            TrainSpec::for_stage(crate::STAGE_DIR, job.train, job.dir, job.config_hash.clone(), job.seed, job.progress);
        let mut step = PairStep {
            policy,
            live_reference,
            loss: job.loss,
            pad_id: job.pad_id,
            eval_batch_size: job.train.eval_batch_size,
            heldout: std::mem::take(&mut job.heldout),
            pairs: Vec::new(),
        };
        let store = policy.lora().map_or_else(|| policy.var_store(), |lora| &lora.var_store);
        let metrics = MetricsLog::open(job.dir.metrics(), crate::STAGE_DIR)?;
        let core = rlhf_train::Trainer::open(spec, vec![(CHECKPOINT_MODEL, store)], metrics, &mut step)?;
        let resume = match core.resumed() {
            Some(resumed) => {
                let field = |name: &str| resumed.extra.get(name).and_then(serde_json::Value::as_u64);
                let (Some(round), Some(round_step)) = (field("round"), field("round_step")) else {
                    return Err(Error::Checkpoint {
                        path: resumed.dir.clone(),
                        message: "has no round in its train state".into(),
                    });
                };
                Some(ResumePoint { round: round as usize, round_step, position: resumed.position.clone() })
            }
            None => None,
        };
        Ok(Trainer { core, step, job, resume })
    }

    /// Where this run continues (rounds before it are done), `None` for a fresh run.
    pub fn resume_point(&self) -> Option<&ResumePoint> {
        self.resume.as_ref()
    }

    /// Logs the labelling of an online round (at the step the round starts) and flushes the metrics.
    pub fn log_round(&mut self, round: usize, stats: &RoundStats) -> Result<()> {
        // Logged before the round's comparisons are written: a run killed in between samples the
        // round again on resume, and its first labelling's rows go.
        self.core.forget_metrics_of_this_step("online/")?;
        let mut rows = vec![
            ("online/round", round as f64),
            ("online/pairs", stats.pairs as f64),
            ("online/dropped", stats.dropped as f64),
        ];
        rows.extend(stats.gold_score.map(|v| ("online/gold_score", v)));
        rows.extend(stats.gold_agreement.map(|v| ("online/gold_agreement", v)));
        rows.extend(stats.reward.map(|v| ("online/reward", v)));
        for (name, value) in rows {
            self.core.log(name, value);
        }
        tracing::info!(round, pairs = stats.pairs, dropped = stats.dropped, gold_score = ?stats.gold_score, "labelled an online round");
        self.core.flush_metrics()
    }

    /// Held-out metrics now (`None` without held-out pairs).
    pub fn evaluate(&mut self) -> Result<Option<PreferenceStats>> {
        self.core.evaluate(&mut self.step)
    }

    /// Trains on `pairs` for the round's steps (continuing a resumed round where it stopped).
    /// `more_rounds` says whether another round follows (its start gets a checkpoint).
    pub fn train_round(&mut self, round: usize, pairs: Vec<Pair>, more_rounds: bool) -> Result<()> {
        let cfg = self.job.train;
        if pairs.is_empty() {
            return Err(Error::Invalid(format!("round {round} has no pairs to train on")));
        }
        let resume = self.resume.take().filter(|r| r.round == round);
        let rng = TrainRng::seed_from_u64(seed_for(self.job.seed, round as u64));
        let mut stream = BatchStream::shuffled(pairs.len(), cfg.batch_size, rng, resume.as_ref().map(|r| &r.position))?;
        let steps = cfg.total_steps(stream.batches_per_epoch());
        self.step.pairs = pairs;
        let phase = Phase {
            stream: &mut stream,
            start: resume.map_or(0, |r| r.round_step),
            steps,
            schedule: cfg.schedule(steps),
            last: !more_rounds,
            checkpoint_at_end: true,
            extra: &|round_step| serde_json::json!({ "round": round, "round_step": round_step }),
        };
        self.core.run(&mut self.step, phase)
    }

    /// Final held-out evaluation, metrics, and the policy saved to `<dir>/final/`.
    pub fn finish(mut self) -> Result<TrainSummary> {
        let (train, _) = self.core.finish(&mut self.step)?;
        if rlhf_train::is_writer() {
            self.step.policy.save_pretrained(self.job.dir.final_dir())?;
        }
        Ok(TrainSummary { train, reference_passes: 0 })
    }
}
