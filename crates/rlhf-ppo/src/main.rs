//! The `rlhf-ppo` binary: parses the command line, loads the TOML config with `--set` overrides,
//! picks device and dtype, installs the log subscriber, and prints one `error: ...` line on failure.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rlhf_ppo::{Outcome, PpoConfig};
use rlhf_train::cli::StageArgs;

#[derive(Parser)]
#[command(
    name = "rlhf-ppo",
    version,
    about = "Stage 3: PPO against a reward model with a per-token KL penalty to the SFT policy (also GRPO, RLOO)",
    long_about = "Stage 3: PPO against a reward model with a per-token KL penalty to the SFT policy (also GRPO, RLOO).\n\n\
        `rlhf-ppo [train]` trains <run-dir>/sft/final against <run-dir>/rm/final (by default) into \
        <run-dir>/ppo/final/, appending rollouts.parquet and metrics.parquet every iteration. It resumes \
        from its newest checkpoint when interrupted and skips when its final model exists.",
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
    /// Train the policy with PPO, GRPO or RLOO (the default).
    Train(StageArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Train(args) = cli.command.unwrap_or(Command::Train(cli.train));
    let config: PpoConfig = args.load_config()?;
    let options = args.options()?;
    match rlhf_ppo::stage::run(&config, &args.run_dir, &options)? {
        Outcome::AlreadyDone(dir) => tracing::info!("ppo: {} already exists; nothing to do", dir.display()),
        Outcome::Trained { dir, summary } => tracing::info!(
            iterations = summary.iterations,
            score = summary.score,
            kl = summary.kl,
            beta = summary.beta,
            skipped = summary.skipped,
            "ppo: saved {}",
            dir.display()
        ),
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
