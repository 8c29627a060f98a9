//! The `rlhf-eval` binary: `generate` samples responses from a policy. It parses the command line,
//! picks device and dtype, installs the log subscriber, and prints one `error: ...` line on failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use rlhf_eval::generate::{generate_file, SampleConfig};

#[derive(Parser)]
#[command(name = "rlhf-eval", version, about = "Evaluation: gold/proxy reward, KL, perplexity, win rates, report and plots")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sample responses to prompts from a policy checkpoint (rows id, prompt, response, sample).
    Generate(GenerateArgs),
}

#[derive(Args)]
struct GenerateArgs {
    /// The policy: a Hugging Face causal-LM checkpoint directory with its tokenizer.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// A prompts table (id, prompt).
    #[arg(long, value_name = "P.parquet")]
    prompts: PathBuf,
    /// Where to write the samples.
    #[arg(long, value_name = "R.parquet")]
    out: PathBuf,
    #[arg(long, default_value_t = SampleConfig::default().samples_per_prompt)]
    samples_per_prompt: u32,
    #[arg(long, default_value_t = SampleConfig::default().temperature)]
    temperature: f64,
    /// Nucleus sampling mass (1 = off).
    #[arg(long, default_value_t = SampleConfig::default().top_p)]
    top_p: f64,
    #[arg(long, default_value_t = SampleConfig::default().max_new_tokens)]
    max_new_tokens: i64,
    /// Seed of the sampling streams (batch b uses seed + b).
    #[arg(long, default_value_t = SampleConfig::default().seed)]
    seed: u64,
    /// Rows (prompt × sample) per generation batch.
    #[arg(long, default_value_t = SampleConfig::default().batch_size)]
    batch_size: usize,
    #[command(flatten)]
    device: rlhf_model::DeviceArgs,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => {
            let config = SampleConfig {
                samples_per_prompt: args.samples_per_prompt,
                temperature: args.temperature,
                top_p: args.top_p,
                max_new_tokens: args.max_new_tokens,
                seed: args.seed,
                batch_size: args.batch_size,
            };
            let summary = generate_file(&args.model, &args.prompts, &args.out, &config, args.device.resolve()?)?;
            tracing::info!(prompts = summary.prompts, rows = summary.rows, empty = summary.empty, out = %args.out.display(), "generated");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn help() {
        let mut cli = super::Cli::command();
        cli.build();
        insta::assert_snapshot!("help", cli.render_long_help().to_string());
        let generate = cli.find_subcommand_mut("generate").expect("a generate subcommand");
        insta::assert_snapshot!("help_generate", generate.render_long_help().to_string());
    }
}
