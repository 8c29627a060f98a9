//! The stage: checks every input before writing anything, prepares the pairs (tokenized, with
//! reference log-probs from their cache), then trains round after round into `<run-dir>/dpo/`.
//!
//! Round 0 is the offline comparisons (`data.comparisons`, minus the held-out share; for KTO, the
//! unpaired labels of `data.feedback`, or the comparisons unpaired as TRL does); rounds
//! `1..=online.rounds` are sampled from the policy as it stands, labelled, and written to
//! `dpo/rounds/round-NNN.parquet` (their reference cache beside them) before training on them, so
//! a resumed run trains on the same pairs.

use std::path::Path;

use rlhf_data::{read_records, read_table, unpair_comparisons, write_records, Comparison, Feedback, Prompt, Table};
use rlhf_model::device::seed_everything;
use rlhf_model::{CausalLm, Placement, Tokenizer};
use rlhf_train::stage::require_checkpoint_dir;
use rlhf_train::StageDir;

use crate::config::{DpoConfig, Labeler, ReferenceMode};
use crate::data::{is_heldout, tokenize, tokenize_labels, Limits, Pair};
use crate::online;
use crate::reference::{cache_key, cache_path, read_cache, write_cache, Reference, ReferenceSpec};
use crate::trainer::{TrainJob, Trainer};
use crate::{Error, Result};
use crate::{Outcome, RunOptions, STAGE_DIR};

/// Online rounds' comparisons inside the stage directory.
pub const ROUNDS_DIR: &str = "rounds";

/// A table's rows as the loss trains on them, each with the id that puts it in the held-out share.
enum Examples {
    Comparisons(Table<Comparison>),
    /// KTO's unpaired labels; `split_ids` are the comparisons' ids where they were unpaired here,
    /// so both halves of a pair fall on the same side.
    Labels {
        table: Table<Feedback>,
        split_ids: Vec<String>,
    },
}

impl Examples {
    /// The comparisons at `path`, unpaired into labels when the loss wants them (`unpaired`).
    fn comparisons(path: &Path, unpaired: bool) -> Result<Self> {
        let table = read_table::<Comparison>(path)?;
        if table.records.is_empty() {
            return Err(Error::File { path: path.to_path_buf(), message: "has no comparisons".into() });
        }
        if !unpaired {
            return Ok(Examples::Comparisons(table));
        }
        let split_ids = table.records.iter().flat_map(|c| [c.id.clone(), c.id.clone()]).collect();
        Ok(Examples::Labels { table: Table::from_records(unpair_comparisons(&table.records))?, split_ids })
    }

    /// The unpaired labels at `path` (a feedback table).
    fn labels(path: &Path) -> Result<Self> {
        let table = read_table::<Feedback>(path)?;
        if table.records.is_empty() {
            return Err(Error::File { path: path.to_path_buf(), message: "has no labels".into() });
        }
        let split_ids = table.records.iter().map(|l| l.id.clone()).collect();
        Ok(Examples::Labels { table, split_ids })
    }

    /// The training data at `path`, of the kind `feedback` says (else comparisons).
    fn read(path: &Path, feedback: bool, unpaired: bool) -> Result<Self> {
        if feedback {
            Self::labels(path)
        } else {
            Self::comparisons(path, unpaired)
        }
    }

    fn split_ids(&self) -> Vec<&str> {
        match self {
            Examples::Comparisons(table) => table.records.iter().map(|c| c.id.as_str()).collect(),
            Examples::Labels { split_ids, .. } => split_ids.iter().map(String::as_str).collect(),
        }
    }

    fn write_cache(&self, path: &Path, key: &str, values: &[[f64; 2]]) -> Result<()> {
        match self {
            Examples::Comparisons(table) => write_cache(path, table, key, values),
            Examples::Labels { table, .. } => write_cache(path, table, key, values),
        }
    }
}

fn read_prompts(config: &DpoConfig) -> Result<Vec<Prompt>> {
    let prompts: Vec<Prompt> = read_records(&config.online.prompts)?;
    if prompts.is_empty() {
        return Err(Error::Invalid(format!("online.prompts {:?} holds no prompts", config.online.prompts)));
    }
    Ok(prompts)
}

