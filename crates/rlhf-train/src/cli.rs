//! What every stage binary's command line shares: `train --config FILE [--set KEY=VALUE]...
//! [--run-dir DIR] [--device ...] [--dtype ...]` ([`StageArgs`]) and the entry point
//! ([`run_main`]: log subscriber, one `error: ...` line and exit status 1 on failure).

use std::io::IsTerminal;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use rlhf_data::cli::run_main;

use crate::stage::RunOptions;

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
        Ok(RunOptions { placement: self.device.resolve()?, progress: std::io::stderr().is_terminal() })
    }
}
