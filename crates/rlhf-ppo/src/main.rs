//! The `rlhf-ppo` binary: parses the command line, loads the TOML config with `--set` overrides,
//! picks device and dtype, installs the log subscriber, and prints one `error: ...` line on failure.

use clap::Parser;
use rlhf_ppo::{Outcome, PpoConfig};
use rlhf_train::cli::{StageCli, TrainOnly};

#[derive(Parser)]
#[command(
    name = "rlhf-ppo",
    version,
    about = "Stage 3: PPO against a reward model with a per-token KL penalty to the SFT policy (also GRPO, RLOO)",
    long_about = "Stage 3: PPO against a reward model with a per-token KL penalty to the SFT policy (also GRPO, RLOO).\n\n\
        `rlhf-ppo [train]` trains <run-dir>/sft/final against <run-dir>/rm/final (by default) into \
        <run-dir>/ppo/final/, appending rollouts.parquet and metrics.parquet every iteration. It resumes \
        from its newest checkpoint when interrupted and skips when its final model exists."
)]
struct Cli {
    #[command(flatten)]
    command: StageCli<TrainOnly>,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let args = cli.command.into_args();
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

rlhf_data::binary_main!("info", run);
