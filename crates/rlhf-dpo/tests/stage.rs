//! The stage through the library on a tiny policy: rewards/accuracies rise, the reference cache is
//! reused and invalidated, LoRA uses the adapters-off reference, live and cached references agree,
//! SimPO needs none, KTO trains on unpaired labels, online rounds sample and label, a finished stage
//! skips.

mod common;

use std::path::Path;

use anyhow::Result;
use rlhf_data::{read_records, Comparison, Metric};
use rlhf_dpo::config::{Labeler, ReferenceMode};
use rlhf_dpo::reference::{cache_path, CHOSEN_COLUMN, KEY_METADATA, REJECTED_COLUMN};
use rlhf_dpo::{stage, LossKind, Outcome};
use rlhf_model::CausalLm;

fn metric(rows: &[Metric], name: &str) -> Vec<f64> {
    rows.iter().filter(|m| m.name == name).map(|m| m.value).collect()
}

fn metrics(run: &Path) -> Result<Vec<Metric>> {
    Ok(read_records(run.join("dpo/metrics.parquet"))?)
}

#[test]
fn training_raises_reward_accuracy_and_margins_then_skips_once_finished() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"), 1);
    let data = common::write_comparisons(&tmp.path().join("comparisons.parquet"), &common::comparisons(200));
    let mut config = common::config(&policy, &data);
    // A random policy cannot generalise from 200 pairs: evaluate on the training pairs (the fit).
    config.data.heldout = data.clone();
    let run = tmp.path().join("run");
    let summary = common::trained(stage::run(&config, &run, &common::cpu())?);

    let rows = metrics(&run)?;
    assert!(rows.iter().all(|m| m.stage == "dpo"));
    for name in [
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "tokens_per_s",
        "pairs_per_s",
        "peak_memory_bytes",
    ] {
        assert!(!metric(&rows, name).is_empty(), "no {name} rows");
    }
    let accuracy = metric(&rows, "rewards/accuracies");
    let n = accuracy.len();
    assert!(n >= 8, "{accuracy:?}");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(mean(&accuracy[n - 3..]) > mean(&accuracy[..3]) + 0.2, "training accuracy did not rise: {accuracy:?}");
    let margins = metric(&rows, "rewards/margins");
    assert!(mean(&margins[n - 3..]) > mean(&margins[..3]), "{margins:?}");
    let (before, after) = (summary.train.eval_before.unwrap(), summary.train.eval_after.unwrap());
    assert!(before.margin.abs() < 1e-5, "the policy starts as its own reference: {before:?}");
    assert!(after.loss < before.loss - 0.1, "loss {} -> {}", before.loss, after.loss);
    assert!(after.accuracy > 0.8, "{after:?}");
    assert_eq!(metric(&rows, "eval_loss").len(), 2);

    let model = CausalLm::from_pretrained(run.join("dpo/final"), tch::Device::Cpu, tch::Kind::Float)?;
    assert!(model.source_dir().unwrap().join("tokenizer.json").is_file(), "tokenizer saved with the policy");
    assert!(run.join("dpo/config.toml").is_file());
    assert!(matches!(stage::run(&config, &run, &common::cpu())?, Outcome::AlreadyDone(_)));
    Ok(())
}

#[test]
fn the_reference_cache_is_reused_across_runs_and_invalidated_by_new_data_or_reference() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"), 1);
    let rows = common::comparisons(48);
    let data = common::write_comparisons(&tmp.path().join("comparisons.parquet"), &rows);
    let mut config = common::config(&policy, &data);
    config.train.max_steps = 2;
    let passes = |config: &rlhf_dpo::DpoConfig, run: &str| -> Result<usize> {
        Ok(common::trained(stage::run(config, &tmp.path().join(run), &common::cpu())?).reference_passes)
    };

    assert_eq!(passes(&config, "first")?, 1);
    let cache = cache_path(&data, false);
    assert_eq!(cache, tmp.path().join("comparisons.ref_logps.parquet"));
    let cached = rlhf_data::read_table::<Comparison>(&cache)?;
    assert_eq!(cached.records, rows, "the cache keeps the comparisons' columns");
    let extra: Vec<String> = cached.extra_columns().iter().map(|f| f.name().clone()).collect();
    assert_eq!(extra, [CHOSEN_COLUMN, REJECTED_COLUMN]);
    assert!(cached.schema.metadata().contains_key(KEY_METADATA));

    assert_eq!(passes(&config, "second")?, 0, "a second run reuses the cache");
    common::write_comparisons(&data, &rows[1..]);
    assert_eq!(passes(&config, "changed-data")?, 1, "changed comparisons invalidate it");
    config.model.reference = common::tiny_policy(&tmp.path().join("other-reference"), 2);
    assert_eq!(passes(&config, "changed-reference")?, 1, "a changed reference invalidates it");
    config.reference.mode = ReferenceMode::OnTheFly;
    assert_eq!(passes(&config, "live")?, 0, "on-the-fly references need no cache");
    Ok(())
}

