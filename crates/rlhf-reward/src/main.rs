//! The `rlhf-reward` binary: reward-model training (`train`, the default) and table scoring
//! (`score`). It parses the command line, loads the TOML config with `--set` overrides, picks
//! device and dtype, installs the log subscriber, and prints one `error: ...` line on failure.

use clap::{Args, Parser, Subcommand};
use rlhf_reward::{Outcome, RewardConfig, RewardModel};
use rlhf_train::cli::{StageCli, StageCommand, TableArgs};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "rlhf-reward",
    version,
    about = "Stage 2: a reward model trained on comparisons with the Bradley-Terry loss",
    long_about = "Stage 2: a reward model trained on comparisons with the Bradley-Terry loss.\n\n\
        `rlhf-reward [train]` puts a scalar head on the policy checkpoint (<run-dir>/sft/final by \
        default), trains it on comparisons and rankings and saves <run-dir>/rm/final/, a Hugging Face \
        *ForSequenceClassification checkpoint (or an ensemble of them). It resumes from its newest \
        checkpoint when interrupted and skips when its final model exists. `rlhf-reward score` adds \
        a `reward` column to a table of prompts and responses."
)]
struct Cli {
    #[command(flatten)]
    command: StageCli<Command>,
}

/// The stage's commands besides `train`.
#[derive(Subcommand)]
enum Command {
    /// Score a table's `prompt` + `response` columns into a new `reward: f32` column.
    Score(ScoreArgs),
}

#[derive(Args)]
struct ScoreArgs {
    /// The reward model: a checkpoint directory or an ensemble (e.g. runs/default/rm/final).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    #[command(flatten)]
    table: TableArgs,
    /// Rows per scoring batch (rows are sorted by length first).
    #[arg(long, default_value_t = rlhf_reward::model::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    #[command(flatten)]
    device: rlhf_model::DeviceArgs,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.command() {
        StageCommand::Train(args) => {
            let config: RewardConfig = args.load_config()?;
            let options = args.options()?;
            match rlhf_reward::stage::run(&config, &args.run_dir, &options)? {
                Outcome::AlreadyDone(dir) => tracing::info!("reward: {} already exists; nothing to do", dir.display()),
                Outcome::Trained { dir, summary: members } => {
                    for (i, summary) in members.iter().enumerate() {
                        let after = summary.eval_after.unwrap_or_default();
                        tracing::info!(
                            member = i,
                            steps = summary.steps,
                            pairs_per_s = summary.examples_per_s,
                            heldout_accuracy = after.accuracy,
                            gold_accuracy = after.gold_accuracy,
                            "trained"
                        );
                    }
                    tracing::info!("reward: {}", rlhf_train::saved(&dir));
                }
            }
        }
        StageCommand::Other(Command::Score(args)) => {
            let placement = args.device.resolve()?;
            let mut model = RewardModel::load_as(&args.model, placement.device, placement.kind)?;
            model.batch_size = args.batch_size.max(1);
            let rows = rlhf_reward::table::score_table(&model, &args.table.data, &args.table.out)?;
            tracing::info!(rows, out = %args.table.out.display(), "scored");
        }
    }
    Ok(())
}

rlhf_data::binary_main!("info", run);
