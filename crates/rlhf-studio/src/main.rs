//! The `rlhf-studio` binary: `label` serves a ranking studio (set up from a samples table the first
//! time), `study` a blind preference study between policies, each printing every annotator's
//! personal link; `export` writes the tables from the journal (the server also does when it stops
//! on Ctrl-C or SIGTERM); `results` writes win rates, ratings and agreement, and closes a study;
//! `runs` serves the runs page alone (any server shows it with `--runs DIR`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rlhf_studio::server::Served;
use rlhf_studio::{export, results, server, ResultsOptions, Setup, Studio};

#[derive(Parser)]
#[command(
    name = "rlhf-studio",
    version,
    about = "People in the loop: rank responses in the browser; labels become comparisons"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a labelling studio: annotators rank each prompt's responses, best first.
    Label(LabelArgs),
    /// Serve a blind preference study: annotators vote A, B, tie or both bad on two policies' responses.
    Study(StudyArgs),
    /// Write <dir>/results.md and results.json: win rates, Bradley-Terry ratings, agreement; closes a study.
    Results {
        /// The studio directory (no server may be serving it).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Also measure each annotator against the embedded task's gold judge.
        #[arg(long)]
        gold: bool,
    },
    /// Serve the runs page alone: every stage's training curves (live) and the eval reports under a runs directory.
    Runs {
        /// The runs directory (e.g. runs/).
        #[arg(long, value_name = "DIR", default_value = "runs")]
        runs: PathBuf,
        /// Address to listen on; the page needs the personal link printed at start.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
    },
    /// Write <dir>/rankings.parquet and <dir>/comparisons.parquet from the studio's journal.
    Export {
        /// The studio directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Args)]
struct LabelArgs {
    /// The samples table to label (`rlhf-eval generate` output: K rows per prompt id). New studios only.
    #[arg(long, value_name = "FILE")]
    samples: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct StudyArgs {
    /// A policy and its responses table (e.g. a run's eval/responses_ppo.parquet), as NAME=FILE; twice or more. New studies only.
    #[arg(long = "policy", value_name = "NAME=FILE", value_parser = parse_policy)]
    policies: Vec<(String, PathBuf)>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct CommonArgs {
    /// The studio directory (made on first use; a later start continues it).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Annotator names, comma-separated (a-z, 0-9, -, _). New studios only.
    #[arg(long, value_delimiter = ',')]
    annotators: Vec<String>,
    /// How many annotators label each item. New studios only.
    #[arg(long, default_value_t = 1)]
    overlap: usize,
    /// Seed of the item and response orders. New studios only.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Guidelines shown beside every item (a markdown file). New studios only.
    #[arg(long, value_name = "FILE.md")]
    guidelines: Option<PathBuf>,
    /// Address to listen on. Every page needs an annotator's personal link, on loopback too.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Also show the runs page (/runs): the training curves and eval reports under this directory.
    #[arg(long, value_name = "DIR")]
    runs: Option<PathBuf>,
}

fn parse_policy(value: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = value.split_once('=').ok_or_else(|| format!("`{value}`: expected NAME=FILE"))?;
    Ok((name.to_string(), PathBuf::from(file)))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Label(args) => serve(args.common, args.samples, Vec::new()),
        Command::Study(args) => serve(args.common, None, args.policies),
        Command::Runs { runs, bind } => {
            let token = rlhf_studio::studio::secret()?;
            let served = Served { studio: None, runs: Some(runs), viewer_token: Some(token.clone()) };
            listen(bind, served, |address| println!("rlhf-studio: runs page: http://{address}/login/{token}"))
        }
        Command::Results { dir, gold } => {
            print!("{}", results(&dir, ResultsOptions { gold, ..ResultsOptions::default() })?);
            Ok(())
        }
        Command::Export { dir } => {
            let done = export(&dir)?;
            println!(
                "{}: {} rankings, {} comparisons ({} labels with ties, {} skips)",
                dir.display(),
                done.rankings,
                done.comparisons,
                done.with_ties,
                done.skipped
            );
            Ok(())
        }
    }
}

fn serve(args: CommonArgs, samples: Option<PathBuf>, policies: Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    let setup = Setup {
        samples,
        policies,
        annotators: args.annotators,
        overlap: args.overlap,
        seed: args.seed,
        guidelines: args.guidelines,
    };
    let studio = Studio::open(&args.dir, &setup)?;
    let mut links = vec![format!("rlhf-studio: {} items", studio.items.len())];
    for (index, annotator) in studio.spec.annotators.iter().enumerate() {
        let (labelled, assigned) = studio.progress(index);
        links.push(format!(
            "  {}: http://{{address}}/login/{}  ({labelled}/{assigned} labelled)",
            annotator.name, annotator.token
        ));
    }
    let served = Served { studio: Some(studio), runs: args.runs, viewer_token: None };
    listen(args.bind, served, |address| {
        for line in &links {
            println!("{}", line.replace("{address}", &address.to_string()));
        }
    })?;
    let done = export(&args.dir)?;
    println!("rlhf-studio: stopped; wrote {} rankings and {} comparisons", done.rankings, done.comparisons);
    Ok(())
}

/// Listens on `bind`, calls `announce` with the address (the links), and serves until Ctrl-C or SIGTERM.
fn listen(bind: SocketAddr, served: Served, announce: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| format!("listening on {bind}"))?;
        let address = listener.local_addr()?;
        if !address.ip().is_loopback() {
            tracing::warn!(%address, "listening beyond this machine: send each person only their own link");
        }
        println!("rlhf-studio: listening on http://{address}");
        announce(address);
        println!("rlhf-studio: ready (Ctrl-C stops the server)");
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, server::router(served)).with_graceful_shutdown(stopped()).await?;
        anyhow::Ok(())
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

rlhf_data::binary_main!("info", run);