#[test]
fn live_and_cached_references_train_the_same_and_lora_keeps_one_model() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"), 3);
    let data = common::write_comparisons(&tmp.path().join("comparisons.parquet"), &common::comparisons(64));
    let mut config = common::config(&policy, &data);
    config.data.heldout = data.clone();
    config.train.max_steps = 4;
    let cached = common::trained(stage::run(&config, &tmp.path().join("cached"), &common::cpu())?);
    config.reference.mode = ReferenceMode::OnTheFly;
    let live = common::trained(stage::run(&config, &tmp.path().join("live"), &common::cpu())?);
    let (a, b) = (cached.train.eval_after.unwrap(), live.train.eval_after.unwrap());
    assert!((a.loss - b.loss).abs() < 1e-4 && (a.margin - b.margin).abs() < 1e-4, "{a:?} vs {b:?}");

    for mode in [ReferenceMode::Cached, ReferenceMode::OnTheFly] {
        config.reference.mode = mode;
        config.lora.enabled = true;
        config.lora.target_modules = vec!["q_proj".into(), "v_proj".into()];
        let run = tmp.path().join(format!("lora-{mode:?}"));
        let summary = common::trained(stage::run(&config, &run, &common::cpu())?);
        let (before, after) = (summary.train.eval_before.unwrap(), summary.train.eval_after.unwrap());
        assert!(before.margin.abs() < 1e-5, "fresh adapters change nothing: {before:?}");
        assert!(after.loss < before.loss, "{mode:?}: {before:?} -> {after:?}");
        CausalLm::from_pretrained(run.join("dpo/final"), tch::Device::Cpu, tch::Kind::Float)?;
    }
    Ok(())
}

#[test]
fn simpo_and_orpo_need_no_reference_and_every_loss_trains() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"), 4);
    let data = common::write_comparisons(&tmp.path().join("comparisons.parquet"), &common::comparisons(48));
    for (kind, beta, smoothing, rpo_alpha) in [
        (LossKind::Simpo, 2.0, 0.0, 0.0),
        (LossKind::Orpo, 0.1, 0.0, 0.0),
        (LossKind::Ipo, 0.1, 0.0, 0.0),
        (LossKind::Hinge, 0.5, 0.0, 0.0),
        (LossKind::Sigmoid, 0.1, 0.1, 0.5),
    ] {
        let mut config = common::config(&policy, &data);
        config.data.heldout = data.clone();
        config.train.max_steps = 6;
        config.train.lr = 1e-3;
        config.loss.kind = kind;
        config.loss.beta = beta;
        config.loss.label_smoothing = smoothing;
        config.loss.rpo_alpha = rpo_alpha;
        let summary = common::trained(stage::run(&config, &tmp.path().join(format!("{kind:?}")), &common::cpu())?);
        let (before, after) = (summary.train.eval_before.unwrap(), summary.train.eval_after.unwrap());
        assert!(after.loss < before.loss, "{kind:?}: {before:?} -> {after:?}");
        // The reference-free losses come first: no reference pass has cached anything yet.
        assert_eq!(cache_path(&data, false).exists(), config.loss.needs_reference(), "{kind:?}");
    }
    Ok(())
}