/// What pair preparation needs: the tokenizer, limits and where reference log-probs come from.
struct Preparer<'a> {
    config: &'a DpoConfig,
    tokenizer: &'a Tokenizer,
    policy: &'a CausalLm,
    reference: &'a ReferenceSpec,
    limits: Limits,
    placement: Placement,
    /// Comparisons files whose reference log-probs were computed, not read from their cache.
    passes: usize,
}

impl Preparer<'_> {
    /// Tokenizes the rows read from `path` and, when they are cached, attaches reference log-probs
    /// from the cache beside it (computing and writing it first when it is missing or stale).
    fn pairs(&mut self, examples: &Examples, path: &Path) -> Result<Vec<Pair>> {
        let (mut pairs, cut) = match examples {
            Examples::Comparisons(table) => tokenize(self.tokenizer, &table.records, self.limits)?,
            Examples::Labels { table, .. } => tokenize_labels(self.tokenizer, &table.records, self.limits)?,
        };
        if cut > 0 {
            tracing::warn!(cut, path = %path.display(), "rows longer than data.max_prompt_len / max_response_len were cut");
        }
        if self.config.reference.mode != ReferenceMode::Cached || !self.config.loss.needs_reference() {
            return Ok(pairs);
        }
        let unpaired = self.config.loss.unpaired();
        let key = cache_key(path, unpaired, self.reference, &self.config.model.policy, self.limits, self.placement)?;
        let cache = cache_path(path, unpaired);
        let values = match read_cache(&cache, &key, pairs.len()) {
            Some(values) => {
                tracing::info!(cache = %cache.display(), "reusing cached reference log-probs");
                values
            }
            None => {
                let _span =
                    tracing::info_span!("reference_logps", path = %path.display(), pairs = pairs.len()).entered();
                let reference = Reference::load(self.reference, self.placement)?;
                let values = reference.score_all(
                    self.policy,
                    &pairs,
                    self.config.reference.batch_size,
                    self.tokenizer.pad_id(),
                )?;
                if rlhf_train::is_writer() {
                    examples.write_cache(&cache, &key, &values)?;
                }
                self.passes += 1;
                tracing::info!(cache = %cache.display(), "cached reference log-probs");
                values
            }
        };
        for (pair, value) in pairs.iter_mut().zip(values) {
            pair.reference = Some(value);
        }
        Ok(pairs)
    }
}

/// Splits round-0 pairs into (train, held-out) by the held-out share of their ids.
fn split_heldout(pairs: Vec<Pair>, examples: &Examples, fraction: f64) -> (Vec<Pair>, Vec<Pair>) {
    let (heldout, train): (Vec<_>, Vec<_>) =
        pairs.into_iter().zip(examples.split_ids()).partition(|(_, id)| is_heldout(id, fraction));
    (train.into_iter().map(|(p, _)| p).collect(), heldout.into_iter().map(|(p, _)| p).collect())
}

/// The optional table at `path` (an empty path means none).
fn optional_examples(path: &Path, feedback: bool, unpaired: bool) -> Result<Option<Examples>> {
    if path.as_os_str().is_empty() {
        Ok(None)
    } else {
        Examples::read(path, feedback, unpaired).map(Some)
    }
}

/// Everything a run reads, checked before anything is written.
struct Inputs {
    reference: ReferenceSpec,
    /// Round 0's rows and the file they came from.
    offline: Option<(Examples, std::path::PathBuf)>,
    heldout: Option<Examples>,
    prompts: Vec<Prompt>,
    tokenizer: Tokenizer,
    policy: CausalLm,
    limits: Limits,
    /// The configured `gold_judge`, if any.
    gold_judge: Option<Box<dyn rlhf_data::Judge>>,
}

