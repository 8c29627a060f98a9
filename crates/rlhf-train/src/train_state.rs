//! Training checkpoints for resume, shared by every trainer.
//!
//! A checkpoint is a directory `<checkpoints>/step-N/` holding each model's tensors
//! (`<name>.safetensors`), the optimizer state (`optimizer.safetensors`) and `train_state.json`
//! (step, epoch, data position, RNG state, config hash, trainer extras). It is written under a
//! temporary name and renamed into place, so a crash mid-save never leaves a `step-N` that
//! [`latest`] would pick. [`prune`] keeps the newest K; [`resume`] restores the newest one into a
//! run's models and optimizer after checking it was written under the same config.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use rand_chacha::rand_core::SeedableRng;
use rlhf_model::AdamW;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use crate::error::{Error, Result};

/// The random number generator trainers use for data order and sampling; its state is saved
/// in checkpoints ([`rng_state`], [`restore_rng`]).
pub type TrainRng = rand_chacha::ChaCha8Rng;

const STATE_FILE: &str = "train_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STEP_PREFIX: &str = "step-";
/// Prefix of directories being written (`.tmp-step-N-<pid>`) or replaced (`.old-step-N-<pid>`).
const PARTIAL_PREFIXES: [&str; 2] = [".tmp-", ".old-"];
const FORMAT_VERSION: u32 = 1;

/// Where a trainer stands; everything besides tensors that a resume needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: u64,
    pub epoch: u64,
    /// Samples of the current epoch's order already consumed.
    pub data_position: u64,
    /// The trainer's [`TrainRng`], from [`rng_state`].
    pub rng_state: Vec<u64>,
    /// Seed to give [`rlhf_model::device::seed_everything`] on resume (libtorch's generator state is
    /// not reachable through tch).
    pub tch_seed: u64,
    /// [`config_hash`] of the run's resolved config.
    pub config_hash: String,
    /// Trainer-specific state (e.g. an adaptive KL coefficient).
    pub extra: serde_json::Value,
}

/// `train_state.json`: the state plus what makes the checkpoint complete.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format_version: u32,
    /// Files of the checkpoint besides this one.
    files: Vec<String>,
    state: TrainState,
}

/// Writes `state`, each named model and the optimizer to `<checkpoints_dir>/step-<state.step>`
/// atomically (replacing an existing checkpoint of that step) and returns that directory.
/// Model names become file names (`model` -> `model.safetensors`).
pub fn save(
    checkpoints_dir: &Path,
    state: &TrainState,
    models: &[(&str, &VarStore)],
    optimizer: &AdamW,
) -> Result<PathBuf> {
    let step_name = format!("{STEP_PREFIX}{}", state.step);
    let final_dir = checkpoints_dir.join(&step_name);
    let temp_dir = checkpoints_dir.join(format!(".tmp-{step_name}-{}", std::process::id()));
    if temp_dir.exists() {
        fs::remove_dir_all(&temp_dir).map_err(|err| Error::io(&temp_dir, err))?;
    }
    fs::create_dir_all(&temp_dir).map_err(|err| Error::io(&temp_dir, err))?;
    // A failed write (a full disk) leaves no temporary behind, and the previous checkpoint stands.
    if let Err(err) = write_checkpoint_files(&temp_dir, state, models, optimizer) {
        let _ = fs::remove_dir_all(&temp_dir);
        return Err(err);
    }

    if final_dir.exists() {
        let old_dir = checkpoints_dir.join(format!(".old-{step_name}-{}", std::process::id()));
        fs::rename(&final_dir, &old_dir).map_err(|err| Error::io(&final_dir, err))?;
        fs::rename(&temp_dir, &final_dir).map_err(|err| Error::io(&final_dir, err))?;
        fs::remove_dir_all(&old_dir).map_err(|err| Error::io(&old_dir, err))?;
    } else {
        fs::rename(&temp_dir, &final_dir).map_err(|err| Error::io(&final_dir, err))?;
    }
    sync(checkpoints_dir)?;
    tracing::info!(dir = %final_dir.display(), "saved training checkpoint");
    Ok(final_dir)
}

