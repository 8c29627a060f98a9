//! The RL loop. Each iteration samples responses to a batch of prompts, scores them (reward models,
//! reference and critic), turns scores and the per-token KL penalty into advantages (GAE, GRPO or
//! RLOO), and runs PPO epochs over minibatches; then it appends its rollouts and metrics, adapts β
//! and, every `train.checkpoint_every` iterations, saves a resumable checkpoint.
//!
//! The stage directory holds `rollouts.parquet` and `metrics.parquet` (append-only tables, one part
//! file per iteration), `checkpoints/step-N/` (trainable tensors, optimizer, KL controller, reward
//! moments, Lagrange multiplier, prompt position, RNG) and finally `final/`. Models stay in eval mode (no dropout), so
//! the first minibatch's ratio is exactly 1.
//!
//! Metrics per iteration (`step` = iteration, 1-based): `objective/{score, rm_score,
//! non_score_reward, rlhf_reward, kl, kl_coef, entropy, gold}` (score after shaping, raw reward-model
//! score, `−β·ΣKL`, their sum, mean per-response KL, β used, mean per-token entropy, the configured
//! `gold_judge`'s mean score when there is one), with `ppo.entropy_coef > 0` `policy/entropy` (the
//! policy's mean per-token entropy in the updates, which the bonus rewards), with a `[constraint]` `constraint/{reward, cost,
//! lambda, satisfied}` (mean reward before the cost, mean cost, λ after this iteration's update,
//! share of rollouts with cost ≤ threshold), `policy/{approx_kl, clip_fraction}`,
//! `loss/{policy, value}`, `value/{clip_fraction, explained_variance}`, `response/{length,
//! eos_rate}`, `perf/{tokens_per_s, samples_per_s, peak_memory_bytes}` (prompt + response tokens
//! and samples over the iteration's wall time), `time/{generation_s, scoring_s, training_s,
//! generation_share}`, `train/{grad_norm, updates, skipped}`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rlhf_data::{AppendTable, Metric, Prompt, Rollout};
use rlhf_model::device::{peak_memory_bytes, seed_everything};
use rlhf_model::{AdamW, CausalLm, GenerationConfig, LrSchedule, ScheduleKind, Tokenizer};
use rlhf_train::{
    progress_bar, seed_for, train_state, trainable_variables, OnNonFinite, StageDir, TrainRng, TrainState,
};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::advantage::{dr_grpo, explained_variance, gae, grpo, masked_mean, masked_whiten, per_token, rloo};
use crate::config::{AdvantageKind, ImportanceRatio, LossAggregation, PpoConfig};
use crate::constraint::Lagrangian;
use crate::kl::KlController;
use crate::loss::{policy_loss, sequence_policy_loss, value_loss, Clip};
use crate::reward::{shape_scores, ResponseShape, RewardModels, RunningMoments};
use crate::rollout::{critic_values, policy_pass, sample, Critic, Layout, Sample};
use crate::{Error, Result};

/// Every iteration's rollouts.
pub const ROLLOUTS_FILE: &str = "rollouts.parquet";
/// Stage name in the metrics rows.
pub const STAGE_NAME: &str = "ppo";

/// The models of a run.
pub struct Models {
    pub policy: CausalLm,
    /// The frozen reference; `None`: the policy with its LoRA adapters switched off.
    pub reference: Option<CausalLm>,
    pub critic: Critic,
    pub rewards: RewardModels,
    /// The policy's tokenizer.
    pub tokenizer: Tokenizer,
    /// The judge behind `objective/gold` (`gold_judge`), if any.
    pub gold_judge: Option<Box<dyn rlhf_data::Judge>>,
}

/// Prompts as text and (cut) tokens.
pub struct Prompts {
    pub records: Vec<Prompt>,
    pub tokens: Vec<Vec<i64>>,
}

/// One run of the loop.
pub struct TrainJob<'a> {
    pub config: &'a PpoConfig,
    /// The stage directory.
    pub dir: &'a StageDir,
    /// Fingerprint of the resolved config; checkpoints written under another are refused.
    pub config_hash: String,
    pub prompts: &'a Prompts,
    /// Draw a progress bar.
    pub progress: bool,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainSummary {
    pub iterations: u64,
    pub resumed_from: Option<u64>,
    /// Last iteration's mean (shaped) score, KL and β.
    pub score: f64,
    pub kl: f64,
    pub beta: f64,
    /// Batches the numerical guard skipped.
    pub skipped: u64,
}

