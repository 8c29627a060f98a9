//! Stage 3 end to end: `<run-dir>/ppo/` from the SFT policy, the reward model(s) and prompts.
//!
//! Everything is read and checked before anything is written: the config, the policy and reference
//! checkpoints and their tokenizer, the reward models, the critic's starting point and the prompts.
//! Then `ppo/config.toml` is written and the loop ([`crate::trainer`]) runs, resuming from the newest
//! checkpoint when there is one. A stage whose `final/` exists is skipped.

use std::path::Path;

use rlhf_data::{read_records, Prompt};
use rlhf_model::device::seed_everything;
use rlhf_model::{CausalLm, SequenceClassifier, Tokenizer, ValueHead};
use rlhf_train::config::ensure;
use rlhf_train::stage::require_checkpoint_dir;
use rlhf_train::{resolve, StageDir};

use crate::config::{AdvantageKind, CriticKind, PpoConfig};
use crate::reward::RewardModels;
use crate::rollout::Critic;
use crate::trainer::{self, Models, Prompts, TrainJob};
use crate::{Error, Result};
use crate::{Outcome, RunOptions, STAGE_DIR};

fn check_config(config: &PpoConfig) -> Result<()> {
    let (ppo, generation, kl, train) = (&config.ppo, &config.generation, &config.kl, &config.train);
    ensure(
        ppo.iterations > 0 && ppo.prompts_per_iteration > 0 && ppo.group_size > 0 && ppo.epochs > 0,
        "ppo.iterations, ppo.prompts_per_iteration, ppo.group_size and ppo.epochs must be at least 1",
    )?;
    ensure(
        ppo.minibatch_size > 0 && ppo.micro_batch_size > 0 && ppo.rollout_batch_size > 0,
        "ppo.minibatch_size, ppo.micro_batch_size and ppo.rollout_batch_size must be at least 1",
    )?;
    ensure(
        !config.advantage.needs_groups() || ppo.group_size >= 2,
        "advantage = \"grpo\", \"dr_grpo\" and \"rloo\" need ppo.group_size >= 2 samples per prompt",
    )?;
    ensure(
        ppo.clip_ratio_high == 0.0 || ppo.clip_ratio_high >= ppo.clip_ratio,
        "ppo.clip_ratio_high (DAPO's clip-higher) must be 0 (= clip_ratio) or at least ppo.clip_ratio",
    )?;
    ensure(
        ppo.clip_ratio > 0.0
            && ppo.clip_value > 0.0
            && (0.0..=1.0).contains(&ppo.gamma)
            && (0.0..=1.0).contains(&ppo.lambda),
        "ppo.clip_ratio and ppo.clip_value must be > 0, ppo.gamma and ppo.lambda in [0, 1]",
    )?;
    ensure(
        generation.max_new_tokens >= 1 && generation.temperature > 0.0,
        "generation.max_new_tokens must be at least 1 and generation.temperature > 0",
    )?;
    ensure(
        kl.beta >= 0.0 && (!kl.adaptive || (kl.target > 0.0 && kl.horizon > 0.0)),
        "kl.beta must be >= 0; an adaptive controller needs kl.target > 0 and kl.horizon > 0",
    )?;
    ensure(train.lr > 0.0 && train.max_grad_norm >= 0.0, "train.lr must be > 0 and train.max_grad_norm >= 0")?;
    ensure(config.data.max_prompt_len > 0, "data.max_prompt_len must be at least 1")?;
    let c = &config.constraint;
    ensure(
        c.threshold.is_finite() && c.lambda_lr >= 0.0 && (0.0..=c.lambda_max).contains(&c.lambda_init),
        "constraint.threshold must be finite, constraint.lambda_lr >= 0 and 0 <= constraint.lambda_init <= constraint.lambda_max",
    )?;
    Ok(())
}

/// The prompts, tokenized and cut to their last `max_len` tokens.
fn read_prompts(config: &PpoConfig, run_dir: &Path, tokenizer: &Tokenizer, max_len: usize) -> Result<Prompts> {
    let path = resolve(run_dir, &config.data.prompts);
    if !path.is_file() {
        return Err(Error::File {
            path,
            message: "data.prompts: prompts table not found (for the embedded task, `rlhf-task generate` writes one)"
                .into(),
        });
    }
    let records: Vec<Prompt> = read_records(&path)?;
    if records.is_empty() {
        return Err(Error::Invalid(format!("data.prompts {:?} holds no prompts", config.data.prompts)));
    }
    let mut tokens = tokenizer.encode_generation_prompts(&records)?;
    if let Some((_, record)) = tokens.iter().zip(&records).find(|(row, _)| row.is_empty()) {
        return Err(Error::Invalid(format!("prompt {:?} has no tokens", record.id)));
    }
    let cut = rlhf_model::keep_last_tokens(&mut tokens, max_len);
    if cut > 0 {
        tracing::warn!(
            cut,
            max_len,
            "prompts longer than data.max_prompt_len (or the model's room) keep their last tokens"
        );
    }
    Ok(Prompts { records, tokens })
}