/// Fills a checkpoint directory: each model's tensors, the optimizer, then the manifest, synced.
fn write_checkpoint_files(
    temp_dir: &Path,
    state: &TrainState,
    models: &[(&str, &VarStore)],
    optimizer: &AdamW,
) -> Result<()> {
    let mut files = Vec::with_capacity(models.len() + 1);
    for (name, vs) in models {
        let file = model_file(name)?;
        let path = temp_dir.join(&file);
        vs.save(&path).map_err(|err| Error::checkpoint(&path, err))?;
        files.push(file);
    }
    rlhf_data::atomic::kill_point("checkpoint");
    optimizer.save(temp_dir.join(OPTIMIZER_FILE))?;
    files.push(OPTIMIZER_FILE.to_owned());
    let manifest = Manifest { format_version: FORMAT_VERSION, files, state: state.clone() };
    let state_path = temp_dir.join(STATE_FILE);
    let json =
        serde_json::to_string_pretty(&manifest).map_err(|source| Error::Json { path: state_path.clone(), source })?;
    fs::write(&state_path, json).map_err(|err| Error::io(&state_path, err))?;
    for file in manifest.files.iter().map(String::as_str).chain([STATE_FILE]) {
        sync(&temp_dir.join(file))?;
    }
    sync(temp_dir)
}

/// The newest complete checkpoint in `checkpoints_dir`, if any (a missing directory has none).
pub fn latest(checkpoints_dir: &Path) -> Result<Option<PathBuf>> {
    Ok(complete_checkpoints(checkpoints_dir)?.pop().map(|(_, dir)| dir))
}

/// Loads a checkpoint written by [`save`] into the named models (each store's variables are
/// overwritten in place, names and shapes checked) and the optimizer, and returns its state.
pub fn load(checkpoint_dir: &Path, models: &[(&str, &VarStore)], optimizer: &mut AdamW) -> Result<TrainState> {
    let manifest = read_manifest(checkpoint_dir)?;
    for (name, store) in models {
        let file = model_file(name)?;
        if !manifest.files.contains(&file) {
            return Err(Error::checkpoint(checkpoint_dir, format!("holds no model named `{name}` ({file})")));
        }
        restore_store(store, &checkpoint_dir.join(&file))?;
    }
    optimizer.load(checkpoint_dir.join(OPTIMIZER_FILE))?;
    Ok(manifest.state)
}

/// Continues a run: loads the newest checkpoint in `checkpoints_dir` (if any) into `models` and
/// `optimizer` and returns it with its state; a checkpoint written under another config hash is
/// refused, naming `config_file` (the config the run was started with).
pub fn resume(
    checkpoints_dir: &Path,
    models: &[(&str, &VarStore)],
    optimizer: &mut AdamW,
    config_hash: &str,
    config_file: &Path,
) -> Result<Option<(PathBuf, TrainState)>> {
    let Some(dir) = latest(checkpoints_dir)? else { return Ok(None) };
    check_written_under(&dir, config_hash, config_file)?;
    let state = load(&dir, models, optimizer)?;
    tracing::info!(step = state.step, dir = %dir.display(), "resuming");
    Ok(Some((dir, state)))
}

/// Refuses, before anything is written, a config that the checkpoints in `checkpoints_dir` were not
/// written under: the newest checkpoint there and the newest in each of its subdirectories that
/// hold checkpoints of their own (an ensemble's members) must carry `config_hash`. The error names
/// the checkpoint and `config_file`, the config the run was started with.
pub fn check_resumable(checkpoints_dir: &Path, config_hash: &str, config_file: &Path) -> Result<()> {
    let nested = list_dir(checkpoints_dir)?.into_iter().filter(|(name, _)| !name.starts_with(STEP_PREFIX));
    for dir in std::iter::once(checkpoints_dir.to_path_buf()).chain(nested.map(|(_, dir)| dir)) {
        if let Some(newest) = latest(&dir)? {
            check_written_under(&newest, config_hash, config_file)?;
        }
    }
    Ok(())
}

