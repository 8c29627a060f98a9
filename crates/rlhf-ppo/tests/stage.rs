//! The stage end to end on tiny models: reward rises, rollouts and metrics are written every
//! iteration, an interrupted run resumes to the same result, GRPO/RLOO/shared-critic/LoRA runs
//! work, the numerical guard skips or aborts, the entropy bonus raises entropy, a constraint's
//! Lagrange multiplier follows its cost, and a finished stage is skipped.

mod common;

use std::path::Path;

use anyhow::{ensure, Context, Result};
use rlhf_data::{read_records, Metric, Rollout};
use rlhf_ppo::config::{AdvantageKind, ConstraintSection, CriticKind, ImportanceRatio, LossAggregation, OnNonFinite};
use rlhf_ppo::stage::run;
use rlhf_ppo::{Outcome, PpoConfig};

fn metrics(run_dir: &Path) -> Result<Vec<Metric>> {
    Ok(read_records(run_dir.join("ppo/metrics.parquet"))?)
}

fn series(rows: &[Metric], name: &str) -> Vec<f64> {
    rows.iter().filter(|m| m.name == name).map(|m| m.value).collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn ppo_raises_the_reward_and_resumes_to_the_same_result() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = common::fixture(tmp.path(), false);
    let mut config = common::config(&fixture);
    config.ppo.iterations = 10;
    let run_dir = tmp.path().join("run");
    let summary = common::trained(run(&config, &run_dir, &common::cpu())?);
    assert_eq!((summary.iterations, summary.resumed_from, summary.skipped), (10, None, 0));

    let rows = metrics(&run_dir)?;
    let score = series(&rows, "objective/score");
    ensure!(score.len() == 10, "{} score rows", score.len());
    let (first, last) = (score[..3].iter().sum::<f64>() / 3.0, score[7..].iter().sum::<f64>() / 3.0);
    ensure!(last > first + 0.5, "score did not rise: {score:?}");
    let eos_rate = series(&rows, "response/eos_rate");
    ensure!(eos_rate[9] > eos_rate[0] + 0.3, "the eos rate did not rise: {eos_rate:?}");
    for name in [
        "objective/kl",
        "objective/kl_coef",
        "objective/entropy",
        "objective/non_score_reward",
        "policy/approx_kl",
        "policy/clip_fraction",
        "loss/value",
        "value/explained_variance",
        "response/length",
        "response/eos_rate",
        "perf/tokens_per_s",
        "time/generation_share",
        "objective/gold",
        "perf/peak_memory_bytes",
    ] {
        ensure!(series(&rows, name).len() == 10, "no {name} metric");
    }
    assert!(rows.iter().all(|m| m.stage == "ppo"));
    let beta = series(&rows, "objective/kl_coef");
    ensure!(beta[0] == 0.01 && beta[9] != 0.01, "the adaptive controller never moved beta: {beta:?}");

    let rollouts: Vec<Rollout> = read_records(run_dir.join("ppo/rollouts.parquet"))?;
    assert_eq!(rollouts.len(), 160);
    for r in &rollouts {
        assert!(r.response_tokens.len() <= 24 && !r.response_tokens.is_empty());
        assert_eq!(r.logprobs.len(), r.response_tokens.len());
        assert!(r.logprobs.iter().all(|&lp| lp <= 0.0) && r.step >= 1 && r.step <= 10);
    }
    // The first iteration's policy is the reference: their log-probs agree.
    let first_iteration: Vec<&Rollout> = rollouts.iter().filter(|r| r.step == 1).collect();
    assert!(first_iteration.iter().all(|r| r.logprobs.iter().zip(&r.ref_logprobs).all(|(a, b)| (a - b).abs() < 1e-5)));
    assert!(first_iteration.iter().all(|r| r.kl.abs() < 1e-4));

    assert_eq!(files(&run_dir.join("ppo/checkpoints")), ["step-6", "step-8"]);
    assert_eq!(
        files(&run_dir.join("ppo/checkpoints/step-8")),
        ["critic.safetensors", "optimizer.safetensors", "policy.safetensors", "train_state.json"]
    );
    let final_dir = run_dir.join("ppo/final");
    rlhf_model::CausalLm::from_pretrained(&final_dir, tch::Device::Cpu, tch::Kind::Float)?;
    let weights = std::fs::read(final_dir.join("model.safetensors"))?;

    // Interrupted after iteration 8's checkpoint: the rerun resumes there and ends identically.
    std::fs::remove_dir_all(&final_dir)?;
    let resumed = common::trained(run(&config, &run_dir, &common::cpu())?);
    assert_eq!(resumed.resumed_from, Some(8));
    ensure!(std::fs::read(final_dir.join("model.safetensors"))? == weights, "resumed weights differ");
    let again: Vec<Rollout> = read_records(run_dir.join("ppo/rollouts.parquet"))?;
    ensure!(again == rollouts, "resumed rollouts differ");
    assert_eq!(series(&metrics(&run_dir)?, "objective/score"), score);

    // Finished: skipped.
    assert!(matches!(run(&config, &run_dir, &common::cpu())?, Outcome::AlreadyDone(_)));
    // A different config does not resume someone else's checkpoint.
    std::fs::remove_dir_all(&final_dir)?;
    let written = std::fs::read_to_string(run_dir.join("ppo/config.toml"))?;
    let mut other = config.clone();
    other.train.lr = 1e-3;
    let err = run(&other, &run_dir, &common::cpu()).unwrap_err().to_string();
    ensure!(err.contains("different config"), "{err}");
    ensure!(std::fs::read_to_string(run_dir.join("ppo/config.toml"))? == written, "the refused run kept the config");
    Ok(())
}