/// Trainer state besides tensors, stored as the checkpoint's `extra`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LoopState {
    kl: KlController,
    moments: RunningMoments,
    /// λ of `[constraint]` (its `lambda_init` while there is none).
    lagrangian: Lagrangian,
    optimizer_steps: u64,
    skipped: u64,
}

/// Prompt indices epoch after epoch, each epoch a fresh permutation seeded by `(seed, epoch)`.
struct PromptStream {
    seed: u64,
    len: usize,
    epoch: u64,
    position: usize,
    order: Vec<usize>,
}

impl PromptStream {
    fn new(seed: u64, len: usize, epoch: u64, position: usize) -> Self {
        let mut stream = PromptStream { seed, len, epoch, position, order: Vec::new() };
        stream.shuffle();
        stream
    }
    fn shuffle(&mut self) {
        let mut rng = TrainRng::seed_from_u64(self.seed ^ self.epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.order = (0..self.len).collect();
        self.order.shuffle(&mut rng);
    }
    fn take(&mut self, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                if self.position == self.len {
                    (self.epoch, self.position) = (self.epoch + 1, 0);
                    self.shuffle();
                }
                self.position += 1;
                self.order[self.position - 1]
            })
            .collect()
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The numerical guard: `Ok(())` to skip the batch, or the abort error.
fn guard(mode: OnNonFinite, quantity: &str, iteration: u64) -> Result<()> {
    match mode {
        OnNonFinite::Abort => Err(Error::non_finite(quantity, "iteration", iteration)),
        OnNonFinite::Skip => {
            tracing::warn!(iteration, "non-finite {quantity}: skipping the batch");
            Ok(())
        }
    }
}

fn all_finite(t: &Tensor) -> bool {
    t.isfinite().all().int64_value(&[]) != 0
}

/// The tensors a checkpoint holds, by file name: the policy's trainable store and the critic's.
fn checkpoint_stores(models: &Models) -> Vec<(&'static str, &tch::nn::VarStore)> {
    let policy = models.policy.lora().map_or_else(|| models.policy.var_store(), |l| &l.var_store);
    let mut stores = vec![("policy", policy)];
    match &models.critic {
        Critic::Separate(critic) => stores.push(("critic", critic.var_store())),
        Critic::Shared(head) => stores.push(("value_head", head.var_store())),
        Critic::None => {}
    }
    stores
}

/// An iteration's scored rollouts: the layout and `[B, N]` per-token tensors.
struct Experience {
    layout: Layout,
    logprobs: Tensor,
    ref_logprobs: Tensor,
    values: Tensor,
    entropy: Tensor,
}

/// Policy, reference and critic passes over the samples, `batch_size` rows at a time, no grad.
fn score_samples(models: &Models, samples: &[Sample], config: &PpoConfig) -> Result<Experience> {
    let device = models.policy.device();
    let layout = Layout::new(samples, models.tokenizer.pad_id(), device);
    let temperature = config.generation.temperature;
    let rows: Vec<usize> = (0..samples.len()).collect();
    let mut parts: [Vec<Tensor>; 4] = Default::default();
    tch::no_grad(|| -> Result<()> {
        for chunk in rows.chunks(config.ppo.rollout_batch_size.max(1)) {
            let sub = layout.select(chunk);
            let pad = |t: Tensor| t.constant_pad_nd([0, layout.response_width() - sub.response_width()]);
            let pass = policy_pass(&models.policy, &models.critic, &sub, temperature, true)?;
            let reference = match &models.reference {
                Some(reference) => policy_pass(reference, &Critic::None, &sub, temperature, false)?,
                None => {
                    models.policy.with_adapters(false, |p| policy_pass(p, &Critic::None, &sub, temperature, false))?
                }
            };
            let values = match (&models.critic, pass.values) {
                (Critic::Separate(critic), _) => critic_values(critic, &sub)?,
                (_, Some(values)) => values,
                (_, None) => Tensor::zeros_like(&pass.logprobs),
            };
            let entropy = pass.entropy.unwrap_or_else(|| Tensor::zeros_like(&pass.logprobs));
            for (part, t) in parts.iter_mut().zip([pass.logprobs, reference.logprobs, values, entropy]) {
                part.push(pad(t));
            }
        }
        Ok(())
    })?;
    let [logprobs, ref_logprobs, values, entropy] = parts.map(|p| Tensor::cat(&p, 0));
    Ok(Experience { layout, logprobs, ref_logprobs, values, entropy })
}

/// Means of the update's statistics over minibatch steps.
#[derive(Default)]
struct UpdateStats {
    policy_loss: f64,
    value_loss: f64,
    clip_fraction: f64,
    value_clip_fraction: f64,
    approx_kl: f64,
    /// The policy's mean per-token entropy in the updates (with the entropy bonus only).
    entropy: f64,
    grad_norm: f64,
    steps: u64,
}

/// What the PPO epochs need besides the experience.
struct Targets {
    advantages: Tensor,
    returns: Tensor,
}

struct Loop<'a> {
    models: &'a Models,
    job: &'a TrainJob<'a>,
    optimizer: AdamW,
    schedule: LrSchedule,
    rng: TrainRng,
    state: LoopState,
}

