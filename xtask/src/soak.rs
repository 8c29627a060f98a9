//! `cargo xtask soak`: every stage killed with SIGKILL again and again, at seeded random moments,
//! and resumed, must end with the files of a run that was never interrupted.
//!
//! The inputs are one run of the `tiny` preset (`<work>/inputs`). For each soaked stage, its step of
//! that preset (with a few extra settings, e.g. checkpoints often enough to resume from) runs once
//! uninterrupted in a copy of the inputs (`<work>/<stage>/whole`), and then, in a fresh copy
//! (`<work>/<stage>/killed`), is started again and again until it finishes, each attempt killed
//! either after a random delay (up to the whole run's duration) or by the process itself at a kill
//! point inside a write (`RLHF_KILL_AT`, see `rlhf_data::atomic`: a file complete but not renamed,
//! a checkpoint half written, a final model not yet moved into place). A finished round is compared
//! with the uninterrupted run by `rlhf-eval diff-runs` (weights bit for bit, table rows, every other
//! file), and rounds repeat until the stage has been killed the asked number of times.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::pipeline::{Plan, Preset};

/// A stage as the soak runs it: a step of the `tiny` preset, extra arguments, and the run-directory
/// entries it writes (removed from the inputs before it runs).
struct SoakStage {
    name: &'static str,
    step: &'static str,
    extra: &'static [&'static str],
    outputs: &'static [&'static str],
}

/// The stages soaked, in order. Checkpoints are made frequent so that kills land between them.
const STAGES: &[SoakStage] = &[
    SoakStage { name: "base", step: "base", extra: &["--set", "train.checkpoint_every=6"], outputs: &["base"] },
    SoakStage { name: "sft", step: "sft", extra: &["--set", "train.checkpoint_every=4"], outputs: &["sft"] },
    SoakStage { name: "reward", step: "reward", extra: &["--set", "train.checkpoint_every=2"], outputs: &["rm"] },
    SoakStage { name: "ppo", step: "ppo", extra: &["--set", "ppo.iterations=4"], outputs: &["ppo"] },
    SoakStage {
        name: "dpo",
        step: "dpo",
        extra: &["--set", "train.checkpoint_every=2"],
        outputs: &["dpo", "data/comparisons.ref_logps.parquet"],
    },
    SoakStage {
        name: "online-dpo",
        step: "dpo",
        extra: &[
            "--set",
            "data.comparisons=",
            "--set",
            "online.rounds=2",
            "--set",
            "online.prompts_per_round=16",
            "--set",
            "train.checkpoint_every=3",
        ],
        outputs: &["dpo"],
    },
    SoakStage { name: "eval", step: "eval", extra: &[], outputs: &["eval"] },
];

/// The names [`run`] accepts in `SoakOptions::stages`.
pub fn stage_names() -> Vec<&'static str> {
    STAGES.iter().map(|s| s.name).collect()
}

/// What to soak, where, and how hard.
pub struct SoakOptions {
    /// The workspace root (presets, configs).
    pub root: PathBuf,
    /// Where the stage binaries are.
    pub bin_dir: PathBuf,
    /// Scratch space; emptied first.
    pub work_dir: PathBuf,
    /// Kills each stage must survive.
    pub kills: usize,
    pub seed: u64,
    /// Stage names ([`stage_names`]); empty: all of them.
    pub stages: Vec<String>,
}

/// One stage's soak.
#[derive(Debug, Serialize)]
pub struct StageSoak {
    pub stage: String,
    /// Kills (all SIGKILL) the stage was resumed from.
    pub kills: usize,
    /// Of those, by where they struck: after a random delay, or at each kill point.
    pub kills_by_moment: std::collections::BTreeMap<String, usize>,
    /// Runs to the end (each one compared with the uninterrupted run).
    pub rounds: usize,
    /// Attempts started in all.
    pub attempts: usize,
    /// What `rlhf-eval diff-runs` (or a failed attempt) reported; empty when every round matched.
    pub differences: Vec<String>,
    /// The uninterrupted run's wall time, seconds.
    pub whole_run_s: f64,
    /// The soak's wall time for the stage, seconds.
    pub soak_s: f64,
}

/// The soak of every chosen stage.
#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub seed: u64,
    pub kills_per_stage: usize,
    pub stages: Vec<StageSoak>,
}

