//! Storage faults, on a small tmpfs mounted for the test (as root, or else as root of a user
//! namespace of its own):
//! a run directory that fills up mid-run fails with one `error:` line naming the file and the
//! problem, leaves no half-written checkpoint, final model or table (no temporary either), and keeps
//! its previous checkpoint loadable: moved to a disk with room, the same command resumes and ends
//! with the weights of an uninterrupted run. A read-only run directory fails before it writes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use rlhf_data::config::write_config;
use rlhf_train::testing::{assert_same_tensors, stage_command};

/// Whether this process may mount (root, or root of its own user namespace). When not, runs the
/// test `name` again in a new user and mount namespace (`unshare -rm`, as an unprivileged user
/// may where the kernel allows it) and returns `true` once it passed there.
fn ran_in_a_namespace(name: &str) -> Result<bool> {
    let uid = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|line| line.strip_prefix("Uid:").map(|ids| ids.split_whitespace().next().unwrap_or("").to_string()));
    if uid.as_deref() == Some("0") {
        return Ok(false);
    }
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount"])
        .arg(std::env::current_exe()?)
        .args(["--exact", name, "--nocapture"])
        .output()
        .context("this test mounts a small tmpfs: it needs root or `unshare` (util-linux)")?;
    ensure!(out.status.success(), "{name} in a user namespace: {}", String::from_utf8_lossy(&out.stderr));
    Ok(true)
}

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs with `options` (e.g. `size=1m`, `ro`) on `dir`.
    fn mount(dir: &Path, options: &str) -> Result<Tmpfs> {
        std::fs::create_dir_all(dir)?;
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(dir).output()?;
        ensure!(
            out.status.success(),
            "mounting a tmpfs on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Tmpfs { dir: dir.to_path_buf() })
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

/// Copies the tree `from` to `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
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
    if ran_in_a_namespace("a_full_disk_fails_cleanly_and_the_run_resumes_once_there_is_room")? {
        return Ok(());
    }
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
        let size = format!("size={}", (needed as f64 * share) as u64);
        let disk = Tmpfs::mount(&tmp.path().join(format!("disk-{i}")), &size)?;
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

        // Room again: the run moved to a disk with space resumes from its last checkpoint.
        let roomy = tmp.path().join(format!("roomy-{i}"));
        copy_dir(&run, &roomy)?;
        drop(disk);
        let stage = roomy.join("sft");
        let out = sft(&config_path, &roomy).env("RUST_LOG", "info").output()?;
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
    if ran_in_a_namespace("a_read_only_run_directory_fails_before_writing")? {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let base = common::tiny_base(&tmp.path().join("base"));
    let (demos, heldout) = common::small_task_files(&tmp.path().join("data"));
    let config_path = tmp.path().join("sft.toml");
    write_config(&common::sft_config(&base, &demos, &heldout, 5), &config_path)?;
    let disk = Tmpfs::mount(&tmp.path().join("disk"), "ro,size=1m")?;
    let run = disk.dir.join("run");
    let out = sft(&config_path, &run).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    ensure!(!out.status.success(), "wrote to a read-only directory");
    ensure!(
        lines.len() == 1 && lines[0].contains(&run.display().to_string()) && lines[0].contains("Read-only file system"),
        "not one error line naming the read-only directory: {stderr}"
    );
    ensure!(std::fs::read_dir(&disk.dir)?.next().is_none(), "something was written");
    Ok(())
}
