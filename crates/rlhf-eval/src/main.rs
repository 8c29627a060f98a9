//! The `rlhf-eval` binary: `report` (also the default: `rlhf-eval --config FILE --run-dir DIR`)
//! evaluates a run directory's policies; `generate` samples responses from a policy; `logprobs` and
//! `compare` score tables; `diff-runs` checks that two runs hold the same results; `import-gguf`
//! turns a llama.cpp GGUF file into a checkpoint directory. It parses the command line, picks device
//! and dtype, installs the log subscriber, and prints one `error: ...` line on failure.

use clap::{Args, Parser, Subcommand};
use rlhf_eval::config::EvalConfig;
use rlhf_eval::generate::{generate_file, SampleConfig, SampleSettings};
use rlhf_eval::render::write_report;
use rlhf_eval::report::evaluate;
use rlhf_eval::score::{compare_files, logprobs_file};
use rlhf_model::ChatMode;
use rlhf_train::cli::TableArgs;
use rlhf_train::judges::{scorer, scorer_names};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "rlhf-eval",
    version,
    about = "Evaluation: gold/proxy reward, KL, perplexity, win rates, report and plots"
)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand: `report`.
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate the policies of a run directory; write <run-dir>/eval/{report.md,report.html,metrics.parquet,*.png}.
    Report(ReportArgs),
    /// Summed log-prob of each row's response given its prompt (adds columns logprob, num_tokens).
    Logprobs(LogprobsArgs),
    /// Win rate of A's responses over B's by a judge's scores (--judge), rows matched by prompt.
    Compare(CompareArgs),
    /// Sample responses to prompts from a policy checkpoint (rows id, prompt, response, sample).
    Generate(GenerateArgs),
    /// Turn a GGUF file (llama.cpp, Ollama) into a Hugging Face checkpoint directory (f32 weights, tokenizer, chat template).
    ImportGguf(ImportGgufArgs),
    /// Write a policy checkpoint (llama or qwen2, byte-level BPE tokenizer) as a GGUF file for llama.cpp and Ollama.
    ExportGguf(ExportGgufArgs),
    /// Check that two run (or stage) directories hold the same results: tensors bit for bit, table rows, files (exit 1 if not).
    DiffRuns(DiffRunsArgs),
}

#[derive(Args)]
struct DiffRunsArgs {
    /// A run or stage directory.
    a: PathBuf,
    /// The directory to compare it with.
    b: PathBuf,
}

#[derive(Args)]
struct ExportGgufArgs {
    /// The policy checkpoint directory.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The GGUF file to write.
    #[arg(long, value_name = "FILE.gguf")]
    out: PathBuf,
    /// How matrices are stored (vectors stay f32).
    #[arg(long = "type", value_enum, default_value = "f16")]
    kind: rlhf_model::gguf::ExportType,
}

#[derive(Args)]
struct ImportGgufArgs {
    /// The GGUF file (architecture llama or qwen2, byte-level BPE tokenizer).
    #[arg(value_name = "FILE.gguf")]
    gguf: PathBuf,
    /// The checkpoint directory to write (replaced atomically if it exists).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
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
    /// Use only the first N prompts (0: all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    max_prompts: usize,
    /// Sampling temperature; 0 is greedy decoding [default: the checkpoint's generation_config.json, else 1]
    #[arg(long)]
    temperature: Option<f64>,
    /// Nucleus sampling mass, 1 = off [default: generation_config.json, else 1]
    #[arg(long)]
    top_p: Option<f64>,
    /// Sample from the k most likely tokens only, 0 = off [default: generation_config.json, else 0]
    #[arg(long)]
    top_k: Option<i64>,
    /// [default: generation_config.json, else 96]
    #[arg(long)]
    max_new_tokens: Option<i64>,
    /// Put each prompt through the tokenizer's chat template (auto: when it has one) or not (none).
    #[arg(long, value_enum, default_value_t = ChatMode::Auto)]
    chat_template: ChatMode,
    /// Seed of the sampling streams (batch b uses seed + b).
    #[arg(long, default_value_t = SampleConfig::default().seed)]
    seed: u64,
    /// Rows (prompt × sample) per generation batch.
    #[arg(long, default_value_t = SampleConfig::default().batch_size)]
    batch_size: usize,
    #[command(flatten)]
    device: rlhf_model::DeviceArgs,
}

#[derive(Args)]
struct ReportArgs {
    /// The eval config (configs/eval.toml); built-in defaults without it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override a config field, e.g. --set data.num_prompts=32 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The run directory (its policies, reward models and data).
    #[arg(long, value_name = "DIR", default_value = "runs/default")]
    run_dir: PathBuf,
    #[command(flatten)]
    device: rlhf_model::DeviceArgs,
}