impl<'a> Loop<'a> {
    /// The loop of `job`, from its newest checkpoint when there is one: the optimizer, RNG, KL
    /// controller and prompt stream as they were saved (`summary.resumed_from` says where).
    fn open(models: &'a Models, job: &'a TrainJob<'a>) -> Result<(Self, PromptStream, TrainSummary)> {
        let config = job.config;
        let mut optimizer =
            AdamW::from_named(trainable_variables(&checkpoint_stores(models)), config.train.adamw.clone());
        let mut summary = TrainSummary::default();
        let mut state = LoopState {
            kl: config.kl.controller(),
            moments: RunningMoments::default(),
            lagrangian: config.constraint.multiplier(),
            optimizer_steps: 0,
            skipped: 0,
        };
        let mut rng = TrainRng::seed_from_u64(config.seed);
        let mut stream = PromptStream::new(config.seed, job.prompts.records.len(), 0, 0);
        let resumed = train_state::resume(
            &job.dir.checkpoints(),
            &checkpoint_stores(models),
            &mut optimizer,
            &job.config_hash,
            &job.dir.config_file(),
        )?;
        if let Some((dir, saved)) = resumed {
            state = serde_json::from_value(saved.extra)
                .map_err(|e| Error::Checkpoint { path: dir.clone(), message: e.to_string() })?;
            rng = train_state::restore_rng(&saved.rng_state)?;
            stream =
                PromptStream::new(config.seed, job.prompts.records.len(), saved.epoch, saved.data_position as usize);
            summary.resumed_from = Some(saved.step);
        }
        let schedule = LrSchedule {
            kind: ScheduleKind::Constant,
            peak_lr: config.train.lr,
            warmup_steps: config.train.warmup_steps,
            total_steps: 0,
            min_lr_ratio: 1.0,
        };
        Ok((Loop { models, job, optimizer, schedule, rng, state }, stream, summary))
    }

