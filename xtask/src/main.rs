//! `cargo xtask`: the project's task runner (rust-analyzer style). It builds no tch code itself and
//! depends on no tch crate; it prepares libtorch, then drives `cargo` and the stage binaries.
//!
//! - `setup`     fetch libtorch 2.11.0 (CPU) through PyPI into `.libtorch/`, and Chromium for the
//!   browser tests (idempotent)
//! - `test`      the tidy gate (rustfmt, clippy), then the whole test suite (nextest or `cargo test`)
//! - `pipeline`  the end-to-end run on the embedded default task (or another preset)
//! - `stage`     one step of a pipeline preset on its own
//! - `bench`     the benchmarks; each writes `target/bench/<name>.json`
//! - `gpu-bundle` the binaries made ready for a CUDA machine without a toolchain (docs/gpu.md)
//! - `launch`    N ranks of a stage command on this machine (data parallel, torchrun's environment)
//! - `soak`      every stage SIGKILLed at random moments and resumed, compared with an uninterrupted run

mod chromium;
mod gloo;
mod gpu_bundle;
mod libtorch;
mod models;
mod pypi;
use xtask::{launch, pipeline, soak};

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Project tasks for rlhf-rs", version)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Fetch libtorch 2.11.0 (CPU) into .libtorch/ unless LIBTORCH or LIBTORCH_USE_PYTORCH is set; install Chromium (the browser tests) when missing.
    Setup,
    /// Check formatting and clippy, then build and run the whole test suite (cargo-nextest when installed, else cargo test).
    Test {
        /// Extra arguments passed to the test runner (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the RLHF pipeline (data -> base -> SFT -> samples + labels -> reward -> PPO and DPO).
    Pipeline(PipelineArgs),
    /// Run one step of a pipeline preset on its own (e.g. `cargo xtask stage sft`).
    Stage {
        /// The step's name in the preset (data, base, sft, sample, label, reward, ppo, dpo).
        step: String,
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Kill every stage with SIGKILL at seeded random moments (inside checkpoint writes and final saves
    /// too), resume it, and compare the result with an uninterrupted run; writes target/soak.json.
    Soak {
        /// Kills each stage must survive.
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// Seed of the kill schedule.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Soak only these stages (repeatable; default: all).
        #[arg(long = "stage", value_parser = clap::builder::PossibleValuesParser::new(soak::stage_names()))]
        stages: Vec<String>,
    },
    /// Run N ranks of a stage command on this machine, data parallel (RANK, LOCAL_RANK, WORLD_SIZE,
    /// MASTER_ADDR, MASTER_PORT set as torchrun does), e.g.
    /// `cargo xtask launch --nproc 2 -- target/release/rlhf-sft --run-dir runs/tiny`.
    Launch {
        #[arg(long, default_value_t = 2)]
        nproc: usize,
        /// The command each rank runs.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Pack the stage binaries and this runner for a CUDA machine that has PyTorch but no Rust
    /// toolchain: stripped, libtorch_cuda made a needed library, into target/gpu-bundle.tar.xz
    /// (docs/gpu.md; scripts/gpu-check.sh runs there).
    GpuBundle,
    /// Run a benchmark and write target/bench/<name>.json.
    Bench {
        /// Which benchmark; `all` runs every one but `gpu` (it needs CUDA).
        #[arg(value_parser = bench_names())]
        name: String,
    },
}

#[derive(clap::Args)]
struct PipelineArgs {
    /// The preset: configs/pipeline/<PRESET>.toml.
    #[arg(long, default_value = "default")]
    preset: String,
    /// Run directory; defaults to the preset's.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Run another binary for a step: --swap sft=path/to/my-sft (repeatable).
    #[arg(long, value_name = "STEP=BIN", value_parser = parse_swap)]
    swap: Vec<(String, String)>,
    /// A base checkpoint (Hugging Face directory) instead of pretraining one: the base step is skipped.
    #[arg(long, value_name = "DIR")]
    base: Option<PathBuf>,
    /// The task tables (prompts, prompts_heldout, demonstrations, demonstrations_heldout .parquet)
    /// instead of generating them: the data step is skipped.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Rounds of iterative RLHF: after PPO, sample from the policy, label, retrain the reward model on
    /// all comparisons so far and continue PPO, N - 1 more times.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=20))]
    rounds: u64,
    /// Run the stage binaries found in DIR instead of building them (a machine without cargo, e.g.
    /// the GPU bundle's `bin/`).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

fn parse_swap(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(step, bin)| (step.to_string(), bin.to_string()))
        .ok_or_else(|| format!("expected STEP=BIN, got {text:?}"))
}

/// Benchmarks: (name, package that owns the `[[bench]]` target of the same name).
const BENCHES: &[(&str, &str)] = &[
    ("data", "rlhf-data"),
    ("generate", "rlhf-model"),
    ("sft", "rlhf-sft"),
    ("reward", "rlhf-reward"),
    ("dpo", "rlhf-dpo"),
    ("ppo", "rlhf-ppo"),
    ("smollm2", "rlhf-model"),
    ("stream", "rlhf-eval"),
    ("gpu", "rlhf-tests"),
];

/// Benchmarks that need a CUDA device, left out of `all` (docs/gpu.md).
const GPU_BENCHES: &[&str] = &["gpu"];

fn bench_names() -> clap::builder::PossibleValuesParser {
    let names = BENCHES.iter().map(|(name, _)| *name).chain(["all"]);
    clap::builder::PossibleValuesParser::new(names)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.task {
        Task::Setup => libtorch::ensure(&root).and_then(|_| chromium::ensure()).map(|_| ()),
        Task::Test { args } => test(&root, &args),
        Task::Pipeline(args) => run_pipeline(&root, &args, None),
        Task::Stage { step, pipeline } => run_pipeline(&root, &pipeline, Some(&step)),
        Task::Bench { name } => bench(&root, &name),
        Task::Soak { kills, seed, stages } => run_soak(&root, kills, seed, stages),
        Task::Launch { nproc, command } => launch::run(nproc, &command),
        Task::GpuBundle => gpu_bundle(&root),
    }
}

/// The checkout this runner was built in, or the current directory when that is gone (the runner
/// carried to another machine in the GPU bundle, run from the repository root there).
fn workspace_root() -> PathBuf {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace");
    if built_in.join("Cargo.toml").is_file() {
        return built_in.to_path_buf();
    }
    std::env::current_dir().expect("a current directory")
}

/// A `cargo` command in the workspace root with the chosen libtorch in its environment.
fn cargo(root: &Path, torch: &libtorch::Libtorch) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root);
    torch.apply(&mut cmd);
    cmd
}

fn run(mut cmd: Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{:?} failed with {status}", cmd.get_program());
    }
    Ok(())
}

