//! The `rlhf-dpo` binary: parses the command line, loads the TOML config with `--set` overrides,
//! picks device and dtype, installs the log subscriber, and prints one `error: ...` line on failure.

use clap::Parser;
use rlhf_dpo::{DpoConfig, Outcome};
use rlhf_train::cli::{StageCli, TrainOnly};

#[derive(Parser)]
#[command(
    name = "rlhf-dpo",
    version,
    about = "Stage 3 alternative: direct preference optimisation (DPO, IPO, cDPO, hinge, SimPO) on comparisons",
    long_about = "Stage 3 alternative: direct preference optimisation (DPO, IPO, cDPO, hinge, SimPO) on comparisons.\n\n\
        Trains the policy (default <run-dir>/sft/final) on <run-dir>/data/comparisons.parquet, and/or on pairs \
        it samples and has labelled in online rounds, into <run-dir>/dpo/final/. Relative paths in the config \
        resolve against the run directory. Resumes from its newest checkpoint when interrupted and skips when \
        its final model exists."
)]
struct Cli {
    #[command(flatten)]
    command: StageCli<TrainOnly>,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let args = cli.command.into_args();
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
                "dpo: {} (held-out {} -> {})",
                rlhf_train::saved(&dir),
                eval(summary.train.eval_before),
                eval(summary.train.eval_after),
            );
        }
    }
    Ok(())
}

rlhf_data::binary_main!("info", run);
