//! Files that appear whole or not at all, what a killed writer leaves behind, and the kill points
//! the soak test (`cargo xtask soak`) kills a process at.
//!
//! Every file rlhf-rs writes goes to a hidden temporary name next to its destination and is renamed
//! into place once complete ([`write_atomically`], and the Parquet writers through the same
//! [`PendingFile`]); checkpoint directories and `final/` are built the same way
//! (`rlhf_model::checkpoint::save_dir_atomically`, `rlhf_train::train_state`). A process killed
//! mid-write leaves only such a temporary ([`is_leftover`]); a stage removes its directory's
//! leftovers once it holds the directory's lock ([`remove_leftovers`]).
//!
//! [`kill_point`] marks the moments inside those writes where `RLHF_KILL_AT=<point>:<n>` makes the
//! process SIGKILL itself on its n-th pass: `file` (a file complete under its temporary name, not
//! renamed yet), `checkpoint` (a checkpoint directory with its model files but no optimizer or
//! state yet) and `final` (a final model directory complete under its temporary name). Unset, a
//! kill point costs one atomic load.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The environment variable that arms a kill point: `<point>:<n>` (e.g. `checkpoint:2`).
pub const KILL_AT_ENV: &str = "RLHF_KILL_AT";

/// SIGKILLs this process on its n-th pass through `point` when `RLHF_KILL_AT=<point>:<n>` (see the
/// module docs); does nothing otherwise.
pub fn kill_point(point: &str) {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static PASSES: AtomicU64 = AtomicU64::new(0);
    let armed = ARMED.get_or_init(|| {
        let value = std::env::var(KILL_AT_ENV).ok()?;
        let (name, pass) = value.split_once(':')?;
        Some((name.to_string(), pass.parse().ok()?))
    });
    if let Some((name, pass)) = armed {
        if name == point && PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *pass {
            // SAFETY: kill(2) on our own pid with a valid signal number; it does not return.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

/// Whether `name` is a temporary a killed writer may have left: a hidden name (`.`) ending in
/// `.tmp` (files) or holding `.tmp-` (directories being built). The names of the previous copy a
/// replacement moves aside (`.old-`) are not leftovers: after a kill mid-replacement that copy may
/// be the only one.
pub fn is_leftover(name: &str) -> bool {
    name.starts_with('.') && (name.ends_with(".tmp") || name.contains(".tmp-"))
}

/// Removes every leftover temporary ([`is_leftover`]) under `dir` (recursively; a missing `dir` has
/// none) and returns how many it removed. Only for a directory whose writer's lock is held: a live
/// writer's temporaries look the same.
pub fn remove_leftovers(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let entries = match fs::read_dir(&next) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(Error::io(&next, "list", error)),
        };
        for entry in entries {
            let entry = entry.map_err(|error| Error::io(&next, "list", error))?;
            let path = entry.path();
            let is_dir = entry.file_type().map_err(|error| Error::io(&path, "inspect", error))?.is_dir();
            if entry.file_name().to_str().is_some_and(is_leftover) {
                let gone = if is_dir { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                gone.map_err(|error| Error::io(&path, "remove a leftover temporary", error))?;
                removed += 1;
            } else if is_dir {
                pending.push(path);
            }
        }
    }
    Ok(removed)
}

/// Writes `bytes` to `path` atomically: a hidden temporary next to it, renamed into place (the
/// directory is created if missing). On error `path` is untouched and no temporary is left.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let (pending, mut file) = PendingFile::create(path)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|error| Error::io(path, "write", error))?;
    drop(file);
    pending.rename_to(path)
}

/// A temporary file that is deleted when dropped, unless it was renamed into place. Its name is
/// hidden, so readers of a table directory skip it, and a leftover ([`is_leftover`]).
pub(crate) struct PendingFile {
    temp: PathBuf,
    renamed: bool,
}

impl PendingFile {
    /// A fresh temporary for `destination` (creating its directory), open for writing.
    pub(crate) fn create(destination: &Path) -> Result<(Self, File)> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let directory = match destination.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        fs::create_dir_all(directory).map_err(|error| Error::io(destination, "create its directory", error))?;
        let name = destination.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
        let temp =
            directory.join(format!(".{name}.{}.{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|error| Error::io(destination, "create a temporary file", error))?;
        Ok((PendingFile { temp, renamed: false }, file))
    }

    /// Moves the finished temporary to `destination` (the `file` kill point comes first).
    pub(crate) fn rename_to(mut self, destination: &Path) -> Result<()> {
        kill_point("file");
        fs::rename(&self.temp, destination)
            .map_err(|error| Error::io(destination, "move the finished file into place", error))?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_hidden_temporaries_and_only_they_are_removed() {
        for name in [".metrics.parquet.12.0.tmp", ".tmp-step-4-991", ".final.tmp-77", ".config.toml.3.0.tmp"] {
            assert!(is_leftover(name), "{name}");
        }
        for name in [".lock", "part-00000.parquet", ".old-step-4-991", ".final.old-77", ".metrics.parquet.parts"] {
            assert!(!is_leftover(name), "{name}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::create_dir_all(dir.join("checkpoints/.tmp-step-2-5")).unwrap();
        fs::create_dir_all(dir.join("checkpoints/step-1")).unwrap();
        fs::write(dir.join("checkpoints/.tmp-step-2-5/model.safetensors"), b"half").unwrap();
        fs::write(dir.join(".config.toml.5.0.tmp"), b"half").unwrap();
        fs::write(dir.join(".lock"), b"5").unwrap();
        write_atomically(&dir.join("config.toml"), b"seed = 1\n").unwrap();
        assert_eq!(remove_leftovers(dir).unwrap(), 2);
        let mut left: Vec<_> =
            walk(dir).into_iter().map(|p| p.strip_prefix(dir).unwrap().display().to_string()).collect();
        left.sort();
        assert_eq!(left, [".lock", "checkpoints", "checkpoints/step-1", "config.toml"]);
        assert_eq!(fs::read(dir.join("config.toml")).unwrap(), b"seed = 1\n");
        assert_eq!(remove_leftovers(&dir.join("missing")).unwrap(), 0);
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            }
            out.push(path);
        }
        out
    }
}