/// Trains `<run_dir>/ppo/` (see the module doc).
pub fn run(config: &PpoConfig, run_dir: &Path, options: &RunOptions) -> Result<Outcome> {
    let dir = StageDir::new(run_dir, STAGE_DIR);
    if let Some(done) = dir.already_done() {
        return Ok(done);
    }
    check_config(config)?;
    if config.train.threads > 0 {
        tch::set_num_threads(config.train.threads as i32);
    }
    let config_hash = dir.config_hash(config)?;
    let gold_judge = rlhf_train::judges::gold_judge(&config.gold_judge, config.seed)?;
    let placement = options.placement;

    let policy_dir = resolve(run_dir, &config.model.policy);
    require_checkpoint_dir(&policy_dir, "model.policy", "run `rlhf-sft` first")?;
    let tokenizer = Tokenizer::from_dir(&policy_dir)?.with_chat_mode(config.model.chat_template);
    let mut policy = CausalLm::from_pretrained(&policy_dir, placement.device, placement.kind)?;
    tokenizer.check_fits_embedding(policy.config().vocab_size())?;
    seed_everything(config.seed);
    let reference_dir = resolve(run_dir, &config.model.reference);
    let reference = match config.lora.to_lora() {
        Some(lora) if reference_dir == policy_dir => {
            policy.add_lora(&lora)?;
            None
        }
        lora => {
            if let Some(lora) = lora {
                policy.add_lora(&lora)?;
            }
            require_checkpoint_dir(&reference_dir, "model.reference", "the SFT model")?;
            let mut reference = CausalLm::from_pretrained(&reference_dir, placement.device, placement.kind)?;
            reference.freeze();
            if reference.config().vocab_size() != policy.config().vocab_size() {
                return Err(Error::Invalid(format!(
                    "model.reference has a vocabulary of {} tokens, the policy {}: they must share a tokenizer",
                    reference.config().vocab_size(),
                    policy.config().vocab_size()
                )));
            }
            Some(reference)
        }
    };
    let rewards =
        RewardModels::load(&config.reward, &config.constraint, run_dir, config.model.chat_template, placement)?;
    let critic = match (config.advantage, config.critic) {
        (AdvantageKind::Gae, CriticKind::Separate) => {
            let critic_dir = if config.model.critic.as_os_str().is_empty() {
                let first = resolve(run_dir, &config.reward.models[0].path);
                rlhf_model::reward::reward_members(&first)?.0.remove(0)
            } else {
                resolve(run_dir, &config.model.critic)
            };
            require_checkpoint_dir(&critic_dir, "model.critic", "a reward-model checkpoint")?;
            let critic = SequenceClassifier::from_pretrained(&critic_dir, placement.device, placement.kind)?;
            // The critic reads the policy's token ids: it must embed the policy's vocabulary.
            if critic.config().vocab_size() != policy.config().vocab_size() {
                return Err(Error::File {
                    path: critic_dir,
                    message: format!(
                        "model.critic: a vocabulary of {} tokens, the policy's has {}: the critic must share the policy's tokenizer",
                        critic.config().vocab_size(),
                        policy.config().vocab_size()
                    ),
                });
            }
            Critic::Separate(Box::new(critic))
        }
        (AdvantageKind::Gae, CriticKind::Shared) => {
            Critic::Shared(ValueHead::new(policy.config().hidden_size(), placement.device, placement.kind))
        }
        _ => Critic::None,
    };
    let room = (policy.config().max_positions() - config.generation.max_new_tokens).max(1) as usize;
    let prompts = read_prompts(config, run_dir, &tokenizer, config.data.max_prompt_len.min(room))?;
    tracing::info!(prompts = prompts.records.len(), advantage = ?config.advantage, lora = config.lora.enabled, "ppo inputs");

    rlhf_train::stage::single_process_only("PPO")?;
    let _writer = dir.begin(config)?;
    let models = Models { policy, reference, critic, rewards, tokenizer, gold_judge };
    let summary = trainer::train(
        &models,
        &TrainJob { config, dir: &dir, config_hash, prompts: &prompts, progress: options.progress },
    )?;
    Ok(Outcome::Trained { dir: dir.final_dir(), summary })
}
