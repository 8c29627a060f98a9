//! The pipeline runner: a preset (`configs/pipeline/<name>.toml`) lists the steps, each one process
//! with its binary and arguments. Steps meet only through the files in the run directory, so any
//! step's binary can be swapped for another that honours the same command line and files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub run_dir: PathBuf,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    /// A binary name (looked up in target/release) or a path.
    pub bin: String,
    pub args: Vec<String>,
    /// Present once the step has finished.
    pub done: String,
}

impl Preset {
    pub fn load(root: &Path, name: &str) -> Result<Self> {
        let path = root.join("configs").join("pipeline").join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading preset {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: invalid preset", path.display()))
    }

    pub fn step(&self, name: &str) -> Result<&Step> {
        self.steps.iter().find(|s| s.name == name).with_context(|| {
            let names: Vec<&str> = self.steps.iter().map(|s| s.name.as_str()).collect();
            format!("no step {name:?}; the preset has {}", names.join(", "))
        })
    }
}

/// What to run: the preset, a run directory, and replaced binaries (`step=path`).
pub struct Plan<'a> {
    pub root: &'a Path,
    pub run_dir: PathBuf,
    pub swaps: Vec<(String, String)>,
}

impl Plan<'_> {
    fn expand(&self, text: &str) -> String {
        text.replace("{run}", &self.run_dir.display().to_string())
    }

    fn binary(&self, step: &Step) -> PathBuf {
        let bin = self.swaps.iter().find(|(name, _)| *name == step.name).map_or(step.bin.as_str(), |(_, bin)| bin);
        if bin.contains('/') {
            self.root.join(bin)
        } else {
            self.root.join("target").join("release").join(bin)
        }
    }

    /// Runs one step unless its `done` marker exists; returns whether it ran.
    pub fn run_step(&self, step: &Step) -> Result<bool> {
        let done = self.root.join(self.expand(&step.done));
        if done.exists() {
            println!("pipeline: {:<7} already done ({})", step.name, done.display());
            return Ok(false);
        }
        let bin = self.binary(step);
        let args: Vec<String> = step.args.iter().map(|a| self.expand(a)).collect();
        println!("pipeline: {:<7} {} {}", step.name, bin.display(), args.join(" "));
        let started = Instant::now();
        let status = Command::new(&bin)
            .args(&args)
            .current_dir(self.root)
            .status()
            .with_context(|| format!("could not start {} for step {}", bin.display(), step.name))?;
        if !status.success() {
            bail!("step {} failed ({status}); run the same command again to resume it", step.name);
        }
        if !done.exists() {
            bail!("step {} finished but did not produce {}", step.name, done.display());
        }
        println!("pipeline: {:<7} finished in {:.1}s", step.name, started.elapsed().as_secs_f64());
        Ok(true)
    }
}
