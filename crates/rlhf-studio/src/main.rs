//! The `rlhf-studio` binary: `label` serves a ranking studio (set up from a samples table the first
//! time), `study` a blind preference study between policies, each printing every annotator's
//! personal link; `export` writes the tables from the journal (the server also does when it stops
//! on Ctrl-C or SIGTERM); `results` writes win rates, ratings and agreement, and closes a study;
//! `runs` serves the runs page alone (any server shows it with `--runs DIR`); `serve` a checkpoint:
//! the chat page and the OpenAI-compatible API (any server adds them with `--model DIR`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rlhf_model::ChatMode;
use rlhf_studio::engine::Engine;
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
    /// Serve a checkpoint: a chat page, and the OpenAI-compatible API (/v1/chat/completions, /v1/completions) for any client.
    Serve {
        #[command(flatten)]
        model: ModelArgs,
        /// Address to listen on; the page needs the personal link printed at start, the API the key.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
        /// Also show the runs page (/runs): the training curves and eval reports under this directory.
        #[arg(long, value_name = "DIR")]
        runs: Option<PathBuf>,
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
    /// Live sampling: a prompts table whose prompts `--model` answers whenever an annotator runs low. New studios only.
    #[arg(long, value_name = "FILE", requires = "model")]
    prompts: Option<PathBuf>,
    /// Live sampling: responses sampled per prompt (2 to 9). New studios only.
    #[arg(long, default_value_t = 4)]
    samples_per_prompt: u32,
    /// Live sampling: prompts sampled per refill. New studios only.
    #[arg(long, default_value_t = 8)]
    live_batch: usize,
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
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args)]
struct ModelArgs {
    /// A policy checkpoint to serve: the chat page (/chat), the OpenAI-compatible API (/v1) and, with --prompts, live sampling.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// The API's key (clients send `Authorization: Bearer <key>`); a fresh one is printed when unset.
    #[arg(long, env = "RLHF_STUDIO_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Put chat messages through the checkpoint's chat template (auto: when it has one) or not (none).
    #[arg(long, value_enum, default_value_t = ChatMode::Auto)]
    chat_template: ChatMode,
    #[command(flatten)]
    device: rlhf_model::DeviceArgs,
}

impl ModelArgs {
    /// The engine on `--model`, and the API key (given or fresh), when a model is served.
    fn load(self) -> anyhow::Result<Option<(Engine, String)>> {
        let Some(dir) = self.model else { return Ok(None) };
        let engine = Engine::load(&dir, self.device.resolve()?, self.chat_template)
            .with_context(|| format!("loading the model in {}", dir.display()))?;
        let key = match self.api_key {
            Some(key) => key,
            None => rlhf_studio::studio::secret()?,
        };
        Ok(Some((engine, key)))
    }
}

/// The lines announcing a served model.
fn model_lines(engine: &Engine, key: &str, link: Option<&str>) -> Vec<String> {
    let info = &engine.info;
    let template =
        if info.chat_template { "its chat template" } else { "no chat template: a chat is one user message" };
    let mut lines =
        vec![format!("rlhf-studio: serving `{}` ({} positions, {template})", info.name, info.max_positions)];
    match link {
        Some(link) => lines.push(format!("rlhf-studio: chat page: http://{{address}}/login/{link}")),
        None => lines.push("rlhf-studio: chat page: /chat (an annotator's link signs in)".into()),
    }
    lines.push(format!("rlhf-studio: OpenAI-compatible API: http://{{address}}/v1 (api key: {key})"));
    lines
}

fn parse_policy(value: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = value.split_once('=').ok_or_else(|| format!("`{value}`: expected NAME=FILE"))?;
    Ok((name.to_string(), PathBuf::from(file)))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Label(args) => {
            let live = args
                .prompts
                .map(|prompts| rlhf_studio::live::Live::new(&prompts, args.samples_per_prompt, args.live_batch))
                .transpose()?;
            serve(args.common, args.samples, Vec::new(), live)
        }
        Command::Study(args) => serve(args.common, None, args.policies, None),
        Command::Runs { runs, bind } => {
            let token = rlhf_studio::studio::secret()?;
            let served = Served {
                studio: None,
                runs: Some(runs),
                viewer_token: Some(token.clone()),
                engine: None,
                api_key: None,
                live: None,
            };
            listen(bind, served, |address| println!("rlhf-studio: runs page: http://{address}/login/{token}"))
        }
        Command::Serve { model, bind, runs } => {
            let (engine, key) = model.load()?.context("--model DIR names the checkpoint to serve")?;
            let token = rlhf_studio::studio::secret()?;
            let mut lines = model_lines(&engine, &key, Some(&token));
            if runs.is_some() {
                lines.push("rlhf-studio: runs page: http://{address}/runs".into());
            }
            let served = Served {
                studio: None,
                runs,
                viewer_token: Some(token),
                engine: Some(engine),
                api_key: Some(key),
                live: None,
            };
            listen(bind, served, |address| {
                for line in &lines {
                    println!("{}", line.replace("{address}", &address.to_string()));
                }
            })
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

fn serve(
    args: CommonArgs,
    samples: Option<PathBuf>,
    policies: Vec<(String, PathBuf)>,
    live: Option<rlhf_studio::live::Live>,
) -> anyhow::Result<()> {
    let setup = Setup {
        live,
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
    let (engine, api_key) = args.model.load()?.unzip();
    if let (Some(engine), Some(key)) = (&engine, &api_key) {
        links.extend(model_lines(engine, key, None));
    }
    let live = match (&studio.spec.live, &engine) {
        (Some(live), Some(engine)) => {
            links.push(format!(
                "rlhf-studio: live sampling: {} samples of {} prompts per refill from {}",
                live.samples_per_prompt,
                live.batch_prompts,
                live.prompts.display()
            ));
            Some(rlhf_studio::live::Feed::new(live, studio.spec.seed, &engine.info.defaults)?)
        }
        (Some(_), None) => {
            links.push("rlhf-studio: live sampling is off: start with --model DIR to refill the queue".into());
            None
        }
        (None, _) => None,
    };
    let served = Served { studio: Some(studio), runs: args.runs, viewer_token: None, engine, api_key, live };
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
