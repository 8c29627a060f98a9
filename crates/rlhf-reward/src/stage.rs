//! Stage 2 end to end: `<run-dir>/rm/` from a policy checkpoint and preference tables.
//!
//! Everything is read and checked before anything is written: the policy checkpoint and its
//! tokenizer (which must fit the embedding), the comparisons/rankings (empty texts are errors
//! naming file and row; identical pairs are dropped and counted), the held-out set and the
//! normalisation samples. Then `rm/config.toml` is written and each ensemble member is trained
//! (seed `seed + i`), normalised so its rewards on the normalisation set have mean 0 (and std 1),
//! and saved. Layout:
//!
//! - one member: `rm/final/` is the reward model, `rm/checkpoints/step-N/` its checkpoints;
//! - N members: `rm/final/member-<i>/` plus `rm/final/ensemble.json`; while training, finished
//!   members wait in `rm/members/member-<i>/` and checkpoints go to `rm/checkpoints/member-<i>/`.
//!
//! `rm/final/` appears atomically once everything is done; a stage that finds it skips.

use std::collections::HashSet;
use std::path::Path;

use rlhf_data::{Judge, PromptText};
use rlhf_model::checkpoint::{read_config, save_dir_atomically, CONFIG_FILE};
use rlhf_model::device::seed_everything;
use rlhf_model::reward::{score_rows, EnsembleManifest, ENSEMBLE_FILE};
use rlhf_model::{RewardNormalization, SequenceClassifier, Tokenizer};
use rlhf_train::config::ensure;
use rlhf_train::MetricsLog;
use rlhf_train::{resolve, StageDir};

use crate::config::RewardConfig;
use crate::data::{tokenize, tokenize_rows, Preference, Preferences};
use crate::model::write_manifest;
use crate::table::read_prompt_responses;
use crate::trainer::{self, in_namespace, HeldOut, TrainJob};
use crate::{Error, Result};
use crate::{Outcome, RunOptions};

/// The stage directory inside a run directory.
pub const STAGE_DIR: &str = "rm";
/// Finished ensemble members waiting for the others, inside the stage directory.
pub const MEMBERS_DIR: &str = "members";
/// Stage name in the metrics rows.
pub const STAGE_NAME: &str = "reward";

/// Name of ensemble member `i`'s directory.
pub fn member_name(i: usize) -> String {
    format!("member-{i}")
}

fn check_config(config: &RewardConfig) -> Result<()> {
    config.train.check()?;
    ensure(config.ensemble.members > 0, "ensemble.members must be at least 1")?;
    ensure(config.ensemble.k >= 0.0, "ensemble.k must be >= 0")?;
    ensure((0.0..1.0).contains(&config.data.heldout_fraction), "data.heldout_fraction must be in [0, 1)")?;
    ensure(
        !config.data.comparisons.is_empty() || !config.data.rankings.is_empty(),
        "no training data: set data.comparisons and/or data.rankings",
    )?;
    ensure(config.model.max_seq_len >= 2, "model.max_seq_len must be at least 2")?;
    ensure((0.0..0.5).contains(&config.loss.label_smoothing), "loss.label_smoothing must be in [0, 0.5)")?;
    Ok(())
}

/// Per held-out pair (in order): whether the gold judge prefers the labelled-better response
/// (`None` for a gold tie); `None` overall without a gold judge or held-out pairs.
fn gold_labels(judge: Option<&dyn Judge>, heldout: &[Preference]) -> Result<Option<Vec<Option<bool>>>> {
    let Some(judge) = judge.filter(|_| !heldout.is_empty()) else { return Ok(None) };
    let items: Vec<(&str, &str)> =
        heldout.iter().flat_map(|p| p.responses.iter().map(|r| (p.prompt.text.as_str(), r.as_str()))).collect();
    let scores = rlhf_train::judges::scores(judge, &items)?;
    let mut offset = 0;
    let mut labels = Vec::new();
    for p in heldout {
        let gold = &scores[offset..offset + p.responses.len()];
        labels.extend(p.pairs.iter().map(|pair| {
            let (better, worse) = (gold[pair.better], gold[pair.worse]);
            (better != worse).then_some(better > worse)
        }));
        offset += p.responses.len();
    }
    Ok(Some(labels))
}

/// The distinct `(prompt, response)` texts of the training preferences.
fn training_responses(items: &[Preference]) -> Vec<(PromptText, String)> {
    let mut seen = HashSet::new();
    items
        .iter()
        .flat_map(|p| p.responses.iter().map(move |r| (p.prompt.clone(), r.clone())))
        .filter(|pair| seen.insert(pair.clone()))
        .collect()
}

