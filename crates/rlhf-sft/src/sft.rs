//! Stage 1: supervised fine-tuning of a base checkpoint on demonstrations, loss on response tokens.
//!
//! Everything is checked before anything is written: the base checkpoint and its tokenizer (which
//! must fit the embedding), the demonstrations (a `demonstrations` Parquet table, or the embedded
//! task's, generated when missing). Then the task's tables are written into `<run-dir>/data/`,
//! `<run-dir>/sft/` gets the resolved `config.toml`, and the training loop ([`crate::trainer`]) its
//! checkpoints, metrics and `final/`.

use std::path::Path;

use rlhf_data::{read_records, Demonstration};
use rlhf_model::device::seed_everything;
use rlhf_model::{CausalLm, Tokenizer};
use rlhf_train::StageDir;

use crate::config::SftConfig;
use crate::data::{tokenize_demonstrations, Example};
use crate::trainer::{self, TrainJob};
use crate::{Error, Result};
use crate::{Outcome, RunOptions};

/// The stage directory inside a run directory.
pub const STAGE_DIR: &str = "sft";
/// Reads the demonstrations table `path` (relative to the run directory); it must have rows.
fn read_demonstrations(path: &str, run_dir: &Path) -> Result<Vec<Demonstration>> {
    let path = rlhf_train::resolve(run_dir, path);
    if !path.is_file() && !path.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: demonstrations table not found (for the embedded task, `rlhf-task generate --out {}` writes it)",
            path.display(),
            run_dir.join("data").display()
        )));
    }
    let rows: Vec<Demonstration> = read_records(&path)?;
    if rows.is_empty() {
        return Err(Error::Invalid(format!("{}: has no demonstrations", path.display())));
    }
    Ok(rows)
}

fn tokenize(rows: &[Demonstration], tokenizer: &Tokenizer, max_len: usize, what: &str) -> Result<Vec<Example>> {
    let (examples, cut) = tokenize_demonstrations(tokenizer, rows, max_len)?;
    if cut > 0 {
        tracing::warn!(cut, max_len, "{what} demonstrations longer than data.max_seq_len were cut");
    }
    Ok(examples)
}

/// Fine-tunes `config.model.base` on the demonstrations into `<run_dir>/sft/`.
pub fn run(config: &SftConfig, run_dir: &Path, options: &RunOptions) -> Result<Outcome> {
    let dir = StageDir::new(run_dir, STAGE_DIR);
    if let Some(done) = dir.already_done() {
        return Ok(done);
    }
    config.train.check()?;
    let config_hash = dir.config_hash(config)?;
    let base = &rlhf_train::resolve(run_dir, &config.model.base);
    if !base.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: base checkpoint directory not found (set model.base, or run `rlhf-sft pretrain` first)",
            base.display()
        )));
    }
    let tokenizer = Tokenizer::from_dir(base)?.with_chat_mode(config.model.chat_template);
    let placement = options.placement;
    let mut model = CausalLm::from_pretrained(base, placement.device, placement.kind)?;
    tokenizer.check_fits_embedding(model.config().vocab_size())?;
    seed_everything(config.seed);
    if let Some(lora) = config.lora.to_lora() {
        model.add_lora(&lora)?;
    }

    let max_len = config.data.max_seq_len.min(model.config().max_positions() as usize);
    let rows = read_demonstrations(&config.data.demonstrations, run_dir)?;
    let train = tokenize(&rows, &tokenizer, max_len, "training")?;
    let eval = match config.data.heldout.as_str() {
        "" => Vec::new(),
        value => {
            let rows = read_demonstrations(value, run_dir)?;
            tokenize(&rows, &tokenizer, max_len, "held-out")?
        }
    };
    let multi_turn = train.iter().filter(|example| !example.prompt_targets.is_empty()).count();
    tracing::info!(train = train.len(), multi_turn, heldout = eval.len(), lora = config.lora.enabled, "demonstrations");

    let _writer = dir.begin(config)?;
    let summary = trainer::train(
        &model,
        &TrainJob {
            stage: STAGE_DIR,
            dir: &dir,
            config: &config.train,
            seed: config.seed,
            config_hash,
            train: &train,
            eval: &eval,
            pad_id: tokenizer.pad_id(),
            progress: options.progress,
        },
    )?;
    Ok(Outcome::Trained { dir: dir.final_dir(), summary })
}
