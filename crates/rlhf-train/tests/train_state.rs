//! Training checkpoints: atomic save, finding the newest complete one, bit-exact resume, pruning.

use anyhow::Result;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rlhf_model::device::seed_everything;
use rlhf_model::{AdamW, AdamWConfig, LrSchedule, ScheduleKind};
use rlhf_train::train_state::{self, config_hash, restore_rng, rng_state};
use rlhf_train::{TrainRng, TrainState};
use std::path::{Path, PathBuf};
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

const TCH_SEED: u64 = 7;
const SCHEDULE: LrSchedule =
    LrSchedule { kind: ScheduleKind::Cosine, peak_lr: 0.05, warmup_steps: 2, total_steps: 8, min_lr_ratio: 0.1 };

/// A tiny trainer: a linear layer fitted to random targets, with data from its own RNG and
/// noise from libtorch's generator (re-seeded every step from the saved seed).
struct Trainer {
    vs: VarStore,
    layer: nn::Linear,
    optimizer: AdamW,
    rng: TrainRng,
    step: u64,
}

impl Trainer {
    fn new() -> Self {
        seed_everything(TCH_SEED);
        let vs = VarStore::new(Device::Cpu);
        let layer = nn::linear(vs.root() / "layer", 4, 3, Default::default());
        let optimizer = AdamW::new(&vs, AdamWConfig::default());
        Trainer { vs, layer, optimizer, rng: TrainRng::seed_from_u64(42), step: 0 }
    }

    fn train_step(&mut self) -> Result<()> {
        let inputs: Vec<f32> = (0..8).map(|_| (self.rng.next_u32() % 1000) as f32 / 500.0 - 1.0).collect();
        let inputs = Tensor::from_slice(&inputs).reshape([2, 4]);
        seed_everything(TCH_SEED + self.step);
        let targets = Tensor::randn([2, 3], (Kind::Float, Device::Cpu));
        self.optimizer.zero_grad();
        let loss = (self.layer.forward(&inputs) - targets).square().mean(Kind::Float);
        loss.backward();
        self.optimizer.clip_grad_norm(1.0)?;
        self.optimizer.step(SCHEDULE.lr_at(self.step))?;
        self.step += 1;
        Ok(())
    }

    fn state(&self) -> TrainState {
        TrainState {
            step: self.step,
            epoch: 0,
            data_position: self.step * 2,
            rng_state: rng_state(&self.rng),
            tch_seed: TCH_SEED,
            config_hash: config_hash(&SCHEDULE).unwrap(),
            extra: serde_json::json!({ "kl_coef": 0.1 }),
        }
    }

    fn save(&self, dir: &Path) -> Result<PathBuf> {
        Ok(train_state::save(dir, &self.state(), &[("model", &self.vs)], &self.optimizer)?)
    }

    fn resume(checkpoint: &Path) -> Result<Self> {
        let mut trainer = Trainer::new();
        let state = train_state::load(checkpoint, &[("model", &mut trainer.vs)], &mut trainer.optimizer)?;
        trainer.rng = restore_rng(&state.rng_state)?;
        trainer.step = state.step;
        Ok(trainer)
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        let mut weights: Vec<_> = self.vs.variables().into_iter().collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        weights
    }
}

#[test]
fn a_resumed_run_finishes_bit_identical_to_an_uninterrupted_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut uninterrupted = Trainer::new();
    for _ in 0..3 {
        uninterrupted.train_step()?;
    }
    let saved = uninterrupted.save(dir.path())?;
    assert_eq!(saved, dir.path().join("step-3"));
    let state_at_save = uninterrupted.state();
    for _ in 3..8 {
        uninterrupted.train_step()?;
    }

    let latest = train_state::latest(dir.path())?.expect("a checkpoint");
    assert_eq!(latest, saved);
    let mut resumed = Trainer::resume(&latest)?;
    assert_eq!(resumed.state(), state_at_save);
    for _ in 3..8 {
        resumed.train_step()?;
    }
    for ((name, original), (_, continued)) in uninterrupted.weights().iter().zip(resumed.weights()) {
        assert!(original.equal(&continued), "{name} differs after resume");
    }
    assert_eq!(rng_state(&resumed.rng), rng_state(&uninterrupted.rng));
    Ok(())
}

#[test]
fn the_saved_state_round_trips() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut trainer = Trainer::new();
    trainer.train_step()?;
    let checkpoint = trainer.save(dir.path())?;
    let mut fresh = Trainer::new();
    let state = train_state::load(&checkpoint, &[("model", &mut fresh.vs)], &mut fresh.optimizer)?;
    assert_eq!(state, trainer.state());
    Ok(())
}

