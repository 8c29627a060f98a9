//! What the stages' kill-and-resume tests share: killing a stage process with SIGKILL once it has
//! written a checkpoint, and comparing two checkpoints' tensors bit for bit.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

/// Whether `checkpoints` holds a complete `step-N` checkpoint.
pub fn has_checkpoint(checkpoints: &Path) -> bool {
    crate::train_state::latest(checkpoints).is_ok_and(|latest| latest.is_some())
}

/// Spawns `cmd`, waits (up to `timeout`) until `checkpoints` holds a checkpoint, and kills the
/// process with SIGKILL; fails if it ended first or had already written `final_dir`.
pub fn kill_after_first_checkpoint(
    cmd: &mut Command,
    checkpoints: &Path,
    final_dir: &Path,
    timeout: Duration,
) -> Result<()> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting the stage")?;
    let deadline = Instant::now() + timeout;
    while !has_checkpoint(checkpoints) {
        ensure!(child.try_wait()?.is_none(), "the run ended before its first checkpoint");
        ensure!(Instant::now() < deadline, "no checkpoint in {} after {timeout:?}", checkpoints.display());
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill()?; // SIGKILL
    child.wait()?;
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
