//! The stage contract in one place: what a stage directory holds, when a stage counts as finished,
//! how relative paths resolve, how a caller runs a stage ([`RunOptions`]) and what a run did
//! ([`Outcome`]).
//!
//! A stage directory (`<run>/<stage>/`) holds `config.toml` (the resolved config), `final/` (the
//! finished model: a Hugging Face checkpoint directory, or a reward-model ensemble of them),
//! `checkpoints/step-N/` (see [`crate::train_state`]) and `metrics.parquet` (long-format metric
//! rows). `final/` only ever appears by an atomic rename of a complete directory, so its presence
//! is what "finished" means: a stage that finds it skips, one that finds checkpoints resumes.
//! `.lock` makes one process at a time its writer ([`StageDir::begin`]).

use std::path::{Path, PathBuf};

use rlhf_model::Placement;
use serde::Serialize;

/// How to run, as chosen by the caller (not part of the config).
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Device and dtype of the models.
    pub placement: Placement,
    /// Draw a progress bar (the binaries set it when stderr is a terminal).
    pub progress: bool,
}

/// What a stage run did; `S` is the stage's training summary.
#[derive(Debug)]
pub enum Outcome<S> {
    /// The stage directory already held its final model; nothing was done.
    AlreadyDone(PathBuf),
    /// Trained (from scratch or from a checkpoint) and saved the final model to `dir`.
    Trained { dir: PathBuf, summary: S },
}

impl RunOptions {
    /// Training on `device`, a progress bar when stderr is a terminal. f16 is refused here, before
    /// anything is written: it needs loss scaling (bf16 trains through fp32 master weights).
    pub fn for_training(device: &rlhf_model::DeviceArgs) -> crate::Result<Self> {
        use std::io::IsTerminal;
        if device.dtype == rlhf_model::DType::F16 {
            return Err(crate::Error::Invalid(
                "--dtype f16: training in f16 needs loss scaling, which rlhf-rs does not do; use --dtype bf16 (fp32 master weights) or f32".into(),
            ));
        }
        Ok(RunOptions { placement: device.resolve()?, progress: std::io::stderr().is_terminal() })
    }
}

/// One stage's directory and the names inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageDir {
    pub root: PathBuf,
}

impl StageDir {
    /// `<run_dir>/<stage>`.
    pub fn new(run_dir: &Path, stage: &str) -> Self {
        StageDir { root: run_dir.join(stage) }
    }
    /// The finished model.
    pub fn final_dir(&self) -> PathBuf {
        self.root.join("final")
    }
    /// Resumable checkpoints (`step-N/`).
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// The stage's metrics table.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.parquet")
    }
    /// The resolved config the stage ran with.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// Whether the stage has finished: `final/` exists (it is only ever renamed into place whole).
    pub fn is_finished(&self) -> bool {
        self.final_dir().is_dir()
    }
    /// The lock file that makes one process at a time the writer of this stage.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }
    /// Starts writing the stage, once its inputs are checked: creates the directory, takes the
    /// writer's lock ([`StageLock`], held until it is dropped), refuses a `config` its checkpoints
    /// were not written under ([`crate::train_state::check_resumable`]: a refused resume keeps the
    /// `config.toml` it was written under) and writes `config` as `config.toml`.
    /// A second process on the same stage gets one error naming the holder; a lock left by a killed
    /// process is free (the operating system drops it with its holder) and is taken over.
    ///
    /// In a data-parallel run only the writer rank (0) does this; the others wait for it, check
    /// the same resume, and hold no lock.
    pub fn begin(&self, config: &impl Serialize) -> crate::Result<StageLock> {
        let world = rlhf_dist::world()?;
        let check = || {
            crate::train_state::check_resumable(&self.checkpoints(), &self.config_hash(config)?, &self.config_file())
        };
        if !world.is_writer() {
            world.barrier()?;
            check()?;
            return Ok(StageLock { _file: None });
        }
        let lock = self.lock()?;
        check()?;
        self.write_config(config)?;
        world.barrier()?;
        Ok(lock)
    }
    /// The first half of [`StageDir::begin`]: the writer's lock, taken before anything in the
    /// directory is read for a resume or changed (a second process must not rewind the metrics of
    /// the one running); then the temporaries a killed writer left are removed
    /// ([`rlhf_data::atomic::remove_leftovers`]).
    fn lock(&self) -> crate::Result<StageLock> {
        let lock = StageLock::acquire(&self.lock_file())?;
        if self.is_finished() {
            return Err(crate::Error::file(&self.root, "was finished by another process while this one started"));
        }
        let removed = rlhf_data::atomic::remove_leftovers(&self.root)?;
        if removed > 0 {
            tracing::info!(dir = %self.root.display(), removed, "removed the temporaries a killed run left");
        }
        Ok(lock)
    }
    /// Writes `config` as the stage's `config.toml` (the writer's lock held).
    fn write_config(&self, config: &impl Serialize) -> crate::Result<()> {
        Ok(rlhf_data::config::write_config(config, &self.config_file())?)
    }
    /// The fingerprint its checkpoints carry of `config` (see [`crate::train_state::config_hash_in`]:
    /// paths inside the run directory, this directory's parent, count by their place in it).
    pub fn config_hash(&self, config: &impl Serialize) -> crate::Result<String> {
        crate::train_state::config_hash_in(config, self.root.parent())
    }
    /// `Outcome::AlreadyDone` when finished.
    pub fn already_done<S>(&self) -> Option<Outcome<S>> {
        self.is_finished().then(|| Outcome::AlreadyDone(self.final_dir()))
    }
}