impl SoakReport {
    /// Whether every stage survived its kills with no difference.
    pub fn passed(&self) -> bool {
        self.stages.iter().all(|s| s.kills >= self.kills_per_stage && s.differences.is_empty())
    }
}

/// The seeded schedule of kills.
struct Schedule(rand::rngs::StdRng);

impl Schedule {
    fn new(seed: u64) -> Self {
        Schedule(rand::SeedableRng::seed_from_u64(seed))
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        rand::Rng::random_range(&mut self.0, 0..n.max(1))
    }
}

/// Where one attempt is to be killed.
enum Kill {
    /// By the soak, this long after the start.
    After(Duration),
    /// By the process itself, on its `pass`-th pass through kill point `point`.
    At { point: &'static str, pass: u64 },
}

impl Kill {
    fn draw(schedule: &mut Schedule, whole_run: Duration) -> Kill {
        match schedule.below(4) {
            0 | 1 => Kill::After(whole_run.mul_f64((1 + schedule.below(1000)) as f64 / 1000.0)),
            2 => Kill::At { point: "file", pass: 1 + schedule.below(12) },
            _ => {
                if schedule.below(2) == 0 {
                    Kill::At { point: "checkpoint", pass: 1 + schedule.below(3) }
                } else {
                    Kill::At { point: "final", pass: 1 }
                }
            }
        }
    }
    fn moment(&self) -> String {
        match self {
            Kill::After(_) => "random delay".into(),
            Kill::At { point, .. } => format!("kill point {point}"),
        }
    }
}

/// How an attempt ended.
enum Ended {
    Finished,
    Killed,
    Failed(String),
}

/// Copies `from` to `to`, leaving out the run-directory entries `skip` (relative paths).
fn copy_tree(from: &Path, to: &Path, skip: &[PathBuf]) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if skip.contains(&source) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            copy_tree(&source, &target, skip)?;
        } else {
            std::fs::copy(&source, &target).with_context(|| format!("copying {}", source.display()))?;
        }
    }
    Ok(())
}

/// Runs the soak (see the module docs).
pub fn run(options: &SoakOptions) -> Result<SoakReport> {
    let chosen: Vec<&SoakStage> = if options.stages.is_empty() {
        STAGES.iter().collect()
    } else {
        options
            .stages
            .iter()
            .map(|name| {
                STAGES
                    .iter()
                    .find(|s| s.name == name)
                    .with_context(|| format!("no stage {name:?} to soak; the soak knows {}", stage_names().join(", ")))
            })
            .collect::<Result<_>>()?
    };
    if options.work_dir.exists() {
        std::fs::remove_dir_all(&options.work_dir)
            .with_context(|| format!("emptying {}", options.work_dir.display()))?;
    }
    let preset = Preset::load(&options.root, "tiny")?;
    let inputs = options.work_dir.join("inputs");
    let plan = Plan { bin_dir: options.bin_dir.clone(), ..Plan::new(&options.root, inputs.clone()) };
    let steps: Vec<_> = preset.steps.iter().collect();
    plan.run(&steps).context("making the soak's inputs (the tiny preset)")?;
    let mut schedule = Schedule::new(options.seed);
    let mut stages = Vec::new();
    for stage in chosen {
        stages.push(soak_stage(options, &preset, &inputs, stage, &mut schedule)?);
    }
    Ok(SoakReport { seed: options.seed, kills_per_stage: options.kills, stages })
}

