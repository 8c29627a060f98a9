//! Data parallel SFT (two processes on the CPU, PyTorch's Gloo through rlhf-dist): the same global
//! batch gives the one-process weights; a rank killed mid-run makes the other fail at once with one
//! error; the run, started again with two ranks, resumes from rank 0's checkpoint to the weights
//! of an uninterrupted two-rank run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use rlhf_data::config::write_config;
use rlhf_train::testing::{has_checkpoint, max_abs_difference, spawn_ranks, stage_command, wait_ranks};

fn sft(config: &Path, run_dir: &Path) -> Command {
    stage_command(env!("CARGO_BIN_EXE_rlhf-sft"), config, run_dir, &[])
}

fn weights(run: &Path) -> std::path::PathBuf {
    run.join("sft/final/model.safetensors")
}

#[test]
fn two_ranks_train_the_weights_of_one_and_resume_after_a_kill() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = common::tiny_base(&tmp.path().join("base"));
    let (demos, heldout) = common::small_task_files(&tmp.path().join("data"));
    // A global batch of two micro-batches of 4: one process accumulates both, two ranks take one each.
    let mut config = common::sft_config(&base, &demos, &heldout, 40);
    (config.train.batch_size, config.train.grad_accum) = (4, 2);
    config.train.eval_every = 20;
    let file = tmp.path().join("sft.toml");
    write_config(&config, &file)?;

    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let out = sft(&file, &one).output()?;
    ensure!(out.status.success(), "one process: {}", String::from_utf8_lossy(&out.stderr));
    wait_ranks(spawn_ranks(2, |_| sft(&file, &two))?)?;
    let diff = max_abs_difference(&weights(&one), &weights(&two))?;
    ensure!(diff <= 1e-6, "two ranks differ from one process by {diff:e} (more than 1e-6)");
    eprintln!("two ranks vs one process: max |difference| {diff:e}");
    ensure!(two.join("sft/metrics.parquet").exists() && two.join("sft/config.toml").is_file());

    // Kill rank 1 once rank 0 has written a checkpoint: rank 0 must stop by itself, soon, saying why.
    config.train.max_steps = 200;
    config.train.checkpoint_every = 5;
    let file = tmp.path().join("sft-long.toml");
    write_config(&config, &file)?;
    let (two, killed) = (tmp.path().join("two-long"), tmp.path().join("killed"));
    wait_ranks(spawn_ranks(2, |_| sft(&file, &two))?)?;
    let mut ranks = spawn_ranks(2, |_| sft(&file, &killed))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !has_checkpoint(&killed.join("sft/checkpoints")) {
        ensure!(Instant::now() < deadline, "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    ranks[1].kill()?;
    ranks[1].wait()?;
    let since = Instant::now();
    let rank0 = ranks.remove(0).wait_with_output()?;
    let log = String::from_utf8_lossy(&rank0.stderr);
    let last = log.lines().last().unwrap_or_default();
    ensure!(!rank0.status.success(), "rank 0 finished although rank 1 was killed");
    ensure!(since.elapsed() < Duration::from_secs(60), "rank 0 took {:?} to notice", since.elapsed());
    ensure!(last.starts_with("error: rank 0 of 2:") && last.contains("failed"), "rank 0 said:\n{log}");
    ensure!(!killed.join("sft/final").exists(), "the killed run wrote final/");

    wait_ranks(spawn_ranks(2, |_| sft(&file, &killed))?)?;
    let diff = max_abs_difference(&weights(&two), &weights(&killed))?;
    ensure!(diff == 0.0, "the resumed two-rank run differs from the uninterrupted one by {diff:e}");
    Ok(())
}