impl Inputs {
    fn load(config: &DpoConfig, placement: Placement) -> Result<Self> {
        let policy_dir = &config.model.policy;
        require_checkpoint_dir(policy_dir, "model.policy", "the SFT model: run `rlhf-sft` first or set model.policy")?;
        let separate_reference = !config.model.reference.as_os_str().is_empty();
        let reference = ReferenceSpec {
            adapters_off: config.lora.enabled && !separate_reference,
            dir: if separate_reference { config.model.reference.clone() } else { policy_dir.clone() },
        };
        require_checkpoint_dir(
            &reference.dir,
            "model.reference",
            "set it to a checkpoint, or leave it empty for the starting policy",
        )?;
        let online = &config.online;
        if online.rounds > 0 && online.labeler == Labeler::AiJudge {
            // Checked before anything is written: the constitution, and which model judges.
            let spec = &online.ai_judge;
            if spec.constitution.as_os_str().is_empty() || !spec.constitution.is_file() {
                return Err(Error::Invalid(format!(
                    "online.ai_judge.constitution = {:?}: not a file (e.g. configs/constitutions/task.toml)",
                    spec.constitution
                )));
            }
            if spec.local.as_os_str().is_empty() == spec.openai_url.is_empty() {
                return Err(Error::Invalid(
                    "online.ai_judge: set `local` (a checkpoint) or `openai_url` (a server), one of the two".into(),
                ));
            }
        }
        if online.rounds > 0 && online.labeler == Labeler::RewardModel {
            require_checkpoint_dir(
                &online.reward_model,
                "online.reward_model",
                "run `rlhf-reward` first or use labeler = \"panel\"",
            )?;
        }
        let feedback = !config.data.feedback.as_os_str().is_empty();
        let unpaired = config.loss.unpaired();
        let offline_path = if feedback { &config.data.feedback } else { &config.data.comparisons };
        let offline = optional_examples(offline_path, feedback, unpaired)?.map(|rows| (rows, offline_path.clone()));
        let heldout = optional_examples(&config.data.heldout, feedback, unpaired)?;
        let prompts = if online.rounds > 0 { read_prompts(config)? } else { Vec::new() };
        let tokenizer = Tokenizer::from_dir(policy_dir)?.with_chat_mode(config.model.chat_template);
        let policy = CausalLm::from_pretrained(policy_dir, placement.device, placement.kind)?;
        tokenizer.check_fits_embedding(policy.config().vocab_size())?;
        let limits =
            Limits { max_prompt_len: config.data.max_prompt_len, max_response_len: config.data.max_response_len };
        let positions = policy.config().max_positions() as usize;
        let longest = limits.max_prompt_len + limits.max_response_len.max(online.max_new_tokens as usize);
        if longest > positions {
            return Err(Error::Invalid(format!(
                "data.max_prompt_len + data.max_response_len (or online.max_new_tokens) = {longest} tokens exceeds the model's {positions} positions"
            )));
        }
        let gold_judge = rlhf_train::judges::gold_judge(&config.gold_judge, config.seed)?;
        Ok(Inputs { reference, offline, heldout, prompts, tokenizer, policy, limits, gold_judge })
    }
}

/// Samples and labels online round `round` with the policy as it stands, into `path`.
fn sample_round(
    config: &DpoConfig,
    inputs: &Inputs,
    placement: Placement,
    trainer: &mut Trainer<'_>,
    round: usize,
    path: &Path,
) -> Result<()> {
    let _span = tracing::info_span!("online_round", round).entered();
    let online = &config.online;
    let seed = config.seed.wrapping_mul(1000).wrapping_add(round as u64);
    let prompts = online::round_prompts(&inputs.prompts, online.prompts_per_round, round, config.seed);
    let samples =
        online::sample_pairs(&inputs.policy, &inputs.tokenizer, &prompts, online, inputs.limits.max_prompt_len, seed)?;
    let gold = inputs.gold_judge.as_deref();
    let (comparisons, stats) = online::label(
        online,
        &prompts,
        &samples,
        config.model.chat_template,
        placement,
        seed,
        &format!("online-round-{round}"),
        gold,
    )?;
    if comparisons.is_empty() {
        return Err(Error::Invalid(format!(
            "online round {round}: every sampled pair was dropped (identical responses)"
        )));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::File { path: dir.to_path_buf(), message: e.to_string() })?;
    trainer.log_round(round, &stats)?;
    write_records(path, &comparisons)?;
    Ok(())
}