/// Shift (and scale) making `rows`' raw rewards mean 0 (and std 1, population).
fn normalization(
    model: &SequenceClassifier,
    rows: &[Vec<i64>],
    scale: bool,
    batch_size: usize,
) -> Result<RewardNormalization> {
    let raw = score_rows(model, rows, batch_size)?;
    let n = raw.len().max(1) as f64;
    let mean = raw.iter().map(|&r| r as f64).sum::<f64>() / n;
    let std = (raw.iter().map(|&r| (r as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    Ok(RewardNormalization { shift: mean, scale: if scale { std.max(1e-6) } else { 1.0 } })
}

fn copy_flat_dir(from: &Path, to: &Path) -> rlhf_model::Result<()> {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> rlhf_model::Error + '_ {
        move |source| rlhf_model::Error::Io { path: path.to_path_buf(), source }
    }
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let path = entry.map_err(io(from))?.path();
        let target = to.join(path.file_name().unwrap_or_default());
        std::fs::copy(&path, &target).map_err(io(&path))?;
    }
    Ok(())
}

/// Trains the reward model (or ensemble) of `config` into `<run_dir>/rm/`.
pub fn run(config: &RewardConfig, run_dir: &Path, options: &RunOptions) -> Result<Outcome> {
    let stage = StageDir::new(run_dir, STAGE_DIR);
    if let Some(done) = stage.already_done() {
        return Ok(done);
    }
    let (dir, final_dir) = (&stage.root, stage.final_dir());
    check_config(config)?;
    let config_hash = stage.config_hash(config)?;
    let gold_judge = rlhf_train::judges::gold_judge(&config.gold_judge, config.seed)?;

    let policy = resolve(run_dir, &config.model.policy);
    if !policy.join(CONFIG_FILE).is_file() {
        return Err(Error::file(
            &policy,
            "policy checkpoint not found (set model.policy, or run `rlhf-sft` to make <run-dir>/sft/final)",
        ));
    }
    let tokenizer = Tokenizer::from_dir(&policy)?.with_chat_mode(config.model.chat_template);
    let policy_config = read_config(&policy)?;
    tokenizer.check_fits_embedding(policy_config.vocab_size())?;
    let eos_ids = policy_config.eos_token_ids();
    if !eos_ids.is_empty() && !eos_ids.contains(&tokenizer.eos_id()) {
        tracing::warn!(tokenizer_eos = tokenizer.eos_id(), model_eos = ?eos_ids, "the tokenizer's eos is not the model's eos_token_id");
    }

    let mut data = Preferences::default();
    if !config.data.comparisons.is_empty() {
        data.add_comparisons(&resolve(run_dir, &config.data.comparisons))?;
    }
    if !config.data.rankings.is_empty() {
        data.add_rankings(&resolve(run_dir, &config.data.rankings))?;
    }
    let (train, heldout) = if config.data.heldout.is_empty() {
        data.split_by_prompt(config.data.heldout_fraction, config.seed)
    } else {
        let mut heldout = Preferences::default();
        heldout.add_comparisons(&resolve(run_dir, &config.data.heldout))?;
        (data, heldout)
    };
    if train.identical_pairs + heldout.identical_pairs > 0 {
        tracing::warn!(
            train = train.identical_pairs,
            heldout = heldout.identical_pairs,
            "dropped pairs whose chosen and rejected responses are identical"
        );
    }
    let gold = gold_labels(gold_judge.as_deref(), &heldout.items)?;
    let has_gold = gold.is_some();
    let max_len = config.model.max_seq_len.min(policy_config.max_positions() as usize);
    let (train_tokens, train_cut) = tokenize(&tokenizer, &train.items, max_len)?;
    let (heldout_tokens, heldout_cut) = tokenize(&tokenizer, &heldout.items, max_len)?;
    if train_cut + heldout_cut > 0 {
        tracing::warn!(rows = train_cut + heldout_cut, max_len, "responses longer than model.max_seq_len were cut");
    }
    let heldout_set = HeldOut::new(&heldout_tokens, gold);
    let normalize_rows = if !config.normalize.enabled {
        Vec::new()
    } else {
        let (source, texts) = match config.normalize.samples.as_str() {
            "" => ("training responses".to_string(), training_responses(&train.items)),
            samples => {
                let path = resolve(run_dir, samples);
                (path.display().to_string(), read_prompt_responses(&path)?)
            }
        };
        if texts.is_empty() {
            return Err(Error::Invalid(format!("normalize: {source} has no rows")));
        }
        tracing::info!(rows = texts.len(), source, "rewards will be normalised on");
        tokenize_rows(&tokenizer, &texts, max_len)?.into_iter().map(|(row, _)| row).collect()
    };
    tracing::info!(
        train_preferences = train.items.len(),
        train_pairs = train.pair_count(),
        heldout_pairs = heldout.pair_count(),
        gold_judge = has_gold,
        "preferences"
    );

    let _writer = stage.begin(config)?;
    let mut metrics = MetricsLog::open(stage.metrics(), STAGE_NAME)?;
    let data_stats = [
        ("train_preferences", train.items.len()),
        ("train_pairs", train.pair_count()),
        ("heldout_pairs", heldout.pair_count()),
        ("identical_pairs_dropped", train.identical_pairs + heldout.identical_pairs),
        ("rows_cut", train_cut + heldout_cut),
    ];
    // Logged once, at the start of a fresh run (a resumed run keeps the rows of the run it
    // continues: same config, same data), and written at once.
    let fresh = !stage.checkpoints().exists() && !dir.join(MEMBERS_DIR).exists();
    if fresh {
        metrics.rewind(None, |name| in_namespace("data/", name))?;
        for (name, value) in data_stats {
            metrics.push(0, &format!("data/{name}"), value as f64);
        }
    }
    metrics.flush()?;

    let members = config.ensemble.members;
    let placement = options.placement;
    let mut summaries = Vec::with_capacity(members);
    for i in 0..members {
        let (member_dir, checkpoints, prefix) = if members == 1 {
            (final_dir.clone(), stage.checkpoints(), String::new())
        } else {
            let name = member_name(i);
            (dir.join(MEMBERS_DIR).join(&name), stage.checkpoints().join(&name), format!("{name}/"))
        };
        if member_dir.is_dir() {
            tracing::info!(dir = %member_dir.display(), "ensemble member already trained");
            continue;
        }
        let seed = config.seed + i as u64;
        seed_everything(seed);
        let resampled = (config.ensemble.bootstrap && members > 1 && !train_tokens.is_empty())
            .then(|| crate::data::bootstrap_resample(&train_tokens, seed));
        let mut model = SequenceClassifier::from_causal_lm(&policy, placement.device, placement.kind)?;
        if policy_config.pad_token_id.is_none() {
            model.config_mut().pad_token_id = Some(tokenizer.pad_id());
        }
        let pad_id = model.config().pad_token_id.unwrap_or_else(|| tokenizer.pad_id());
        let config_file = stage.config_file();
        let job = TrainJob {
            checkpoints: &checkpoints,
            config_file: &config_file,
            metric_prefix: &prefix,
            train_config: &config.train,
            loss: &config.loss,
            seed,
            config_hash: &config_hash,
            train: resampled.as_deref().unwrap_or(&train_tokens),
            heldout: &heldout_set,
            pad_id,
            progress: options.progress,
        };
        let (summary, log) = trainer::train(&model, &job, metrics)?;
        metrics = log;
        if config.normalize.enabled {
            let n = normalization(&model, &normalize_rows, config.normalize.scale, config.train.eval_batch_size)?;
            metrics.push(summary.steps, &format!("{prefix}norm_shift"), n.shift);
            metrics.push(summary.steps, &format!("{prefix}norm_scale"), n.scale);
            tracing::info!(shift = n.shift, scale = n.scale, "reward normalisation");
            model.config_mut().reward_normalization = Some(n);
        }
        metrics.flush()?;
        if rlhf_train::is_writer() {
            model.save_pretrained(&member_dir)?;
        }
        summaries.push(summary);
    }
    if members > 1 && rlhf_train::is_writer() {
        let staged = dir.join(MEMBERS_DIR);
        let names: Vec<String> = (0..members).map(member_name).collect();
        let manifest =
            EnsembleManifest { members: names.clone(), combine: config.ensemble.combine, k: config.ensemble.k };
        save_dir_atomically(&final_dir, |tmp| {
            for name in &names {
                copy_flat_dir(&staged.join(name), &tmp.join(name))?;
            }
            let path = tmp.join(ENSEMBLE_FILE);
            write_manifest(&path, &manifest).map_err(|source| rlhf_model::Error::Io { path, source })
        })?;
        std::fs::remove_dir_all(&staged).map_err(|e| Error::file(&staged, e.to_string()))?;
    }
    Ok(Outcome::Trained { dir: final_dir, summary: summaries })
}
