//! What every stage binary's command line shares: `train --config FILE [--set KEY=VALUE]...
//! [--run-dir DIR] [--device ...] [--dtype ...]` ([`StageArgs`]) and the stage's other commands
//! ([`StageCli`]). The entry point itself is `rlhf_data::binary_main!`.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::stage::RunOptions;

/// A stage binary's command line: `rlhf-<stage> [train] ARGS`, or one of the stage's other
/// commands `C` ([`TrainOnly`] for none). Flatten it into the binary's `Parser`, which carries the
/// name and the help text.
#[derive(clap::Args, Clone, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StageCli<C: clap::Subcommand> {
    #[command(subcommand)]
    command: Option<StageCommand<C>>,
    #[command(flatten)]
    train: StageArgs,
}

/// A stage's commands: `train` and the stage's own.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum StageCommand<C: clap::Subcommand> {
    /// Train the stage's model (the default).
    Train(StageArgs),
    #[command(flatten)]
    Other(C),
}

/// No commands besides `train`.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum TrainOnly {}

impl<C: clap::Subcommand> StageCli<C> {
    /// The command given; `train` when only its arguments were.
    pub fn command(self) -> StageCommand<C> {
        self.command.unwrap_or(StageCommand::Train(self.train))
    }
}

impl StageCli<TrainOnly> {
    /// The `train` arguments, given with or without the word `train`.
    pub fn into_args(self) -> StageArgs {
        match self.command() {
            StageCommand::Train(args) => args,
            StageCommand::Other(never) => match never {},
        }
    }
}

/// A table in and a table out: the arguments of the commands that add a column to a table of
/// `prompt` + `response` rows (`rlhf-reward score`, `rlhf-eval logprobs`).
#[derive(clap::Args, Clone, Debug)]
pub struct TableArgs {
    /// A Parquet table with `prompt` and `response` columns (other columns are kept).
    #[arg(long, value_name = "IN.parquet")]
    pub data: PathBuf,
    /// Where to write the table with its new column.
    #[arg(long, value_name = "OUT.parquet")]
    pub out: PathBuf,
}

/// The arguments of a stage's `train` command.
#[derive(clap::Args, Clone, Debug)]
pub struct StageArgs {
    /// The stage config (e.g. configs/<stage>.toml); built-in defaults when absent.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config field, e.g. --set train.lr=1e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Run directory: relative paths in the config resolve against it; the stage writes
    /// <run-dir>/<stage>/ (config.toml, metrics.parquet, checkpoints/, final/).
    #[arg(long, value_name = "DIR", default_value = "runs/default")]
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub device: rlhf_model::DeviceArgs,
}

impl StageArgs {
    /// The config file laid over the stage's defaults, with the `--set` overrides.
    pub fn load_config<T: DeserializeOwned + Serialize + Default>(&self) -> anyhow::Result<T> {
        Ok(rlhf_data::config::load_config(self.config.as_deref(), &self.overrides)?)
    }

    /// The device and dtype asked for; a progress bar when stderr is a terminal.
    pub fn options(&self) -> anyhow::Result<RunOptions> {
        Ok(RunOptions::for_training(&self.device)?)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        command: super::StageCli<super::TrainOnly>,
    }

    #[test]
    fn train_is_optional() {
        for line in
            [&["stage", "--run-dir", "r", "--set", "a=1"][..], &["stage", "train", "--run-dir", "r", "--set", "a=1"]]
        {
            let args = Cli::try_parse_from(line).expect("parses").command.into_args();
            assert_eq!((args.run_dir.to_str(), args.overrides), (Some("r"), vec!["a=1".to_string()]));
        }
    }
}