#[test]
fn latest_picks_the_highest_complete_step_and_ignores_partial_saves() -> Result<()> {
    let dir = tempfile::tempdir()?;
    assert_eq!(train_state::latest(&dir.path().join("missing"))?, None);
    assert_eq!(train_state::latest(dir.path())?, None);

    let mut trainer = Trainer::new();
    for _ in 0..9 {
        trainer.train_step()?;
    }
    trainer.save(dir.path())?;
    trainer.train_step()?;
    let step_10 = trainer.save(dir.path())?;

    // What a crash leaves behind: a temp dir being written, a step dir without its state file,
    // one whose state lists a missing file, and one with a broken state file.
    let partial = dir.path().join(".tmp-step-11-999");
    std::fs::create_dir_all(&partial)?;
    std::fs::copy(step_10.join("model.safetensors"), partial.join("model.safetensors"))?;
    copy_dir(&step_10, &dir.path().join("step-12"))?;
    std::fs::remove_file(dir.path().join("step-12/train_state.json"))?;
    copy_dir(&step_10, &dir.path().join("step-13"))?;
    std::fs::remove_file(dir.path().join("step-13/optimizer.safetensors"))?;
    copy_dir(&step_10, &dir.path().join("step-14"))?;
    std::fs::write(dir.path().join("step-14/train_state.json"), "{\"step\": ")?;
    std::fs::create_dir_all(dir.path().join("step-notanumber"))?;

    assert_eq!(train_state::latest(dir.path())?, Some(step_10.clone()), "step-10 sorts after step-9");
    Ok(())
}

#[test]
fn saving_a_step_again_replaces_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut trainer = Trainer::new();
    trainer.train_step()?;
    trainer.save(dir.path())?;
    let mut bias = trainer.vs.variables()["layer.bias"].shallow_clone();
    tch::no_grad(|| {
        let _ = bias.fill_(3.0);
    });
    let checkpoint = trainer.save(dir.path())?;
    let mut fresh = Trainer::new();
    train_state::load(&checkpoint, &[("model", &mut fresh.vs)], &mut fresh.optimizer)?;
    assert_eq!(Vec::<f32>::try_from(&fresh.vs.variables()["layer.bias"])?, vec![3.0; 3]);
    assert_eq!(subdirectories(dir.path()), ["step-1"], "no temp or old directory is left");
    Ok(())
}

#[test]
fn a_config_the_checkpoints_were_not_written_under_is_refused_up_front() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config_file = dir.path().join("config.toml");
    let hash = config_hash(&SCHEDULE)?;
    // No checkpoints yet: any config may start.
    train_state::check_resumable(&dir.path().join("checkpoints"), "other", &config_file)?;
    let mut trainer = Trainer::new();
    trainer.train_step()?;
    // An ensemble member's checkpoints sit one directory down; they are checked too.
    trainer.save(&dir.path().join("checkpoints/member-1"))?;
    train_state::check_resumable(&dir.path().join("checkpoints"), &hash, &config_file)?;
    let err = train_state::check_resumable(&dir.path().join("checkpoints"), "other", &config_file).unwrap_err();
    let err = err.to_string();
    assert!(
        err.contains("member-1/step-1") && err.contains("different config") && err.contains("config.toml"),
        "{err}"
    );
    Ok(())
}

#[test]
fn prune_keeps_the_newest_and_clears_leftovers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut trainer = Trainer::new();
    for _ in 0..4 {
        trainer.train_step()?;
        trainer.save(dir.path())?;
    }
    std::fs::create_dir_all(dir.path().join(".tmp-step-5-123"))?;
    std::fs::create_dir_all(dir.path().join(".old-step-2-123"))?;
    // What a deletion killed half-way once left: a step directory that is no longer a checkpoint.
    std::fs::remove_file(dir.path().join("step-1/train_state.json"))?;
    train_state::prune(dir.path(), 2)?;
    assert_eq!(subdirectories(dir.path()), ["step-3", "step-4"]);
    Ok(())
}

#[test]
fn loading_a_model_the_checkpoint_lacks_is_an_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut trainer = Trainer::new();
    trainer.train_step()?;
    let checkpoint = trainer.save(dir.path())?;
    let mut fresh = Trainer::new();
    let error = train_state::load(&checkpoint, &[("value", &mut fresh.vs)], &mut fresh.optimizer).unwrap_err();
    assert!(error.to_string().contains("holds no model named `value`"), "{error}");
    let error =
        train_state::save(dir.path(), &trainer.state(), &[("../x", &trainer.vs)], &trainer.optimizer).unwrap_err();
    assert!(error.to_string().contains("model name `../x`"), "{error}");
    Ok(())
}

#[test]
fn rng_state_continues_the_same_sequence() -> Result<()> {
    let mut rng = TrainRng::seed_from_u64(5);
    rng.set_stream(3);
    for _ in 0..17 {
        rng.next_u32();
    }
    let mut restored = restore_rng(&rng_state(&rng))?;
    let expected: Vec<u64> = (0..5).map(|_| rng.next_u64()).collect();
    assert_eq!((0..5).map(|_| restored.next_u64()).collect::<Vec<_>>(), expected);
    assert!(restore_rng(&[1, 2, 3]).unwrap_err().to_string().contains("7 words"));
    Ok(())
}

#[test]
fn config_hash_is_stable_and_sensitive() -> Result<()> {
    let hash = config_hash(&SCHEDULE)?;
    assert_eq!(hash, config_hash(&SCHEDULE)?);
    assert_eq!(hash.len(), 16);
    assert_ne!(hash, config_hash(&LrSchedule { peak_lr: 0.06, ..SCHEDULE })?);
    // The value is part of every saved checkpoint: changing the hash function breaks resumes.
    assert_eq!(config_hash(&serde_json::json!({ "lr": 0.001, "steps": 10 }))?, "8d799ffe9059bec8");
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

fn subdirectories(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
