//! The `rlhf-dpo` binary: parses the command line, loads the TOML config with `--set` overrides,
//! picks device and dtype, installs the log subscriber, and prints one `error: ...` line on failure.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rlhf_dpo::{DpoConfig, Outcome};
use rlhf_train::cli::StageArgs;

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
    train: StageArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Train the policy on preference pairs (the default).
    Train(StageArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Train(args) = cli.command.unwrap_or(Command::Train(cli.train));
    let config: DpoConfig = args.load_config()?;
    let options = args.options()?;
    match rlhf_dpo::stage::run(&config, &args.run_dir, &options)? {
        Outcome::AlreadyDone(dir) => tracing::info!("dpo: {} already exists; nothing to do", dir.display()),
        Outcome::Trained { dir, summary } => {
            let eval = |e: Option<rlhf_dpo::PreferenceStats>| {
                e.map_or("-".to_string(), |e| format!("accuracy {:.3}, margin {:.3}", e.accuracy, e.margin))
            };
            tracing::info!(
                steps = summary.train.steps,
                loss = summary.train.last.loss,
                pairs_per_s = summary.train.examples_per_s,
                reference_passes = summary.reference_passes,
                "dpo: saved {} (held-out {} -> {})",
                dir.display(),
                eval(summary.train.eval_before),
                eval(summary.train.eval_after),
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    rlhf_train::cli::run_main("info", || run(cli))
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
