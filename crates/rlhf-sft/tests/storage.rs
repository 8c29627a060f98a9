//! Storage faults, on a small tmpfs mounted for the test (it needs the right to mount, as root has):
//! a run directory that fills up mid-run fails with one `error:` line naming the file and the
//! problem, leaves no half-written checkpoint, final model or table (no temporary either), and keeps
//! its previous checkpoint loadable: once there is room again the same command resumes and ends
//! with the weights of an uninterrupted run. A read-only run directory fails before it writes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use rlhf_data::config::write_config;
use rlhf_train::testing::{assert_same_tensors, stage_command};

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Result<Tmpfs> {
        std::fs::create_dir_all(dir)?;
        let out =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"]).arg(dir).output()?;
        ensure!(
            out.status.success(),
            "this test mounts a small tmpfs and needs the right to (root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Tmpfs { dir: dir.to_path_buf() })
    }

    /// Remounts with options `options` (e.g. `size=64m`, `ro`).
    fn remount(&self, options: &str) -> Result<()> {
        let out = Command::new("mount").args(["-o", &format!("remount,{options}")]).arg(&self.dir).output()?;
        ensure!(out.status.success(), "remount {options}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Bytes of every file under `dir`.
fn usage(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                usage(&path)
            } else {
                entry.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

/// Every leftover temporary under `dir`.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_name().to_str().is_some_and(rlhf_data::atomic::is_leftover) {
            found.push(path);
        } else if path.is_dir() {
            found.extend(leftovers(&path));
        }
    }
    found
}

fn sft(config: &Path, run_dir: &Path) -> Command {
    stage_command(env!("CARGO_BIN_EXE_rlhf-sft"), config, run_dir, &[])
}

#[test]
fn a_full_disk_fails_cleanly_and_the_run_resumes_once_there_is_room() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = common::tiny_base(&tmp.path().join("base"));
    let (demos, heldout) = common::small_task_files(&tmp.path().join("data"));
    let mut config = common::sft_config(&base, &demos, &heldout, 40);
    config.train.checkpoint_every = 5;
    let config_path = tmp.path().join("sft.toml");
    write_config(&config, &config_path)?;
    let whole = tmp.path().join("whole");
    let out = sft(&config_path, &whole).output()?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let needed = usage(&whole.join("sft"));

    // Disks that fill at different moments: in a checkpoint, a metrics flush or the final save.
    let mut resumed = 0;
    for (i, share) in [0.25, 0.5, 0.75].into_iter().enumerate() {
        let disk = Tmpfs::mount(&tmp.path().join(format!("disk-{i}")), (needed as f64 * share) as u64)?;
        let run = disk.dir.join("run");
        let out = sft(&config_path, &run).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        ensure!(!out.status.success(), "a disk of {share} of the run's size sufficed");
        ensure!(
            lines.len() == 1 && lines[0].starts_with("error: ") && lines[0].contains("No space left on device"),
            "not one error line about the full disk: {stderr}"
        );
        ensure!(lines[0].contains(&run.display().to_string()), "the error names no file of the run: {}", lines[0]);
        println!("a disk of {share} of the run's size: {}", lines[0]);
        let stage = run.join("sft");
        ensure!(!stage.join("final").exists(), "a full disk left a final model");
        ensure!(leftovers(&stage).is_empty(), "a full disk left temporaries: {:?}", leftovers(&stage));
        let checkpoints = stage.join("checkpoints");
        let resumed_from = rlhf_train::train_state::latest(&checkpoints)?;
        if resumed_from.is_some() {
            rlhf_data::read_records::<rlhf_data::Metric>(stage.join("metrics.parquet"))
                .context("the metrics table is still readable")?;
        }
        resumed += usize::from(resumed_from.is_some());

        disk.remount("size=64m")?;
        let out = sft(&config_path, &run).env("RUST_LOG", "info").output()?;
        let log = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.success(), "the run did not finish once there was room: {log}");
        ensure!(resumed_from.is_none() || log.contains("resuming"), "did not resume from {resumed_from:?}: {log}");
        assert_same_tensors(&whole.join("sft/final/model.safetensors"), &stage.join("final/model.safetensors"))?;
    }
    ensure!(resumed > 0, "no disk filled after a checkpoint, so none tested the resume");
    Ok(())
}

#[test]
fn a_read_only_run_directory_fails_before_writing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = common::tiny_base(&tmp.path().join("base"));
    let (demos, heldout) = common::small_task_files(&tmp.path().join("data"));
    let config_path = tmp.path().join("sft.toml");
    write_config(&common::sft_config(&base, &demos, &heldout, 5), &config_path)?;
    let disk = Tmpfs::mount(&tmp.path().join("disk"), 1 << 20)?;
    let run = disk.dir.join("run");
    std::fs::create_dir(&run)?;
    disk.remount("ro")?;
    let out = sft(&config_path, &run).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    ensure!(!out.status.success(), "wrote to a read-only directory");
    ensure!(
        lines.len() == 1 && lines[0].contains(&run.display().to_string()) && lines[0].contains("Read-only file system"),
        "not one error line naming the read-only directory: {stderr}"
    );
    ensure!(std::fs::read_dir(&run)?.next().is_none(), "something was written");
    Ok(())
}