fn quick(config: &mut PpoConfig) {
    config.ppo.iterations = 3;
    config.train.checkpoint_every = 2;
}

#[test]
fn critic_free_baselines_shared_critic_and_lora() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = common::fixture(tmp.path(), false);
    for (name, advantage, critic, lora, checkpoint_files) in [
        (
            "grpo",
            AdvantageKind::Grpo,
            CriticKind::Separate,
            false,
            vec!["optimizer.safetensors", "policy.safetensors", "train_state.json"],
        ),
        (
            "rloo",
            AdvantageKind::Rloo,
            CriticKind::Separate,
            true,
            vec!["optimizer.safetensors", "policy.safetensors", "train_state.json"],
        ),
        (
            "shared",
            AdvantageKind::Gae,
            CriticKind::Shared,
            true,
            vec!["optimizer.safetensors", "policy.safetensors", "train_state.json", "value_head.safetensors"],
        ),
    ] {
        let mut config = common::config(&fixture);
        quick(&mut config);
        config.advantage = advantage;
        config.critic = critic;
        config.lora.enabled = lora;
        config.lora.target_modules = vec!["q_proj".into(), "v_proj".into()];
        if advantage != AdvantageKind::Gae {
            (config.ppo.prompts_per_iteration, config.ppo.group_size) = (4, 4);
        }
        let run_dir = tmp.path().join(name);
        let summary = common::trained(run(&config, &run_dir, &common::cpu())?);
        ensure!(summary.iterations == 3 && summary.skipped == 0, "{name}: {summary:?}");
        assert_eq!(files(&run_dir.join("ppo/checkpoints/step-2")), checkpoint_files, "{name}");
        let rows = metrics(&run_dir)?;
        ensure!(series(&rows, "train/updates").iter().all(|&u| u == 4.0), "{name}: 2 epochs x 2 minibatches");
        ensure!(series(&rows, "loss/value").is_empty() == (advantage != AdvantageKind::Gae), "{name}");
        let rollouts: Vec<Rollout> = read_records(run_dir.join("ppo/rollouts.parquet"))?;
        assert_eq!(rollouts.len(), 48, "{name}");
        if advantage != AdvantageKind::Gae {
            // Groups of 4 samples share a prompt.
            for group in rollouts.chunks(4) {
                assert!(group.iter().all(|r| r.prompt == group[0].prompt), "{name}");
            }
        }
        let policy =
            rlhf_model::CausalLm::from_pretrained(run_dir.join("ppo/final"), tch::Device::Cpu, tch::Kind::Float)
                .with_context(|| format!("{name}: final policy"))?;
        assert!(policy.lora().is_none(), "adapters are merged on save");
    }
    Ok(())
}