fn check_written_under(checkpoint_dir: &Path, config_hash: &str, config_file: &Path) -> Result<()> {
    if read_manifest(checkpoint_dir)?.state.config_hash == config_hash {
        return Ok(());
    }
    Err(Error::checkpoint(
        checkpoint_dir,
        format!(
            "was written under a different config; use the config in {} or start in a new directory",
            config_file.display()
        ),
    ))
}

/// Copies a safetensors file's tensors into `store`'s variables, checking that both hold the same
/// names and shapes.
pub fn restore_store(store: &VarStore, file: &Path) -> Result<()> {
    let mut saved: HashMap<String, Tensor> =
        Tensor::read_safetensors(file).map_err(|e| Error::checkpoint(file, e))?.into_iter().collect();
    for (name, var) in store.variables() {
        let src = saved
            .remove(&name)
            .ok_or_else(|| Error::checkpoint(file, format!("has no tensor `{name}` for this model")))?;
        if src.size() != var.size() {
            return Err(Error::checkpoint(
                file,
                format!("tensor `{name}` has shape {:?}, the model's has {:?}", src.size(), var.size()),
            ));
        }
        tch::no_grad(|| var.shallow_clone().f_copy_(&src))?;
    }
    match saved.keys().min() {
        Some(name) => Err(Error::checkpoint(file, format!("tensor `{name}` belongs to no variable of this model"))),
        None => Ok(()),
    }
}

/// Whether every variable of `stores` is finite (checked before a state is saved).
pub fn all_finite(stores: &[(&str, &VarStore)]) -> bool {
    stores.iter().all(|(_, store)| store.variables().values().all(|t| t.isfinite().all().int64_value(&[]) != 0))
}

/// Deletes all but the newest `keep_last` complete checkpoints, what is left of a checkpoint whose
/// deletion was interrupted (a `step-N` that is no longer complete), and leftovers of interrupted
/// saves. A checkpoint is renamed to a hidden temporary before it is deleted, so a process killed
/// mid-deletion leaves a leftover ([`rlhf_data::atomic::is_leftover`]), never a partial `step-N`.
pub fn prune(checkpoints_dir: &Path, keep_last: usize) -> Result<()> {
    let complete = complete_checkpoints(checkpoints_dir)?;
    let excess = complete.len().saturating_sub(keep_last);
    let kept: Vec<PathBuf> = complete.iter().skip(excess).map(|(_, dir)| dir.clone()).collect();
    let listed = list_dir(checkpoints_dir)?;
    let stale = listed.iter().filter(|(name, dir)| name.starts_with(STEP_PREFIX) && !kept.contains(dir));
    for (name, dir) in stale {
        let doomed = checkpoints_dir.join(format!(".tmp-pruned-{name}-{}", std::process::id()));
        fs::rename(dir, &doomed).map_err(|err| Error::io(dir, err))?;
        fs::remove_dir_all(&doomed).map_err(|err| Error::io(&doomed, err))?;
    }
    let partial = listed.iter().filter(|(name, _)| PARTIAL_PREFIXES.iter().any(|prefix| name.starts_with(prefix)));
    for (_, dir) in partial {
        fs::remove_dir_all(dir).map_err(|err| Error::io(dir, err))?;
    }
    Ok(())
}

/// A short, stable fingerprint of a config (FNV-1a over its canonical JSON), to tell whether a
/// checkpoint was written under the same settings.
pub fn config_hash(config: &impl Serialize) -> Result<String> {
    config_hash_in(config, None)
}

