//! The `rlhf-dpo` binary: parses the command line, loads the TOML config with `--set` overrides,
//! picks device and dtype, installs the log subscriber, and prints one `error: ...` line on failure.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use rlhf_data::config::load_config;
use rlhf_dpo::{DpoConfig, Outcome, RunOptions};

#[derive(Parser)]
#[command(
    name = "rlhf-dpo",
    version,
    about = "Stage 3 alternative: direct preference optimisation (DPO, IPO, cDPO, hinge, SimPO) on comparisons",
    long_about = "Stage 3 alternative: direct preference optimisation (DPO, IPO, cDPO, hinge, SimPO) on comparisons.\n\n\
        Trains the policy (default <run-dir>/sft/final) on <run-dir>/data/comparisons.parquet, and/or on pairs \
        it samples and has labelled in online rounds, into <run-dir>/dpo/final/. Relative paths in the config \
        resolve against the run directory. Resumes from its newest checkpoint when interrupted and skips when \
        its final model exists.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Train the policy on preference pairs (the default).
    Train(TrainArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// The DPO config (e.g. configs/dpo.toml); built-in defaults when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config field, e.g. --set loss.beta=0.2 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Run directory: reads sft/final and data/ from it, writes dpo/ (config.toml, metrics.parquet,
    /// checkpoints/, rounds/, final/).
    #[arg(long, value_name = "DIR", default_value = "runs/default")]
    run_dir: PathBuf,
    #[command(flatten)]
    device: rlhf_model::DeviceArgs,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Train(args) = cli.command.unwrap_or(Command::Train(cli.train));
    let config: DpoConfig = load_config(args.config.as_deref(), &args.overrides)?;
    let options = RunOptions { placement: args.device.resolve()?, progress: std::io::stderr().is_terminal() };
    match rlhf_dpo::stage::run(&config, &args.run_dir, &options)? {
        Outcome::AlreadyDone(dir) => tracing::info!("dpo: {} already exists; nothing to do", dir.display()),
        Outcome::Trained { dir, summary } => {
            let eval = |e: Option<rlhf_dpo::PreferenceStats>| {
                e.map_or("-".to_string(), |e| format!("accuracy {:.3}, margin {:.3}", e.accuracy, e.margin))
            };
            tracing::info!(
                steps = summary.steps,
                loss = summary.last.loss,
                pairs_per_s = summary.pairs_per_s,
                reference_passes = summary.reference_passes,
                "dpo: saved {} (held-out {} -> {})",
                dir.display(),
                eval(summary.eval_before),
                eval(summary.eval_after),
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    rlhf_data::cli::run_main("info", || run(cli))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn help() {
        let mut cli = super::Cli::command();
        cli.build();
        insta::assert_snapshot!("help", cli.render_long_help().to_string());
    }
}