#[derive(Args)]
struct LogprobsArgs {
    /// The policy: a Hugging Face causal-LM checkpoint directory with its tokenizer.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    #[command(flatten)]
    table: TableArgs,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Put each row through the tokenizer's chat template (auto: when it has one) or not (none).
    #[arg(long, value_enum, default_value_t = ChatMode::Auto)]
    chat_template: ChatMode,
    #[command(flatten)]
    device: rlhf_model::DeviceArgs,
}

#[derive(Args)]
struct CompareArgs {
    /// Responses (id, prompt, response).
    a: PathBuf,
    /// Responses to compare against.
    b: PathBuf,
    /// The judge that scores both sides: one that gives scores (gold: the embedded task's rule).
    #[arg(long, default_value = "gold", value_name = "NAME")]
    judge: String,
    /// Bootstrap resamples for the 95% CI.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn report(args: &ReportArgs) -> anyhow::Result<()> {
    let config: EvalConfig = rlhf_data::config::load_config(args.config.as_deref(), &args.set)?;
    let gold_judge = config.gold_judge()?;
    let (evaluation, _writer) = evaluate(&args.run_dir, &config, gold_judge.as_deref(), args.device.resolve()?)?;
    let written = write_report(&evaluation, &config.flags)?;
    println!("report: {}\n        {}\n\n{}", written.report.display(), written.html.display(), written.headline);
    for flag in &written.flags {
        println!("flag: {}", flag.replace("**", ""));
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Some(command) = cli.command else { return report(&cli.report) };
    match command {
        Command::Report(args) => report(&args)?,
        Command::Logprobs(args) => {
            let rows = logprobs_file(
                &args.model,
                &args.table.data,
                &args.table.out,
                args.batch_size,
                args.chat_template,
                args.device.resolve()?,
            )?;
            tracing::info!(rows, out = %args.table.out.display(), "scored");
        }
        Command::Compare(args) => {
            let judge = scorer("--judge", &args.judge, args.seed, scorer_names())?;
            let w = compare_files(&args.a, &args.b, judge.as_ref(), args.bootstrap, args.seed)?;
            println!(
                "win rate of {} over {}: {:.1}% (95% CI {:.1}–{:.1}%, {} prompts)",
                args.a.display(),
                args.b.display(),
                100.0 * w.rate,
                100.0 * w.low,
                100.0 * w.high,
                w.n
            );
        }
        Command::Generate(args) => {
            let config = SampleConfig {
                samples_per_prompt: args.samples_per_prompt,
                seed: args.seed,
                batch_size: args.batch_size,
                ..SampleConfig::default()
            };
            let settings = SampleSettings {
                temperature: args.temperature,
                top_p: args.top_p,
                top_k: args.top_k,
                max_new_tokens: args.max_new_tokens,
                chat_template: args.chat_template,
            };
            let summary = generate_file(
                &args.model,
                &args.prompts,
                &args.out,
                config,
                &settings,
                args.max_prompts,
                args.device.resolve()?,
            )?;
            tracing::info!(prompts = summary.prompts, rows = summary.rows, empty = summary.empty, out = %args.out.display(), "generated");
        }
        Command::DiffRuns(args) => {
            let diff = rlhf_eval::run_diff::diff_runs(&args.a, &args.b)?;
            for difference in &diff.differences {
                println!("differs: {difference}");
            }
            if !diff.differences.is_empty() {
                anyhow::bail!(
                    "{} and {}: {} of {} files differ",
                    args.a.display(),
                    args.b.display(),
                    diff.differences.len(),
                    diff.compared
                );
            }
            println!("same: {} files in {} and {}", diff.compared, args.a.display(), args.b.display());
        }
        Command::ExportGguf(args) => {
            let tensors = rlhf_model::gguf::export_gguf(&args.model, &args.out, args.kind)?;
            println!("wrote {} ({tensors} tensors, {:?})", args.out.display(), args.kind);
        }
        Command::ImportGguf(args) => {
            let import = rlhf_model::gguf::import_gguf(&args.gguf, &args.out)?;
            let types: Vec<String> = import.tensor_types.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
            println!(
                "imported {} ({}, {:.1}M parameters; tensors: {}) into {}",
                args.gguf.display(),
                import.architecture,
                import.num_parameters as f64 / 1e6,
                types.join(", "),
                args.out.display()
            );
        }
    }
    Ok(())
}

rlhf_data::binary_main!("info", run);