    /// PPO epochs over iteration `iteration`'s rollouts (steps the guard skipped are not counted).
    fn update(&mut self, exp: &Experience, targets: &Targets, iteration: u64) -> Result<UpdateStats> {
        let cfg = &self.job.config.ppo;
        let temperature = self.job.config.generation.temperature;
        let critic = &self.models.critic;
        let max_norm =
            if self.job.config.train.max_grad_norm > 0.0 { self.job.config.train.max_grad_norm } else { f64::INFINITY };
        let mut stats = UpdateStats::default();
        let mut order: Vec<usize> = (0..exp.layout.response_lens.len()).collect();
        let clip = Clip {
            low: cfg.clip_ratio,
            high: if cfg.clip_ratio_high > 0.0 { cfg.clip_ratio_high } else { cfg.clip_ratio },
        };
        let max_new_tokens = self.job.config.generation.max_new_tokens as f64;
        'epochs: for _ in 0..cfg.epochs {
            order.shuffle(&mut self.rng);
            for minibatch in order.chunks(cfg.minibatch_size.max(1)) {
                let tokens: i64 = minibatch.iter().map(|&r| exp.layout.response_lens[r]).sum();
                let mut step = UpdateStats::default();
                let mut nonfinite = None;
                for micro in minibatch.chunks(cfg.micro_batch_size.max(1)) {
                    let layout = exp.layout.select(micro);
                    let micro_tokens = layout.response_lens.iter().sum::<i64>() as f64;
                    let weight = micro_tokens / tokens.max(1) as f64;
                    // The micro-batch's share of the minibatch's policy loss, as each aggregation averages it.
                    let policy_weight = match (cfg.importance_ratio, cfg.loss_aggregation) {
                        (ImportanceRatio::Sequence, _) => micro.len() as f64 / minibatch.len() as f64,
                        (_, LossAggregation::TokenMean) => weight,
                        (_, LossAggregation::Constant) => micro_tokens / (minibatch.len() as f64 * max_new_tokens),
                    };
                    let mask = &layout.response_mask;
                    let bonus = cfg.entropy_coef > 0.0;
                    let pass = policy_pass(&self.models.policy, critic, &layout, temperature, bonus)?;
                    let surrogate = match cfg.importance_ratio {
                        ImportanceRatio::Token => policy_loss,
                        ImportanceRatio::Sequence => sequence_policy_loss,
                    };
                    let pg = surrogate(
                        &pass.logprobs,
                        &layout.cut(&exp.logprobs, micro),
                        &layout.cut(&targets.advantages, micro),
                        mask,
                        clip,
                    );
                    let values = match critic {
                        Critic::Separate(model) => Some(critic_values(model, &layout)?),
                        _ => pass.values,
                    };
                    // The whole loss is scaled by `weight` below; 1 for the token mean (bit for bit as before).
                    let mut loss = &pg.loss * if weight > 0.0 { policy_weight / weight } else { 0.0 };
                    if let Some(values) = values {
                        let vf = value_loss(
                            &values,
                            &layout.cut(&exp.values, micro),
                            &layout.cut(&targets.returns, micro),
                            mask,
                            cfg.clip_value,
                        );
                        loss += &vf.loss * cfg.vf_coef;
                        step.value_loss += vf.loss.double_value(&[]) * weight;
                        step.value_clip_fraction += vf.clip_fraction.double_value(&[]) * weight;
                    }
                    if let Some(entropy) = &pass.entropy {
                        // The micro-batch's token mean; `weight` below makes it the minibatch's.
                        let entropy = masked_mean(entropy, mask);
                        loss -= &entropy * cfg.entropy_coef;
                        step.entropy += entropy.double_value(&[]) * weight;
                    }
                    let loss = loss * weight;
                    if !loss.double_value(&[]).is_finite() {
                        nonfinite = Some("loss");
                        break;
                    }
                    loss.backward();
                    step.policy_loss += pg.loss.double_value(&[]) * policy_weight;
                    step.clip_fraction += pg.clip_fraction.double_value(&[]) * weight;
                    step.approx_kl += pg.approx_kl.double_value(&[]) * weight;
                }
                if nonfinite.is_none() {
                    step.grad_norm = self.optimizer.clip_grad_norm(max_norm)?;
                    if !step.grad_norm.is_finite() {
                        nonfinite = Some("gradient norm");
                    }
                }
                if let Some(quantity) = nonfinite {
                    self.optimizer.zero_grad();
                    guard(self.job.config.on_nonfinite, quantity, iteration)?;
                    self.state.skipped += 1;
                    continue;
                }
                self.optimizer.step(self.schedule.lr_at(self.state.optimizer_steps))?;
                self.optimizer.zero_grad();
                self.state.optimizer_steps += 1;
                stats.policy_loss += step.policy_loss;
                stats.value_loss += step.value_loss;
                stats.clip_fraction += step.clip_fraction;
                stats.value_clip_fraction += step.value_clip_fraction;
                stats.approx_kl += step.approx_kl;
                stats.entropy += step.entropy;
                stats.grad_norm += step.grad_norm;
                stats.steps += 1;
                if cfg.max_approx_kl > 0.0 && step.approx_kl > cfg.max_approx_kl {
                    tracing::debug!(iteration, approx_kl = step.approx_kl, "early stop of the iteration's epochs");
                    break 'epochs;
                }
            }
        }
        Ok(stats)
    }

    fn save_checkpoint(&self, iteration: u64, stream: &PromptStream) -> Result<()> {
        if !train_state::all_finite(&checkpoint_stores(self.models)) {
            return Err(Error::non_finite("parameters", "iteration", iteration));
        }
        let state = TrainState {
            step: iteration,
            epoch: stream.epoch,
            data_position: stream.position as u64,
            rng_state: train_state::rng_state(&self.rng),
            tch_seed: self.job.config.seed,
            config_hash: self.job.config_hash.clone(),
            extra: serde_json::to_value(&self.state).map_err(|e| Error::Invalid(e.to_string()))?,
        };
        let checkpoints = self.job.dir.checkpoints();
        train_state::save(&checkpoints, &state, &checkpoint_stores(self.models), &self.optimizer)?;
        train_state::prune(&checkpoints, self.job.config.train.keep_checkpoints.max(1))?;
        Ok(())
    }
}

