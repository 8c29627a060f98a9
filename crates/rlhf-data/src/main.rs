//! `rlhf-data`: import datasets into rlhf-rs tables, inspect, validate and concatenate tables.
//!
//! The only place in the crate that reads argv or the environment (`RUST_LOG`) and installs a
//! tracing subscriber. Errors are printed as one `error: …` line on stderr, with exit code 1.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rlhf_data::{import, inspect, validate_table, Format, ImportOptions, Kind};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "rlhf-data", version, about = "Import, inspect and validate rlhf-rs data tables")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import a JSON Lines or Parquet dataset in a Hugging Face layout as a Parquet table
    Import(ImportArgs),
    /// Show a table's kind, schema, row count and first rows
    Inspect(InspectArgs),
    /// Check a table against a kind's schema and rules (non-empty texts, valid rankings, ...)
    Validate(ValidateArgs),
    /// Concatenate tables of one kind into one (e.g. the comparisons of several RLHF rounds)
    Concat(ConcatArgs),
    /// Turn comparisons into unpaired labels for KTO (chosen: desirable, rejected: undesirable)
    Unpair(UnpairArgs),
}

#[derive(Debug, Args)]
struct UnpairArgs {
    /// A comparisons table
    input: PathBuf,
    /// Output feedback table (id, prompt, completion, label), written atomically
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct ConcatArgs {
    /// Input tables, in order
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output Parquet table, written atomically
    #[arg(long)]
    out: PathBuf,
    /// The kind every input must be; only its columns are kept
    #[arg(long, value_enum)]
    kind: Kind,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Input: JSON Lines (one object per line) or Parquet, recognised by its content
    input: PathBuf,
    /// Output Parquet table, written atomically (nothing is left behind on error)
    output: PathBuf,
    /// The table to produce
    #[arg(long, value_parser = importable_kinds())]
    kind: Kind,
    /// The input layout
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,
}

/// The kinds `import` can produce.
fn importable_kinds() -> impl TypedValueParser<Value = Kind> {
    PossibleValuesParser::new(["prompts", "demonstrations", "comparisons", "rankings", "feedback"])
        .map(|name| Kind::from_str(&name, false).expect("a listed kind"))
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// A Parquet table: a file, or a directory of part files read as one table
    file: PathBuf,
    /// How many rows to show
    #[arg(long, default_value_t = 3)]
    rows: usize,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// A Parquet table: a file, or a directory of part files read as one table
    file: PathBuf,
    /// The kind of table it must be
    #[arg(long, value_enum)]
    kind: Kind,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Import(args) => {
            let options = ImportOptions { kind: args.kind, format: args.format };
            let summary = import(&args.input, &args.output, &options)?;
            println!(
                "wrote {} {} rows to {} (format {})",
                summary.rows,
                args.kind,
                args.output.display(),
                summary.format
            );
            if let Some(id) = &summary.first_repeated_id {
                eprintln!(
                    "warning: {} rows repeat an earlier row's id (the first: {id:?}); kept, but check that the input was not concatenated twice",
                    summary.repeated_ids
                );
            }
        }
        Command::Inspect(args) => print!("{}", inspect(&args.file, args.rows)?),
        Command::Concat(args) => {
            let rows = rlhf_data::concat_tables(args.kind, &args.inputs, &args.out)?;
            println!("wrote {rows} {} rows to {}", args.kind, args.out.display());
        }
        Command::Unpair(args) => {
            let comparisons: Vec<rlhf_data::Comparison> = rlhf_data::read_records(&args.input)?;
            anyhow::ensure!(!comparisons.is_empty(), "{}: has no comparisons to unpair", args.input.display());
            let labels = rlhf_data::unpair_comparisons(&comparisons);
            let rows = rlhf_data::write_records(&args.out, &labels)?;
            println!(
                "wrote {rows} feedback rows ({} comparisons unpaired) to {}",
                comparisons.len(),
                args.out.display()
            );
        }
        Command::Validate(args) => {
            let rows = validate_table(&args.file, args.kind)?;
            println!("ok: {} is a valid {} table with {rows} rows", args.file.display(), args.kind);
        }
    }
    Ok(())
}

rlhf_data::binary_main!("warn", run);