/// [`config_hash`] of a config whose paths under `run_dir` (if given) count by their place in the
/// run directory, not where the directory is: a run moved or copied elsewhere still resumes, and
/// two runs in two places write the same checkpoints.
pub fn config_hash_in(config: &impl Serialize, run_dir: Option<&Path>) -> Result<String> {
    let mut canonical = serde_json::to_value(config)
        .and_then(|value| serde_json::to_string(&value))
        .map_err(|err| Error::Invalid(format!("config cannot be serialized for hashing: {err}")))?;
    if let Some(run_dir) = run_dir.and_then(Path::to_str).filter(|dir| !dir.is_empty()) {
        let quoted = serde_json::to_string(run_dir).expect("a string serializes");
        canonical = canonical.replace(quoted.trim_matches('"'), "<run>");
    }
    let hash = canonical
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    Ok(format!("{hash:016x}"))
}

/// The full state of a [`TrainRng`] as seven words: seed (4), stream (1), word position (2).
pub fn rng_state(rng: &TrainRng) -> Vec<u64> {
    let seed = rng.get_seed();
    let word_pos = rng.get_word_pos();
    let mut words: Vec<u64> =
        seed.chunks_exact(8).map(|chunk| u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"))).collect();
    words.extend([rng.get_stream(), word_pos as u64, (word_pos >> 64) as u64]);
    words
}

/// Rebuilds a [`TrainRng`] from [`rng_state`]'s words; it continues the same random sequence.
pub fn restore_rng(words: &[u64]) -> Result<TrainRng> {
    let &[s0, s1, s2, s3, stream, pos_low, pos_high] = words else {
        return Err(Error::Invalid(format!("an RNG state has 7 words, got {}", words.len())));
    };
    let mut seed = [0u8; 32];
    for (chunk, word) in seed.chunks_exact_mut(8).zip([s0, s1, s2, s3]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    let mut rng = TrainRng::from_seed(seed);
    rng.set_stream(stream);
    rng.set_word_pos(u128::from(pos_low) | (u128::from(pos_high) << 64));
    Ok(rng)
}

fn model_file(name: &str) -> Result<String> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid || format!("{name}.safetensors") == OPTIMIZER_FILE {
        return Err(Error::Invalid(format!(
            "checkpoint model name `{name}` must be non-empty ASCII letters, digits, '-' or '_', and not `optimizer`"
        )));
    }
    Ok(format!("{name}.safetensors"))
}

/// Complete `step-N` checkpoints, oldest first.
fn complete_checkpoints(checkpoints_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found: Vec<(u64, PathBuf)> = list_dir(checkpoints_dir)?
        .into_iter()
        .filter_map(|(name, dir)| Some((name.strip_prefix(STEP_PREFIX)?.parse().ok()?, dir)))
        .filter(|(_, dir)| {
            read_manifest(dir).is_ok_and(|manifest| manifest.files.iter().all(|file| dir.join(file).is_file()))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Subdirectories of `dir` as (name, path); none when `dir` does not exist.
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::io(dir, err)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| Error::io(dir, err))?;
        if entry.file_type().map_err(|err| Error::io(entry.path(), err))?.is_dir() {
            dirs.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
        }
    }
    Ok(dirs)
}

fn read_manifest(checkpoint_dir: &Path) -> Result<Manifest> {
    let path = checkpoint_dir.join(STATE_FILE);
    let text = fs::read_to_string(&path).map_err(|err| Error::io(&path, err))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|source| Error::Json { path: path.clone(), source })?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(Error::checkpoint(
            &path,
            format!("format_version {} is not the supported {FORMAT_VERSION}", manifest.format_version),
        ));
    }
    Ok(manifest)
}

/// Flushes a file or directory to disk, so a rename that follows never exposes unwritten data.
fn sync(path: &Path) -> Result<()> {
    File::open(path).and_then(|file| file.sync_all()).map_err(|err| Error::io(path, err))
}