fn soak_stage(
    options: &SoakOptions,
    preset: &Preset,
    inputs: &Path,
    stage: &SoakStage,
    schedule: &mut Schedule,
) -> Result<StageSoak> {
    let started = Instant::now();
    let dir = options.work_dir.join(stage.name);
    let step = preset.step(stage.step)?;
    let skip: Vec<PathBuf> = stage.outputs.iter().map(|o| inputs.join(o)).collect();
    let command = |run_dir: &Path| {
        let plan = Plan { bin_dir: options.bin_dir.clone(), ..Plan::new(&options.root, run_dir.to_path_buf()) };
        let mut cmd = Command::new(plan.binary(step));
        cmd.args(step.args.iter().map(|a| plan.expand(a)))
            .args(stage.extra)
            .current_dir(&options.root)
            .env("RUST_LOG", "warn")
            .env_remove(KILL_AT_ENV)
            .stdout(Stdio::null());
        cmd
    };
    let log = dir.join("attempt.log");
    let whole = dir.join("whole");
    copy_tree(inputs, &whole, &skip)?;
    let whole_started = Instant::now();
    if let Ended::Failed(why) = attempt(command(&whole), None, &log)? {
        bail!("soak {}: the uninterrupted run failed: {why}", stage.name);
    }
    let whole_run = whole_started.elapsed();
    let killed = dir.join("killed");
    let mut report = StageSoak {
        stage: stage.name.into(),
        kills: 0,
        kills_by_moment: Default::default(),
        rounds: 0,
        attempts: 0,
        differences: Vec::new(),
        whole_run_s: whole_run.as_secs_f64(),
        soak_s: 0.0,
    };
    // Rounds continue until the stage was killed often enough; the cap only stops a stage that the
    // kills never reach (e.g. one that ends before any kill point).
    while report.rounds == 0 || (report.kills < options.kills && report.rounds < 4 * options.kills.max(1)) {
        if killed.exists() {
            std::fs::remove_dir_all(&killed)?;
        }
        copy_tree(inputs, &killed, &skip)?;
        report.rounds += 1;
        loop {
            report.attempts += 1;
            // Once the stage has had its kills, the round runs to its end undisturbed.
            let kill = (report.kills < options.kills).then(|| Kill::draw(schedule, whole_run));
            match attempt(command(&killed), kill.as_ref(), &log)? {
                Ended::Killed => {
                    let Some(kill) = kill else {
                        report.differences.push(format!("round {}: killed by someone else", report.rounds));
                        break;
                    };
                    report.kills += 1;
                    *report.kills_by_moment.entry(kill.moment()).or_default() += 1;
                }
                Ended::Finished => break,
                Ended::Failed(why) => {
                    report.differences.push(format!("round {}: an attempt failed: {why}", report.rounds));
                    break;
                }
            }
        }
        report.differences.extend(diff_runs(options, &whole, &killed)?);
        if !report.differences.is_empty() {
            break;
        }
    }
    report.soak_s = started.elapsed().as_secs_f64();
    println!(
        "soak: {:<10} {:>3} kills survived in {} rounds ({} attempts), {} differences, {:.1}s",
        stage.name,
        report.kills,
        report.rounds,
        report.attempts,
        report.differences.len(),
        report.soak_s
    );
    for difference in &report.differences {
        println!("soak: {:<10} {difference}", stage.name);
    }
    Ok(report)
}

/// The variable that arms a kill point in a stage process (`rlhf_data::atomic::KILL_AT_ENV`).
const KILL_AT_ENV: &str = "RLHF_KILL_AT";

/// Runs `cmd` (stderr to `log`), killed as `kill` says.
fn attempt(mut cmd: Command, kill: Option<&Kill>, log: &Path) -> Result<Ended> {
    use std::os::unix::process::ExitStatusExt;
    let stderr = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stderr(stderr);
    let mut deadline = None;
    match kill {
        Some(Kill::At { point, pass }) => {
            cmd.env(KILL_AT_ENV, format!("{point}:{pass}"));
        }
        Some(Kill::After(delay)) => deadline = Some(Instant::now() + *delay),
        None => {}
    }
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            child.kill()?; // SIGKILL
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Ok(if status.success() {
        Ended::Finished
    } else if status.signal() == Some(9) {
        Ended::Killed
    } else {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        Ended::Failed(format!("{status}: {}", text.lines().last().unwrap_or("no output")))
    })
}

/// `rlhf-eval diff-runs whole killed`: the differences it prints (none when it exits 0).
fn diff_runs(options: &SoakOptions, whole: &Path, killed: &Path) -> Result<Vec<String>> {
    let bin = options.bin_dir.join("rlhf-eval");
    let out = Command::new(&bin)
        .arg("diff-runs")
        .args([whole, killed])
        .env("RUST_LOG", "warn")
        .output()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        return Ok(Vec::new());
    }
    let mut found: Vec<String> =
        stdout.lines().filter_map(|l| l.strip_prefix("differs: ")).map(|l| l.to_string()).collect();
    if found.is_empty() {
        found.push(format!("diff-runs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(found)
}
