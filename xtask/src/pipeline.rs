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

/// A preset file: either a full list of steps, or another preset plus extra arguments per step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    run_dir: PathBuf,
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    steps: Vec<Step>,
    /// Step name -> arguments appended to that step's (with `extends`).
    #[serde(default)]
    extra_args: std::collections::BTreeMap<String, Vec<String>>,
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
        let file: PresetFile = toml::from_str(&text).with_context(|| format!("{}: invalid preset", path.display()))?;
        let mut steps = match &file.extends {
            Some(parent) => Preset::load(root, parent)?.steps,
            None => Vec::new(),
        };
        steps.extend(file.steps);
        for (name, extra) in file.extra_args {
            let step = steps
                .iter_mut()
                .find(|s| s.name == name)
                .with_context(|| format!("{}: extra_args for unknown step {name:?}", path.display()))?;
            step.args.extend(extra);
        }
        Ok(Preset { run_dir: file.run_dir, steps })
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

    /// Runs `steps` in order (each skipped when done), then prints where the outputs are and, when
    /// the run has an evaluation, the report's path and headline table.
    pub fn run(&self, steps: &[&Step]) -> Result<()> {
        let started = Instant::now();
        for step in steps {
            self.run_step(step)?;
        }
        println!("pipeline: finished in {:.1}s; outputs in {}", started.elapsed().as_secs_f64(), self.run_dir.display());
        let eval = self.root.join(&self.run_dir).join("eval");
        if let Ok(headline) = std::fs::read_to_string(eval.join("headline.md")) {
            println!("pipeline: report {}\n\n{headline}", eval.join("report.md").display());
        }
        Ok(())
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