/// Trains the policy (and critic) and saves it to `<job.dir>/final/`. See the module doc.
pub fn train(models: &Models, job: &TrainJob<'_>) -> Result<TrainSummary> {
    let config = job.config;
    let _span = tracing::info_span!("ppo", advantage = ?config.advantage).entered();
    let (mut run, mut stream, mut summary) = Loop::open(models, job)?;
    let start = summary.resumed_from.unwrap_or(0);
    // Rows after the checkpoint go (on a fresh start all of them: steps count from 1).
    let mut metrics = AppendTable::<Metric>::open(job.dir.metrics())?;
    metrics.retain(|m| m.step <= start)?;
    let mut rollouts = AppendTable::<Rollout>::open(job.dir.root.join(ROLLOUTS_FILE))?;
    rollouts.retain(|r| u64::from(r.step) <= start)?;

    let total = config.ppo.iterations;
    let pb = progress_bar(job.progress, STAGE_NAME, "iterations");
    pb.set_length(total);
    pb.set_position(start);
    let eos_ids = {
        let ids = models.policy.config().eos_token_ids();
        if ids.is_empty() {
            vec![models.tokenizer.eos_id()]
        } else {
            ids
        }
    };
    let generation = GenerationConfig {
        max_new_tokens: config.generation.max_new_tokens,
        do_sample: true,
        temperature: config.generation.temperature,
        top_k: config.generation.top_k,
        top_p: config.generation.top_p,
        eos_token_ids: eos_ids,
        pad_token_id: models.tokenizer.pad_id(),
        seed: 0,
        use_cache: true,
    };

    for iteration in start..total {
        let step = iteration + 1;
        let began = Instant::now();
        seed_everything(seed_for(config.seed, iteration));
        let prompt_ids = stream.take(config.ppo.prompts_per_iteration);
        let rows: Vec<(usize, &[i64])> = prompt_ids
            .iter()
            .flat_map(|&p| std::iter::repeat_n((p, job.prompts.tokens[p].as_slice()), config.ppo.group_size))
            .collect();
        let gen_cfg = GenerationConfig { seed: seed_for(config.seed, iteration), ..generation.clone() };
        let samples = sample(&models.policy, &rows, &gen_cfg, config.ppo.rollout_batch_size)?;
        let generation_s = began.elapsed().as_secs_f64();

        let scoring_began = Instant::now();
        let exp = score_samples(models, &samples, config)?;
        let texts: Vec<String> = samples
            .iter()
            .map(|s| {
                let body =
                    if s.has_eos { &s.response_tokens[..s.response_tokens.len() - 1] } else { &s.response_tokens[..] };
                models.tokenizer.decode(body, true)
            })
            .collect::<rlhf_model::Result<_>>()?;
        let prompts: Vec<&Prompt> = samples.iter().map(|s| &job.prompts.records[s.prompt]).collect();
        let pairs: Vec<(&Prompt, &str)> = prompts.iter().copied().zip(texts.iter().map(String::as_str)).collect();
        let prompt_texts: Vec<&str> = prompts.iter().map(|p| p.prompt.as_str()).collect();
        let mut rm_scores = models.rewards.score(&pairs)?;
        let mut constraint_metrics = Vec::new();
        if let Some(costs) = models.rewards.costs(&pairs)? {
            let reward = rm_scores.iter().map(|&r| r as f64).sum::<f64>() / rm_scores.len().max(1) as f64;
            let constrained = run.state.lagrangian.apply(&rm_scores, &costs, &config.constraint);
            constraint_metrics = vec![
                ("constraint/reward", reward),
                ("constraint/cost", constrained.mean_cost),
                ("constraint/lambda", constrained.lambda),
                ("constraint/satisfied", constrained.satisfied),
            ];
            rm_scores = constrained.scores;
        }
        let shapes: Vec<ResponseShape> =
            samples.iter().map(|s| ResponseShape { tokens: s.response_tokens.len(), has_eos: s.has_eos }).collect();
        let scores = shape_scores(&rm_scores, &shapes, &config.reward, &mut run.state.moments);
        let scoring_s = scoring_began.elapsed().as_secs_f64();

        let device = models.policy.device();
        let mask = &exp.layout.response_mask;
        let score_t = Tensor::from_slice(&scores).to_device(device);
        let beta = run.state.kl.beta;
        let kl_tokens = config.kl.estimator.per_token(&exp.logprobs, &exp.ref_logprobs) * mask;
        let kl_seq = kl_tokens.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let non_score = &kl_tokens * -beta;
        let mean_kl = kl_seq.mean(Kind::Float).double_value(&[]);

        let training_began = Instant::now();
        let rm_t = Tensor::from_slice(&rm_scores);
        let nonfinite = [
            ("reward", &rm_t),
            ("reward", &score_t),
            ("log-probs", &exp.logprobs),
            ("reference log-probs", &exp.ref_logprobs),
            ("values", &exp.values),
        ]
        .into_iter()
        .find(|(_, t)| !all_finite(t))
        .map(|(name, _)| name);
        let (stats, explained) = match nonfinite {
            Some(quantity) => {
                guard(config.on_nonfinite, quantity, step)?;
                run.state.skipped += 1;
                (UpdateStats::default(), f64::NAN)
            }
            None => {
                let targets = advantages(config, &exp, &score_t, &non_score, &kl_seq, beta)?;
                let explained = match config.advantage {
                    AdvantageKind::Gae => explained_variance(&exp.values, &targets.returns, mask),
                    _ => f64::NAN,
                };
                run.state.kl.update(mean_kl, samples.len());
                (run.update(&exp, &targets, step)?, explained)
            }
        };
        let training_s = training_began.elapsed().as_secs_f64();
        let seconds = began.elapsed().as_secs_f64();

        let scored =
            Scored { samples: &samples, prompts: &prompt_texts, texts: &texts, scores: &scores, kl_seq: &kl_seq };
        rollouts.extend(rollout_rows(job, &exp, &scored, step)?);
        rollouts.flush()?;

        let n = samples.len() as f64;
        let mean_score = scores.iter().map(|&x| x as f64).sum::<f64>() / n;
        let timings = Timings { generation_s, scoring_s, training_s, seconds };
        let mut values_out =
            iteration_metrics(&run, &exp, &scored, &rm_scores, &non_score, &stats, (beta, explained), &timings)?;
        values_out.extend(constraint_metrics);
        let wall_time = now();
        metrics.extend(values_out.iter().map(|&(name, value)| Metric {
            stage: STAGE_NAME.into(),
            step,
            name: name.into(),
            value,
            wall_time,
        }));
        metrics.flush()?;
        pb.set_position(step);
        pb.set_message(format!("score {mean_score:.3} kl {mean_kl:.2}"));
        pb.suspend(|| {
            tracing::info!(
                iteration = step,
                score = mean_score,
                kl = mean_kl,
                beta,
                length = exp.layout.response_lens.iter().sum::<i64>() as f64 / n,
                seconds,
                "ppo"
            )
        });
        (summary.score, summary.kl) = (mean_score, mean_kl);

        let every = config.train.checkpoint_every;
        if every > 0 && step % every == 0 && step < total {
            run.save_checkpoint(step, &stream)?;
        }
    }
    pb.finish_and_clear();
    if !train_state::all_finite(&checkpoint_stores(models)) {
        return Err(Error::non_finite("parameters", "iteration", total));
    }
    models.policy.save_pretrained(job.dir.final_dir())?;
    summary.iterations = total;
    summary.beta = run.state.kl.beta;
    summary.skipped = run.state.skipped;
    Ok(summary)
}