/// Whether this process writes the run's files: true unless it is a non-zero rank of a
/// data-parallel run (see `rlhf_dist`).
pub fn is_writer() -> bool {
    rlhf_dist::world().map_or(true, rlhf_dist::World::is_writer)
}

/// Refuses a multi-process launch for `what`, which does not run data parallel yet: at once, from
/// the launch environment, before waiting for the other ranks.
pub fn single_process_only(what: &str) -> crate::Result<()> {
    if rlhf_dist::Launch::from_vars(|name| std::env::var(name).ok())?.is_some() {
        return Err(crate::Error::Invalid(format!(
            "{what} does not run data parallel yet: run it as one process (SFT, the reward model and \
             offline DPO do)"
        )));
    }
    Ok(())
}

/// What a stage binary says it did with `dir`: "saved DIR", or on a non-zero rank of a
/// data-parallel run, that rank 0 did.
pub fn saved(dir: &Path) -> String {
    match rlhf_dist::world() {
        Ok(world) if !world.is_writer() => {
            format!("rank {} trained its share; rank 0 saved {}", world.rank(), dir.display())
        }
        _ => format!("saved {}", dir.display()),
    }
}

/// The lock file's name in a stage (or eval) directory.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive advisory lock (`flock`) on a lock file, released when dropped or when the process
/// dies; the file holds the holder's process id for the error a second writer gets.
#[derive(Debug)]
pub struct StageLock {
    _file: Option<std::fs::File>,
}

impl StageLock {
    /// Takes the lock on `path` (creating it and its directory), or fails naming the holder.
    pub fn acquire(path: &Path) -> crate::Result<Self> {
        use std::io::{Read, Seek, Write};
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| crate::Error::io(path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder =
                    if holder.is_empty() { "another process".to_string() } else { format!("process {holder}") };
                return Err(crate::Error::file(
                    dir,
                    format!("{holder} is writing here (lock {}); wait for it to finish or stop it", path.display()),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(crate::Error::io(path, e)),
        }
        let mut write_pid = || -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            write!(file, "{}", std::process::id())?;
            file.flush()
        };
        write_pid().map_err(|e| crate::Error::io(path, e))?;
        Ok(StageLock { _file: Some(file) })
    }
}

/// A path from a stage config: absolute or empty as given, else under the run directory.
pub fn resolve(run_dir: &Path, path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    if path.as_os_str().is_empty() || path.is_absolute() {
        path.to_path_buf()
    } else {
        run_dir.join(path)
    }
}

/// Fails unless the checkpoint directory `dir` that `setting` names exists; `hint` says where it
/// comes from (e.g. "run `rlhf-sft` first").
pub fn require_checkpoint_dir(dir: &Path, setting: &str, hint: &str) -> crate::Result<()> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(crate::Error::file(dir, format!("{setting}: checkpoint directory not found ({hint})")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_writer_at_a_time_and_the_lock_is_free_once_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let stage = StageDir::new(tmp.path(), "sft");
        let first = stage.begin(&serde_json::json!({"seed": 1})).unwrap();
        let err = stage.begin(&serde_json::json!({"seed": 1})).unwrap_err().to_string();
        let pid = std::process::id();
        assert!(err.contains(&format!("process {pid} is writing here")) && err.contains(".lock"), "{err}");
        drop(first);
        let _again = stage.begin(&serde_json::json!({"seed": 1})).unwrap();
        assert!(stage.config_file().is_file());
    }

    use super::*;

    #[test]
    fn relative_paths_resolve_under_the_run_directory() {
        let run = Path::new("/runs/a");
        assert_eq!(resolve(run, "sft/final"), PathBuf::from("/runs/a/sft/final"));
        assert_eq!(resolve(run, "/data/x.parquet"), PathBuf::from("/data/x.parquet"));
        assert_eq!(resolve(run, ""), PathBuf::new());
    }

    #[test]
    fn a_stage_is_finished_once_final_exists() {
        let dir = tempfile::tempdir().unwrap();
        let stage = StageDir::new(dir.path(), "sft");
        assert!(!stage.is_finished() && stage.already_done::<()>().is_none());
        std::fs::create_dir_all(stage.final_dir()).unwrap();
        assert!(stage.is_finished());
        assert!(matches!(stage.already_done::<()>(), Some(Outcome::AlreadyDone(d)) if d == stage.final_dir()));
    }
}
