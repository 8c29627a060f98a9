//! The `rlhf-sft` binary: supervised fine-tuning (`train`, the default) and the embedded task's base
//! model (`pretrain`). It parses the command line, loads the TOML config with `--set` overrides,
//! picks device and dtype, installs the log subscriber, and prints one `error: ...` line on failure.

use clap::{Args, Parser, Subcommand};
use rlhf_data::config::load_config;
use rlhf_sft::{BaseConfig, Outcome, RunOptions, SftConfig};
use rlhf_train::cli::{StageCli, StageCommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "rlhf-sft",
    version,
    about = "Stage 1: supervised fine-tuning on demonstrations (loss on response tokens only)",
    long_about = "Stage 1: supervised fine-tuning on demonstrations (loss on response tokens only).\n\n\
        `rlhf-sft [train]` fine-tunes a base checkpoint into <run-dir>/sft/final/; `rlhf-sft pretrain` \
        builds the embedded task's base model. Both resume from their newest checkpoint when \
        interrupted and skip when their final model exists."
)]
struct Cli {
    #[command(flatten)]
    command: StageCli<Command>,
}

/// The stage's commands besides `train`.
#[derive(Subcommand)]
enum Command {
    /// Train a BPE tokenizer and pretrain a small transformer on the embedded task's corpus.
    Pretrain(PretrainArgs),
}

#[derive(Args)]
struct PretrainArgs {
    /// The base-model config (e.g. configs/base.toml); built-in defaults when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config field, e.g. --set train.max_steps=100 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Stage directory: the model is saved to <out>/final/ (a Hugging Face checkpoint), next to
    /// tokenizer/, config.toml, metrics.parquet and checkpoints/.
    #[arg(long, value_name = "DIR", default_value = "runs/default/base")]
    out: PathBuf,
    #[command(flatten)]
    device: rlhf_model::DeviceArgs,
}

fn report(stage: &str, outcome: Outcome) {
    match outcome {
        Outcome::AlreadyDone(dir) => tracing::info!("{stage}: {} already exists; nothing to do", dir.display()),
        Outcome::Trained { dir, summary } => {
            let ppl = |e: Option<rlhf_sft::Evaluation>| e.map_or("-".to_string(), |e| format!("{:.3}", e.ppl));
            tracing::info!(
                steps = summary.steps,
                loss = summary.last,
                tokens_per_s = summary.tokens_per_s,
                "{stage}: {} (held-out perplexity {} -> {})",
                rlhf_train::saved(&dir),
                ppl(summary.eval_before),
                ppl(summary.eval_after),
            );
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.command() {
        StageCommand::Train(args) => {
            let config: SftConfig = args.load_config()?;
            let outcome = rlhf_sft::sft::run(&config, &args.run_dir, &args.options()?)?;
            report("sft", outcome);
        }
        StageCommand::Other(Command::Pretrain(args)) => {
            let config: BaseConfig = load_config(args.config.as_deref(), &args.overrides)?;
            let outcome = rlhf_sft::pretrain::pretrain(&config, &args.out, &RunOptions::for_training(&args.device)?)?;
            report("pretrain", outcome);
        }
    }
    Ok(())
}

rlhf_data::binary_main!("info", run);