/// One iteration's samples with what scoring made of them.
struct Scored<'s> {
    samples: &'s [Sample],
    /// The prompts' and responses' texts, the shaped scores and each response's KL to the reference.
    prompts: &'s [&'s str],
    texts: &'s [String],
    scores: &'s [f32],
    kl_seq: &'s Tensor,
}

/// Where an iteration's time went, in seconds.
struct Timings {
    generation_s: f64,
    scoring_s: f64,
    training_s: f64,
    seconds: f64,
}

/// The rollout rows of iteration `step`.
fn rollout_rows(job: &TrainJob<'_>, exp: &Experience, scored: &Scored<'_>, step: u64) -> Result<Vec<Rollout>> {
    let per_row = |t: &Tensor| -> Result<Vec<Vec<f32>>> {
        let flat = Vec::<f32>::try_from(t.to_kind(Kind::Float).to_device(tch::Device::Cpu).contiguous().view([-1]))?;
        let n = exp.layout.response_width() as usize;
        Ok(exp
            .layout
            .response_lens
            .iter()
            .enumerate()
            .map(|(i, &l)| flat[i * n..i * n + l as usize].to_vec())
            .collect())
    };
    let (logprobs, ref_logprobs, values) =
        (per_row(&exp.logprobs)?, per_row(&exp.ref_logprobs)?, per_row(&exp.values)?);
    let kl_rows = Vec::<f32>::try_from(scored.kl_seq.to_device(tch::Device::Cpu))?;
    let to_i32 = |v: &[i64]| v.iter().map(|&t| t as i32).collect::<Vec<i32>>();
    Ok(scored
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| Rollout {
            id: format!("{}-it{step:05}-{i:04}", job.prompts.records[s.prompt].id),
            prompt: scored.prompts[i].to_string(),
            response: scored.texts[i].clone(),
            prompt_tokens: to_i32(&s.prompt_tokens),
            response_tokens: to_i32(&s.response_tokens),
            logprobs: logprobs[i].clone(),
            ref_logprobs: ref_logprobs[i].clone(),
            values: values[i].clone(),
            reward: scored.scores[i],
            kl: kl_rows[i],
            step: step as u32,
        })
        .collect())
}