fn has_nextest() -> bool {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    tidy(root)?;
    let torch = libtorch::ensure(root)?;
    // The real-model tests (GGUF import, greedy decoding against transformers) read it.
    let smollm2 = models::ensure(root, "smollm2")?;
    // The studio's browser tests drive it.
    let browser = chromium::ensure()?;
    // One optimised build serves both the binaries the integration tests drive and the tests
    // themselves (tensor code is unbearably slow unoptimised, and building twice costs minutes).
    let mut build = cargo(root, &torch);
    build.args(["build", "--release", "--workspace", "--bins"]);
    run(build)?;
    let mut cmd = cargo(root, &torch);
    cmd.env("RLHF_SMOLLM2_GGUF", smollm2).env("CHROMIUM", browser);
    if has_nextest() {
        cmd.args(["nextest", "run", "--release", "--workspace", "--no-fail-fast"]);
    } else {
        // libtorch's RNG and thread pool are process-wide: tests that train must not share a
        // process concurrently (nextest gives each its own), so libtest runs them one at a time.
        cmd.args(["test", "--release", "--workspace", "--no-fail-fast"]).env("RUST_TEST_THREADS", "1");
    }
    cmd.args(extra);
    run(cmd)
}

/// The tidy gate (rust-analyzer style): the tree is formatted by the workspace's `rustfmt.toml`,
/// and clippy finds nothing (`-D warnings`) in any target. Runs before the build and the tests.
fn tidy(root: &Path) -> Result<()> {
    let mut fmt = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    fmt.current_dir(root).args(["fmt", "--all", "--", "--check"]);
    run(fmt).context("the tree is not formatted: run `cargo fmt --all`")?;
    let torch = libtorch::ensure(root)?;
    let mut clippy = cargo(root, &torch);
    clippy.args(["clippy", "--release", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    run(clippy).context("clippy found problems")
}

fn run_pipeline(root: &Path, args: &PipelineArgs, only: Option<&str>) -> Result<()> {
    let preset = pipeline::Preset::load(root, &args.preset)?;
    for input in &preset.requires {
        let given = match input.as_str() {
            "base" => args.base.is_some(),
            "data" => args.data.is_some(),
            other => bail!("preset {}: unknown required input {other:?}", args.preset),
        };
        if !given {
            bail!("preset {} needs --{input} DIR", args.preset);
        }
    }
    for model in &preset.models {
        models::ensure(root, model)?;
    }
    if args.bin_dir.is_none() {
        let torch = libtorch::ensure(root)?;
        let mut build = cargo(root, &torch);
        build.args(["build", "--release", "--workspace", "--bins"]);
        run(build)?;
    }
    let defaults = pipeline::Plan::new(root, args.run_dir.clone().unwrap_or_else(|| preset.run_dir.clone()));
    let plan = pipeline::Plan {
        bin_dir: args.bin_dir.as_ref().map(|d| absolute(d)).transpose()?.unwrap_or(defaults.bin_dir.clone()),
        swaps: args.swap.clone(),
        data: args.data.as_ref().map(|d| absolute(d)).transpose()?,
        base: args.base.as_ref().map(|d| absolute(d)).transpose()?,
        ..defaults
    };
    let steps = preset.plan_steps(args.rounds as usize)?;
    let steps: Vec<&pipeline::Step> = match only {
        Some(name) => vec![steps.iter().find(|s| s.name == name).map_or_else(|| preset.step(name), Ok)?],
        None => steps.iter().collect(),
    };
    plan.run(&steps)
}

fn gpu_bundle(root: &Path) -> Result<()> {
    let torch = libtorch::ensure(root)?;
    let mut build = cargo(root, &torch);
    build.args(["build", "--release", "--workspace", "--bins"]);
    run(build)?;
    let mut bench = cargo(root, &torch);
    bench.args(["bench", "--no-run", "-p", "rlhf-tests", "--bench", "gpu", "--message-format=json-render-diagnostics"]);
    let gpu_bench = gpu_bundle::built_executable(bench, "gpu")?;
    let target = pipeline::target_dir(root);
    gpu_bundle::make(&target, &target.join("release"), &[("bench-gpu", gpu_bench)])
}

fn run_soak(root: &Path, kills: usize, seed: u64, stages: Vec<String>) -> Result<()> {
    let torch = libtorch::ensure(root)?;
    let mut build = cargo(root, &torch);
    build.args(["build", "--release", "--workspace", "--bins"]);
    run(build)?;
    let target = pipeline::target_dir(root);
    let options = soak::SoakOptions {
        root: root.to_path_buf(),
        bin_dir: target.join("release"),
        work_dir: target.join("soak"),
        kills,
        seed,
        stages,
    };
    let report = soak::run(&options)?;
    let out = target.join("soak.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!("\n| stage | kills survived | rounds | differences | uninterrupted run |\n|---|---|---|---|---|");
    for stage in &report.stages {
        println!(
            "| {} | {} | {} | {} | {:.1} s |",
            stage.stage,
            stage.kills,
            stage.rounds,
            stage.differences.len(),
            stage.whole_run_s
        );
    }
    println!("xtask: wrote {}", out.display());
    if !report.passed() {
        bail!("the soak found differences or a stage was killed fewer than {kills} times");
    }
    Ok(())
}

/// `dir` made absolute against the current directory (steps run in the workspace root); it must exist.
fn absolute(dir: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(dir).with_context(|| format!("{}: not found", dir.display()))
}

fn bench(root: &Path, name: &str) -> Result<()> {
    let torch = libtorch::ensure(root)?;
    let out_dir = pipeline::target_dir(root).join("bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let chosen = |bench: &str| if name == "all" { !GPU_BENCHES.contains(&bench) } else { bench == name };
    for (bench, package) in BENCHES.iter().filter(|(bench, _)| chosen(bench)) {
        let mut cmd = cargo(root, &torch);
        cmd.args(["bench", "-p", package, "--bench", bench]).env("RLHF_BENCH_DIR", &out_dir);
        if *bench == "smollm2" {
            cmd.env("RLHF_SMOLLM2_GGUF", models::ensure(root, "smollm2")?);
        }
        run(cmd)?;
        println!("xtask: wrote {}", out_dir.join(format!("{bench}.json")).display());
    }
    Ok(())
}