/// Dr. GRPO (no std, constant normaliser), DAPO's clip-higher, GSPO's sequence ratio and
/// REINFORCE++ (one sample per prompt) each run their iterations with finite losses and move the
/// policy.
#[test]
fn the_modern_critic_free_family_trains() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = common::fixture(tmp.path(), false);
    let variants: [(&str, AdvantageKind, f64, ImportanceRatio, LossAggregation); 4] = [
        ("dr_grpo", AdvantageKind::DrGrpo, 0.0, ImportanceRatio::Token, LossAggregation::Constant),
        ("dapo", AdvantageKind::Grpo, 0.28, ImportanceRatio::Token, LossAggregation::TokenMean),
        ("gspo", AdvantageKind::Grpo, 0.0, ImportanceRatio::Sequence, LossAggregation::TokenMean),
        ("reinforce_pp", AdvantageKind::ReinforcePp, 0.0, ImportanceRatio::Token, LossAggregation::TokenMean),
    ];
    for (name, advantage, clip_high, importance, aggregation) in variants {
        let mut config = common::config(&fixture);
        quick(&mut config);
        config.advantage = advantage;
        if advantage.needs_groups() {
            (config.ppo.prompts_per_iteration, config.ppo.group_size) = (4, 4);
        }
        config.ppo.clip_ratio_high = clip_high;
        config.ppo.importance_ratio = importance;
        config.ppo.loss_aggregation = aggregation;
        let run_dir = tmp.path().join(name);
        let summary = common::trained(run(&config, &run_dir, &common::cpu())?);
        ensure!(summary.iterations == 3 && summary.skipped == 0, "{name}: {summary:?}");
        let rows = metrics(&run_dir)?;
        let losses = series(&rows, "loss/policy");
        ensure!(losses.len() == 3 && losses.iter().all(|l| l.is_finite()), "{name}: {losses:?}");
        let moved = series(&rows, "policy/approx_kl");
        ensure!(moved.iter().skip(1).any(|&kl| kl > 0.0), "{name}: the policy never moved: {moved:?}");
    }
    Ok(())
}

#[test]
fn the_numerical_guard_skips_or_aborts() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = common::fixture(tmp.path(), true);
    let mut config = common::config(&fixture);
    quick(&mut config);
    // The separate critic would start from the broken reward model: use a value head.
    config.critic = CriticKind::Shared;

    config.on_nonfinite = OnNonFinite::Abort;
    let aborted = tmp.path().join("abort");
    let err = run(&config, &aborted, &common::cpu()).unwrap_err().to_string();
    assert_eq!(
        err,
        "non-finite reward at iteration 1; stopped without saving it (lower train.lr, or set on_nonfinite = \"skip\")"
    );
    assert!(!aborted.join("ppo/final").exists() && !aborted.join("ppo/checkpoints").exists());

    config.on_nonfinite = OnNonFinite::Skip;
    let skipped = tmp.path().join("skip");
    let summary = common::trained(run(&config, &skipped, &common::cpu())?);
    assert_eq!(summary.skipped, 3);
    assert_eq!(series(&metrics(&skipped)?, "train/updates"), [0.0, 0.0, 0.0]);
    // No update happened: the saved policy is the starting one.
    let start = tch::Tensor::read_safetensors(fixture.policy.join("model.safetensors"))?;
    let end: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(skipped.join("ppo/final/model.safetensors"))?.into_iter().collect();
    for (name, tensor) in start {
        assert!(tensor.equal(&end[&name]), "{name} changed");
    }
    Ok(())
}

#[test]
fn a_critic_of_another_vocabulary_is_refused_before_anything_is_written() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = common::fixture(tmp.path(), false);
    let other = rlhf_train::testing::task_tokenizer(2, 280);
    let critic_dir = tmp.path().join("critic");
    let critic = rlhf_model::SequenceClassifier::new(
        rlhf_train::testing::tiny_llama(&other, 1, 128),
        tch::Device::Cpu,
        tch::Kind::Float,
    )?;
    critic.save_pretrained(&critic_dir)?;
    let mut config = common::config(&fixture);
    config.model.critic = critic_dir.clone();
    let run_dir = tmp.path().join("run");
    let err = run(&config, &run_dir, &common::cpu()).unwrap_err().to_string();
    let expected = format!("{}: model.critic: a vocabulary of {} tokens", critic_dir.display(), other.vocab_size());
    ensure!(err.starts_with(&expected) && err.contains("must share the policy's tokenizer"), "{err}");
    ensure!(!run_dir.join("ppo").exists(), "a refused critic left {}", run_dir.join("ppo").display());
    Ok(())
}