/// The metric rows of an iteration (names as TRL's `PPOTrainer` logs them where it has them).
#[allow(clippy::too_many_arguments)]
fn iteration_metrics(
    run: &Loop<'_>,
    exp: &Experience,
    scored: &Scored<'_>,
    rm_scores: &[f32],
    non_score: &Tensor,
    stats: &UpdateStats,
    (beta, explained): (f64, f64),
    timings: &Timings,
) -> Result<Vec<(&'static str, f64)>> {
    let (models, samples, mask) = (run.models, scored.samples, &exp.layout.response_mask);
    let Timings { generation_s, scoring_s, training_s, seconds } = *timings;
    let n = samples.len() as f64;
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let mean_score = mean(scored.scores);
    let mean_kl = scored.kl_seq.mean(Kind::Float).double_value(&[]);
    let non_score_reward = non_score.sum(Kind::Float).double_value(&[]) / n;
    let tokens: i64 = exp.layout.prompt_lens.iter().chain(&exp.layout.response_lens).sum();
    let per_step = |x: f64| if stats.steps > 0 { x / stats.steps as f64 } else { f64::NAN };
    let mut values_out = vec![
        ("objective/score", mean_score),
        ("objective/rm_score", mean(rm_scores)),
        ("objective/non_score_reward", non_score_reward),
        ("objective/rlhf_reward", mean_score + non_score_reward),
        ("objective/kl", mean_kl),
        ("objective/kl_coef", beta),
        ("objective/entropy", masked_mean(&exp.entropy, mask).double_value(&[])),
        ("policy/approx_kl", per_step(stats.approx_kl)),
        ("policy/clip_fraction", per_step(stats.clip_fraction)),
        ("loss/policy", per_step(stats.policy_loss)),
        ("train/grad_norm", per_step(stats.grad_norm)),
        ("train/updates", stats.steps as f64),
        ("train/skipped", run.state.skipped as f64),
        ("response/length", exp.layout.response_lens.iter().sum::<i64>() as f64 / n),
        ("response/eos_rate", samples.iter().filter(|s| s.has_eos).count() as f64 / n),
        ("perf/tokens_per_s", tokens as f64 / seconds.max(1e-9)),
        ("perf/samples_per_s", n / seconds.max(1e-9)),
        ("time/generation_s", generation_s),
        ("time/scoring_s", scoring_s),
        ("time/training_s", training_s),
        ("time/generation_share", generation_s / seconds.max(1e-9)),
    ];
    if !matches!(models.critic, Critic::None) {
        values_out.push(("loss/value", per_step(stats.value_loss)));
        values_out.push(("value/clip_fraction", per_step(stats.value_clip_fraction)));
        values_out.push(("value/explained_variance", explained));
    }
    if run.job.config.ppo.entropy_coef > 0.0 {
        values_out.push(("policy/entropy", per_step(stats.entropy)));
    }
    if let Some(judge) = &models.gold_judge {
        let pairs: Vec<(&str, &str)> =
            scored.prompts.iter().copied().zip(scored.texts.iter().map(String::as_str)).collect();
        let gold = judge.score(&pairs)?.unwrap_or_default();
        values_out.push(("objective/gold", gold.iter().sum::<f64>() / n));
    }
    if let Some(bytes) = peak_memory_bytes(models.policy.device()) {
        values_out.push(("perf/peak_memory_bytes", bytes as f64));
    }
    Ok(values_out)
}