#[test]
fn kto_learns_from_unpaired_labels_in_a_feedback_table_or_unpaired_comparisons() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"), 7);
    let pairs = common::comparisons(100);
    let comparisons = common::write_comparisons(&tmp.path().join("comparisons.parquet"), &pairs);
    let labels = tmp.path().join("feedback.parquet");
    rlhf_data::write_records(&labels, &rlhf_data::unpair_comparisons(&pairs))?;

    let mut config = common::config(&policy, Path::new(""));
    config.loss.kind = LossKind::Kto;
    config.data.feedback = labels.clone();
    config.data.heldout = labels.clone();
    let run = tmp.path().join("feedback-run");
    let summary = common::trained(stage::run(&config, &run, &common::cpu())?);
    let (before, after) = (summary.train.eval_before.unwrap(), summary.train.eval_after.unwrap());
    assert_eq!(before.pairs, 200, "one row per label");
    assert!(before.margin.abs() < 1e-5 && before.kl.unwrap() < 1e-5, "the policy starts as its reference: {before:?}");
    assert!(after.loss < before.loss - 0.05, "{before:?} -> {after:?}");
    assert!(after.chosen_reward > after.rejected_reward + 0.1, "desirable completions gain: {after:?}");
    assert!(after.accuracy > 0.7, "{after:?}");
    let rows = metrics(&run)?;
    assert!(!metric(&rows, "kl").is_empty() && !metric(&rows, "eval_kl").is_empty());
    assert!(cache_path(&labels, true).is_file() && !cache_path(&labels, false).exists());

    // The same labels from the comparisons, unpaired by the stage, train to the same weights.
    config.data.feedback = Default::default();
    config.data.comparisons = comparisons.clone();
    config.data.heldout = comparisons.clone();
    let unpaired = common::trained(stage::run(&config, &tmp.path().join("unpaired-run"), &common::cpu())?);
    assert_eq!(unpaired.train.eval_after, Some(after));
    assert!(cache_path(&comparisons, true).is_file(), "KTO's cache does not replace DPO's");

    // Labels that all share one prompt leave no mismatched completion for the KL estimate.
    let one_prompt: Vec<_> = rlhf_data::unpair_comparisons(&pairs[..1]);
    let lonely = tmp.path().join("one-prompt.parquet");
    rlhf_data::write_records(&lonely, &one_prompt)?;
    config.data.comparisons = Default::default();
    config.data.feedback = lonely;
    config.data.heldout = Default::default();
    let Err(err) = stage::run(&config, &tmp.path().join("lonely"), &common::cpu()) else { panic!("not refused") };
    assert!(err.to_string().contains("two different prompts"), "{err}");
    assert!(!tmp.path().join("lonely/dpo").exists(), "nothing written");
    Ok(())
}

#[test]
fn feedback_tables_are_for_kto_and_exclusive_with_comparisons() {
    let mut config = rlhf_dpo::DpoConfig::default();
    config.data.feedback = "feedback.parquet".into();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("only loss.kind = \"kto\""), "{err}");
    config.loss.kind = LossKind::Kto;
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("set one of data.feedback and data.comparisons"), "{err}");
    config.data.comparisons = Default::default();
    config.validate().unwrap();
}

#[test]
fn online_rounds_sample_label_and_train_on_new_pairs() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"), 5);
    let mut config = common::config(&policy, Path::new(""));
    config.online.rounds = 2;
    config.online.prompts_per_round = 24;
    config.online.batch_size = 12;
    config.online.labeler = Labeler::Panel;
    config.train.max_steps = 3;
    let run = tmp.path().join("run");
    common::trained(stage::run(&config, &run, &common::cpu())?);

    for round in 1..=2 {
        let file = run.join(format!("dpo/rounds/round-{round:03}.parquet"));
        let pairs: Vec<Comparison> = read_records(&file)?;
        assert!(pairs.len() > 12, "round {round}: {} pairs", pairs.len());
        assert!(pairs.iter().all(|c| c.source.as_deref() == Some(&format!("online-round-{round}"))));
        assert!(cache_path(&file, false).is_file(), "round {round}'s reference log-probs are cached beside it");
    }
    let rows = metrics(&run)?;
    assert_eq!(metric(&rows, "online/round"), [1.0, 2.0]);
    let steps: Vec<u64> = rows.iter().filter(|m| m.name == "online/pairs").map(|m| m.step).collect();
    assert_eq!(steps, [0, 3], "each round is labelled where it starts");
    assert_eq!(metric(&rows, "online/gold_score").len(), 2);
    assert_eq!(metric(&rows, "loss").len(), 4, "two logged steps per round");
    Ok(())
}