/// Trains the policy of `config` into `<run_dir>/dpo/` (see the crate doc).
pub fn run(config: &DpoConfig, run_dir: &Path, options: &RunOptions) -> Result<Outcome> {
    let dir = StageDir::new(run_dir, STAGE_DIR);
    if let Some(done) = dir.already_done() {
        return Ok(done);
    }
    let mut config = config.clone();
    config.resolve_paths(run_dir);
    config.validate()?;
    if config.train.threads > 0 {
        tch::set_num_threads(config.train.threads as i32);
    }
    let config_hash = dir.config_hash(&config)?;
    let placement = options.placement;
    let mut inputs = Inputs::load(&config, placement)?;
    seed_everything(config.seed);
    if let Some(lora) = config.lora.to_lora() {
        inputs.policy.add_lora(&lora)?;
    }
    let inputs = inputs;

    let mut preparer = Preparer {
        config: &config,
        tokenizer: &inputs.tokenizer,
        policy: &inputs.policy,
        reference: &inputs.reference,
        limits: inputs.limits,
        placement,
        passes: 0,
    };
    let (mut offline_pairs, split_off) = match &inputs.offline {
        Some((examples, path)) => {
            let pairs = preparer.pairs(examples, path)?;
            let fraction = if inputs.heldout.is_some() { 0.0 } else { config.data.heldout_fraction };
            split_heldout(pairs, examples, fraction)
        }
        None => (Vec::new(), Vec::new()),
    };
    let heldout = match &inputs.heldout {
        Some(examples) => preparer.pairs(examples, &config.data.heldout)?,
        None => split_off,
    };
    tracing::info!(
        train = offline_pairs.len(),
        heldout = heldout.len(),
        rounds = config.online.rounds,
        lora = config.lora.enabled,
        "pairs"
    );

    let live_reference = (config.reference.mode == ReferenceMode::OnTheFly && config.loss.needs_reference())
        .then(|| Reference::load(&inputs.reference, placement))
        .transpose()?;
    let job = TrainJob {
        dir: &dir,
        train: &config.train,
        loss: &config.loss,
        seed: config.seed,
        config_hash,
        heldout,
        pad_id: inputs.tokenizer.pad_id(),
        progress: options.progress,
    };
    if config.online.rounds > 0 {
        rlhf_train::stage::single_process_only("online DPO")?;
    }
    let _writer = dir.begin(&config)?;
    let mut trainer = Trainer::new(&inputs.policy, live_reference, job)?;
    let rounds_dir = dir.root.join(ROUNDS_DIR);
    if trainer.resume_point().is_none() && rounds_dir.exists() {
        // Left by a run that never reached a checkpoint: sampled by a policy we cannot vouch for.
        std::fs::remove_dir_all(&rounds_dir)
            .map_err(|e| Error::File { path: rounds_dir.clone(), message: e.to_string() })?;
    }
    let first = if inputs.offline.is_some() { 0 } else { 1 };
    let rounds = config.online.rounds;
    for round in trainer.resume_point().map_or(first, |r| r.round)..=rounds {
        let more_rounds = round < rounds;
        if round == 0 {
            trainer.train_round(0, std::mem::take(&mut offline_pairs), more_rounds)?;
            continue;
        }
        let path = rounds_dir.join(format!("round-{round:03}.parquet"));
        if !path.is_file() {
            sample_round(&config, &inputs, placement, &mut trainer, round, &path)?;
        }
        let pairs = preparer.pairs(&Examples::comparisons(&path, config.loss.unpaired())?, &path)?;
        trainer.train_round(round, pairs, more_rounds)?;
    }
    let mut summary = trainer.finish()?;
    summary.reference_passes = preparer.passes;
    Ok(Outcome::Trained { dir: dir.final_dir(), summary })
}