/// Advantages and returns of the iteration: GAE (or REINFORCE++'s normalised returns-to-go) over
/// `−β·KL` per token plus the score at the last token, or a group baseline over `score − β·ΣKL`
/// per sequence.
fn advantages(
    config: &PpoConfig,
    exp: &Experience,
    scores: &Tensor,
    non_score: &Tensor,
    kl_seq: &Tensor,
    beta: f64,
) -> Result<Targets> {
    let cfg = &config.ppo;
    let mask = &exp.layout.response_mask;
    let group = cfg.group_size as i64;
    let sequence_reward = || scores - kl_seq * beta;
    // Per token: the KL penalty, and the score at the last response token.
    let token_rewards = || {
        let last = Tensor::from_slice(&exp.layout.response_lens).to_device(mask.device()) - 1;
        non_score + Tensor::zeros_like(mask).scatter(1, &last.unsqueeze(1), &scores.unsqueeze(1))
    };
    let whiten = |a: Tensor| if cfg.whiten_advantages { masked_whiten(&a, mask, true) } else { a };
    Ok(match config.advantage {
        AdvantageKind::Gae => {
            let (advantages, returns) = gae(&token_rewards(), &exp.values, mask, cfg.gamma, cfg.lambda);
            Targets { advantages: whiten(advantages), returns }
        }
        AdvantageKind::ReinforcePp => {
            // Returns-to-go: GAE with no values and λ = 1; always normalised over the batch.
            let (returns, _) = gae(&token_rewards(), &Tensor::zeros_like(mask), mask, cfg.gamma, 1.0);
            Targets { advantages: masked_whiten(&returns, mask, true), returns: Tensor::zeros_like(mask) }
        }
        AdvantageKind::Grpo => Targets {
            advantages: per_token(&grpo(&sequence_reward(), group, cfg.grpo_eps), mask),
            returns: Tensor::zeros_like(mask),
        },
        AdvantageKind::DrGrpo => Targets {
            advantages: per_token(&dr_grpo(&sequence_reward(), group), mask),
            returns: Tensor::zeros_like(mask),
        },
        AdvantageKind::Rloo => Targets {
            advantages: whiten(per_token(&rloo(&sequence_reward(), group), mask)),
            returns: Tensor::zeros_like(mask),
        },
    })
}