/// The constraint on the fixture: its reward model, negated, is the cost.
fn constrained(fixture: &common::Fixture, threshold: f64) -> PpoConfig {
    let mut config = common::config(fixture);
    config.ppo.iterations = 4;
    config.train.checkpoint_every = 2;
    config.constraint = ConstraintSection {
        cost_model: fixture.reward.clone(),
        threshold,
        lambda_init: 0.5,
        lambda_lr: 0.25,
        lambda_max: 50.0,
    };
    config
}

#[test]
fn the_lagrange_multiplier_rises_while_the_cost_exceeds_its_threshold_and_resumes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = common::fixture(tmp.path(), false);
    for (threshold, rises) in [(-5.0, true), (5.0, false)] {
        let config = constrained(&fixture, threshold);
        let run_dir = tmp.path().join(format!("run{threshold}"));
        common::trained(run(&config, &run_dir, &common::cpu())?);
        let rows = metrics(&run_dir)?;
        let (cost, lambda) = (series(&rows, "constraint/cost"), series(&rows, "constraint/lambda"));
        ensure!(cost.len() == 4 && lambda.len() == 4, "constraint metrics missing: {cost:?} {lambda:?}");
        // λ_k = clip(λ_{k−1} + η·(cost_k − d), 0, λ_max), from λ_0 = 0.5.
        let mut expected = 0.5f64;
        for (k, (&c, &l)) in cost.iter().zip(&lambda).enumerate() {
            expected = (expected + 0.25 * (c - threshold)).clamp(0.0, 50.0);
            ensure!((l - expected).abs() < 1e-9, "iteration {}: λ {l}, expected {expected}", k + 1);
        }
        let satisfied = series(&rows, "constraint/satisfied");
        if rises {
            ensure!(lambda.windows(2).all(|w| w[1] > w[0]) && lambda[0] > 0.5, "λ did not rise: {lambda:?}");
            ensure!(satisfied.iter().all(|&s| s == 0.0), "every cost is above −5: {satisfied:?}");
        } else {
            ensure!(lambda[3] == 0.0, "λ did not fall to 0 under a slack constraint: {lambda:?}");
            ensure!(satisfied.iter().all(|&s| s == 1.0), "every cost is below 5: {satisfied:?}");
        }
        ensure!(series(&rows, "constraint/reward").len() == 4, "no constraint/reward metric");

        // Killed after iteration 2's checkpoint: λ comes back from it.
        std::fs::remove_dir_all(run_dir.join("ppo/final"))?;
        let resumed = common::trained(run(&config, &run_dir, &common::cpu())?);
        ensure!(resumed.resumed_from == Some(2), "{resumed:?}");
        ensure!(series(&metrics(&run_dir)?, "constraint/lambda") == lambda, "resumed λ differs");
    }
    let mut bad = constrained(&fixture, 0.0);
    bad.constraint.lambda_init = -1.0;
    let err = run(&bad, &tmp.path().join("bad"), &common::cpu()).unwrap_err().to_string();
    ensure!(err.contains("constraint.lambda_init"), "{err}");
    Ok(())
}

#[test]
fn the_entropy_bonus_keeps_the_policy_more_random() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = common::fixture(tmp.path(), false);
    let mut entropies = Vec::new();
    for coef in [0.0, 1.0] {
        let mut config = common::config(&fixture);
        config.ppo.iterations = 4;
        config.train.checkpoint_every = 0;
        config.ppo.entropy_coef = coef;
        let run_dir = tmp.path().join(format!("run{coef}"));
        common::trained(run(&config, &run_dir, &common::cpu())?);
        let rows = metrics(&run_dir)?;
        ensure!(series(&rows, "policy/entropy").len() == if coef > 0.0 { 4 } else { 0 }, "policy/entropy rows");
        // The rollouts' entropy after the first update.
        entropies.push(series(&rows, "objective/entropy")[1..].iter().sum::<f64>() / 3.0);
    }
    ensure!(entropies[1] > entropies[0], "the bonus did not raise the entropy: {entropies:?}");
    Ok(())
}