#[test]
fn a_checkpoint_resumes_under_its_own_config_only() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"), 6);
    let data = common::write_comparisons(&tmp.path().join("comparisons.parquet"), &common::comparisons(48));
    let mut config = common::config(&policy, &data);
    config.train.max_steps = 6;
    config.train.checkpoint_every = 4;
    let run = tmp.path().join("run");
    common::trained(stage::run(&config, &run, &common::cpu())?);
    // As if it had been killed after its checkpoint at step 4.
    std::fs::remove_dir_all(run.join("dpo/final"))?;
    let written = std::fs::read_to_string(run.join("dpo/config.toml"))?;

    let mut changed = config.clone();
    changed.loss.beta = 0.5;
    let err = stage::run(&changed, &run, &common::cpu()).unwrap_err().to_string();
    assert!(err.contains("step-4") && err.contains("different config"), "{err}");
    assert_eq!(std::fs::read_to_string(run.join("dpo/config.toml"))?, written, "the refused run kept the config");

    let resumed = common::trained(stage::run(&config, &run, &common::cpu())?);
    assert_eq!((resumed.train.resumed_from, resumed.train.steps), (Some(4), 6));
    Ok(())
}

#[test]
fn a_reward_model_can_label_the_online_rounds() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"), 7);
    let reward_model = tmp.path().join("rm");
    tch::manual_seed(8);
    rlhf_model::SequenceClassifier::from_causal_lm(&policy, tch::Device::Cpu, tch::Kind::Float)?
        .save_pretrained(&reward_model)?;
    let mut config = common::config(&policy, Path::new(""));
    config.online.rounds = 1;
    config.online.prompts_per_round = 16;
    config.online.labeler = Labeler::RewardModel;
    config.online.reward_model = reward_model;
    config.train.max_steps = 2;
    let run = tmp.path().join("run");
    common::trained(stage::run(&config, &run, &common::cpu())?);

    let pairs: Vec<Comparison> = read_records(run.join("dpo/rounds/round-001.parquet"))?;
    assert!(pairs.len() > 8, "{} pairs", pairs.len());
    assert!(pairs.iter().all(|c| c.annotator.as_deref() == Some("reward-model") && c.margin.is_some_and(|m| m > 0.0)));
    assert_eq!(metric(&metrics(&run)?, "online/reward").len(), 1);
    Ok(())
}

#[test]
fn an_ai_judge_can_label_the_online_rounds() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"), 7);
    let mut config = common::config(&policy, Path::new(""));
    config.online.rounds = 1;
    config.online.prompts_per_round = 8;
    config.online.labeler = Labeler::AiJudge;
    // The policy judges its own samples (a random model: the labels are noise, the path is real).
    config.online.ai_judge.local = policy.clone();
    config.online.ai_judge.constitution =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/constitutions/task.toml");
    config.online.ai_judge.cache = "ai_judge.cache.jsonl".into();
    config.train.max_steps = 2;
    let run = tmp.path().join("run");
    common::trained(stage::run(&config, &run, &common::cpu())?);

    let pairs: Vec<Comparison> = read_records(run.join("dpo/rounds/round-001.parquet"))?;
    assert!(!pairs.is_empty());
    assert!(pairs.iter().all(|c| c.annotator.as_deref() == Some("ai:policy") && c.margin.is_some_and(|m| m >= 0.0)));
    let cached = std::fs::read_to_string(run.join("ai_judge.cache.jsonl"))?;
    assert!(cached.lines().count() >= pairs.len(), "every judged pair is cached");

    // A missing constitution is refused before anything runs.
    config.online.ai_judge.constitution = "nowhere.toml".into();
    let err = stage::run(&config, &tmp.path().join("other"), &common::cpu()).err().unwrap().to_string();
    assert!(err.contains("online.ai_judge.constitution"), "{err}");
    assert!(!tmp.path().join("other/dpo").exists());
    Ok(())
}
