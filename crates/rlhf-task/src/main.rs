//! `rlhf-task`: generate the embedded default task's tables and label sampled responses with its
//! simulated annotators.
//!
//! The only place in the crate that reads argv or the environment (`RUST_LOG`) and installs a
//! tracing subscriber. Errors are printed as one `error: …` line on stderr, with exit code 1.

use clap::{Args, Parser, Subcommand};
use rlhf_task::{label_file, write_task, LabelMode, Objective, Panel, TaskConfig};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "rlhf-task",
    version,
    about = "The embedded default task: generate its tables, label sampled responses"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the task's prompts, demonstrations and held-out splits (deterministic in the seed)
    Generate(GenerateArgs),
    /// Label sampled responses (rows id, prompt, response; several per prompt) with the simulated annotators
    Label(LabelArgs),
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Directory for prompts.parquet, prompts_heldout.parquet, demonstrations.parquet and
    /// demonstrations_heldout.parquet
    #[arg(long, default_value = "datasets")]
    out: PathBuf,
    /// Sizes and seed (a TOML file with the fields of the task config)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a task config field, e.g. --set seed=3 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

#[derive(Debug, Args)]
struct LabelArgs {
    /// Sampled responses: a Parquet table with id, prompt and response columns
    #[arg(long = "in")]
    input: PathBuf,
    /// Comparisons table to write
    #[arg(long)]
    out: PathBuf,
    /// Rank all responses to a prompt at once and expand to every pair (default: disjoint pairs)
    #[arg(long)]
    rankings: bool,
    /// What the annotators judge: overall (the whole gold rule), helpful, harmless (no rude phrases
    /// or negative adjectives), or a weighted mix like helpful=0.7,harmless=0.3. Recorded in the
    /// table's `objective` column; per-objective labels leave out pairs the objective scores alike
    #[arg(long, default_value = "overall", value_parser = Objective::parse)]
    objective: Objective,
    /// Seed of the annotators' noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => {
            let config: TaskConfig = rlhf_data::config::load_config(args.config.as_deref(), &args.overrides)?;
            let files = write_task(&config, &args.out)?;
            for file in files.all() {
                println!("wrote {}", file.display());
            }
        }
        Command::Label(args) => {
            let mode = if args.rankings { LabelMode::Rankings } else { LabelMode::Pairs };
            let stats = label_file(&args.input, &args.out, &Panel::default(), mode, args.objective, args.seed)?;
            let ties = if stats.ties > 0 { format!(", {} ties left out", stats.ties) } else { String::new() };
            println!(
                "wrote {} {} comparisons to {} ({} identical pairs dropped{ties}; annotators agree with the gold judge on {:.1}%)",
                stats.pairs,
                args.objective,
                args.out.display(),
                stats.identical,
                100.0 * stats.gold_agreement
            );
        }
    }
    Ok(())
}

rlhf_data::binary_main!("warn", run);
