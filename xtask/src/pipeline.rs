//! The pipeline runner: a preset (`configs/pipeline/<name>.toml`) lists the steps, each one process
//! with its binary and arguments. Steps meet only through the files in the run directory, so any
//! step's binary can be swapped for another that honours the same command line and files.
//!
//! Arguments may name `{run}` (the run directory), `{data}` (the task tables; default `{run}/data`)
//! and `{base}` (the base checkpoint; default `{run}/base/final`), `{models}` (the fetched real models,
//! `<root>/.models`, which a preset's `models = [...]` fetches first). With `--rounds N`, the preset's
//! `round_steps` run again for each round r = 2..N right after `ppo`, with `{r}` the round and
//! `{prev}` the previous round's directory (`{run}` for round 1, else `{run}/round-{r-1}`).

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
    /// The steps of one more round of iterative RLHF (`--rounds`).
    pub round_steps: Vec<Step>,
    /// Inputs the preset cannot make itself: "base" (`--base DIR`) and/or "data" (`--data DIR`).
    pub requires: Vec<String>,
    /// Real models fetched into `{models}` before the first step (e.g. "smollm2").
    pub models: Vec<String>,
}

/// A preset file: either a full list of steps, or another preset (less the steps it leaves out) plus
/// steps of its own and extra arguments per step. A step of its own named like one of the parent's
/// replaces it where it stands; one with `before = "<step>"` goes right before that step; the others
/// follow the parent's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    run_dir: PathBuf,
    #[serde(default)]
    extends: Option<String>,
    /// Steps of the parent (with `extends`) left out, by name.
    #[serde(default)]
    without: Vec<String>,
    #[serde(default)]
    steps: Vec<Step>,
    #[serde(default)]
    round_steps: Vec<Step>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    /// Step name -> arguments appended to that step's and to the round step's of the same name
    /// (with `extends`); a name ending in `*` matches every step it begins (`ppo-*`).
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
    /// Run even when done if an earlier step ran in this invocation (the evaluation).
    #[serde(default)]
    pub rerun: bool,
    /// In a preset that extends another: the step this one goes right before.
    #[serde(default)]
    pub before: Option<String>,
}

impl Preset {
    pub fn load(root: &Path, name: &str) -> Result<Self> {
        let path = root.join("configs").join("pipeline").join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading preset {}", path.display()))?;
        let file: PresetFile = toml::from_str(&text).with_context(|| format!("{}: invalid preset", path.display()))?;
        let (mut steps, mut round_steps, mut requires, mut models) = match &file.extends {
            Some(parent) => {
                let parent = Preset::load(root, parent)?;
                (parent.steps, parent.round_steps, parent.requires, parent.models)
            }
            None => (Vec::new(), Vec::new(), Vec::new(), Vec::new()),
        };
        for name in &file.without {
            let before = steps.len();
            steps.retain(|step| &step.name != name);
            if steps.len() == before {
                bail!("{}: `without` names no step of the parent: {name:?}", path.display());
            }
        }
        for step in file.steps {
            let at = |name: &str| steps.iter().position(|s| s.name == name);
            if let Some(i) = at(&step.name) {
                steps[i] = step;
            } else if let Some(before) = step.before.clone() {
                let Some(i) = at(&before) else {
                    bail!(
                        "{}: step {:?} goes before {before:?}, which is no step of the parent",
                        path.display(),
                        step.name
                    );
                };
                steps.insert(i, step);
            } else {
                steps.push(step);
            }
        }
        round_steps.extend(file.round_steps);
        requires.extend(file.requires);
        models.extend(file.models);
        for (name, extra) in file.extra_args {
            let matches = |step: &str| match name.strip_suffix('*') {
                Some(prefix) => step.starts_with(prefix),
                None => step == name,
            };
            let mut matching = steps.iter_mut().chain(round_steps.iter_mut()).filter(|s| matches(&s.name)).peekable();
            if matching.peek().is_none() {
                bail!("{}: extra_args for unknown step {name:?}", path.display());
            }
            matching.for_each(|step| step.args.extend(extra.iter().cloned()));
        }
        Ok(Preset { run_dir: file.run_dir, steps, round_steps, requires, models })
    }

    /// The steps of a run with `rounds` rounds of RLHF: the round steps of rounds 2..=rounds go
    /// right after `ppo`, named `<step>-r<round>`.
    pub fn plan_steps(&self, rounds: usize) -> Result<Vec<Step>> {
        if rounds > 1 && self.round_steps.is_empty() {
            bail!("--rounds {rounds}: this preset has no round_steps");
        }
        let mut out = Vec::new();
        for step in &self.steps {
            out.push(step.clone());
            if step.name == "ppo" {
                for round in 2..=rounds {
                    let prev = if round == 2 { "{run}".to_string() } else { format!("{{run}}/round-{}", round - 1) };
                    let fill = |text: &str| text.replace("{prev}", &prev).replace("{r}", &round.to_string());
                    out.extend(self.round_steps.iter().map(|s| Step {
                        name: format!("{}-r{round}", s.name),
                        bin: s.bin.clone(),
                        args: s.args.iter().map(|a| fill(a)).collect(),
                        done: fill(&s.done),
                        rerun: s.rerun,
                        before: None,
                    }));
                }
            }
        }
        Ok(out)
    }

    pub fn step(&self, name: &str) -> Result<&Step> {
        self.steps.iter().find(|s| s.name == name).with_context(|| {
            let names: Vec<&str> = self.steps.iter().map(|s| s.name.as_str()).collect();
            format!("no step {name:?}; the preset has {}", names.join(", "))
        })
    }
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to `root` unless absolute), else
/// `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    root.join(std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from))
}

/// What to run: the preset, a run directory, replaced binaries (`step=path`), and where the task
/// tables and the base checkpoint come from (`None`: made by the run, under the run directory).
pub struct Plan<'a> {
    pub root: &'a Path,
    pub run_dir: PathBuf,
    /// Where a step's bare binary name is looked up.
    pub bin_dir: PathBuf,
    pub swaps: Vec<(String, String)>,
    pub data: Option<PathBuf>,
    pub base: Option<PathBuf>,
}

impl<'a> Plan<'a> {
    /// A plan that makes everything under `run_dir` (relative to `root` unless absolute: the stages
    /// resolve relative paths in their configs against their own run directory, so every path a
    /// step is given is absolute).
    pub fn new(root: &'a Path, run_dir: PathBuf) -> Self {
        Plan {
            root,
            run_dir: root.join(run_dir),
            bin_dir: target_dir(root).join("release"),
            swaps: Vec::new(),
            data: None,
            base: None,
        }
    }

    /// `text` with the placeholders filled in.
    pub fn expand(&self, text: &str) -> String {
        let given = |dir: &Option<PathBuf>, default: &str| {
            dir.as_ref().map_or(default.to_string(), |d| d.display().to_string())
        };
        text.replace("{data}", &given(&self.data, "{run}/data"))
            .replace("{base}", &given(&self.base, "{run}/base/final"))
            .replace("{run}", &self.run_dir.display().to_string())
            .replace("{models}", &self.root.join(".models").display().to_string())
    }

    /// The program `step` runs: its swap if it has one, else its `bin` (a bare name is looked up
    /// in `bin_dir`, a path is relative to the root).
    pub fn binary(&self, step: &Step) -> PathBuf {
        let bin = self.swaps.iter().find(|(name, _)| *name == step.name).map_or(step.bin.as_str(), |(_, bin)| bin);
        if bin.contains('/') {
            self.root.join(bin)
        } else {
            self.bin_dir.join(bin)
        }
    }

    /// Runs `steps` in order (each skipped when done), then prints where the outputs are and, when
    /// the run has an evaluation, the report's path and headline table.
    pub fn run(&self, steps: &[&Step]) -> Result<()> {
        let started = Instant::now();
        let mut ran = false;
        for step in steps {
            ran |= self.run_step(step, ran)?;
        }
        println!(
            "pipeline: finished in {:.1}s; outputs in {}",
            started.elapsed().as_secs_f64(),
            self.run_dir.display()
        );
        let eval = self.root.join(&self.run_dir).join("eval");
        if let Ok(headline) = std::fs::read_to_string(eval.join("headline.md")) {
            println!("pipeline: report {}\n\n{headline}", eval.join("report.md").display());
        }
        Ok(())
    }

    /// Runs one step unless its `done` marker exists (and it is not a `rerun` step after
    /// `earlier_ran`); returns whether it ran.
    pub fn run_step(&self, step: &Step, earlier_ran: bool) -> Result<bool> {
        let done = self.root.join(self.expand(&step.done));
        if done.exists() && !(step.rerun && earlier_ran) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, done: &str) -> Step {
        Step {
            name: name.into(),
            bin: "b".into(),
            args: vec![format!("{{prev}}/{name}")],
            done: done.into(),
            rerun: false,
            before: None,
        }
    }

    #[test]
    fn placeholders_expand_to_absolute_paths() {
        let root = Path::new("/repo");
        let plan = Plan::new(root, "runs/x".into());
        assert_eq!(plan.expand("{data}/prompts.parquet {run}"), "/repo/runs/x/data/prompts.parquet /repo/runs/x");
        assert_eq!(plan.expand("{base}"), "/repo/runs/x/base/final");
        let plan = Plan { base: Some("/models/gpt2".into()), ..Plan::new(root, "/abs/run".into()) };
        assert_eq!(plan.expand("{base} {data}"), "/models/gpt2 /abs/run/data");
    }

    #[test]
    fn later_rounds_follow_ppo() {
        let preset = Preset {
            run_dir: "runs/x".into(),
            steps: vec![step("sft", "s"), step("ppo", "p"), step("eval", "e")],
            round_steps: vec![step("reward", "{run}/round-{r}/rm"), step("ppo", "{run}/round-{r}/ppo")],
            requires: Vec::new(),
            models: Vec::new(),
        };
        let names =
            |rounds| -> Vec<String> { preset.plan_steps(rounds).unwrap().into_iter().map(|s| s.name).collect() };
        assert_eq!(names(1), ["sft", "ppo", "eval"]);
        assert_eq!(names(3), ["sft", "ppo", "reward-r2", "ppo-r2", "reward-r3", "ppo-r3", "eval"]);
        let steps = preset.plan_steps(3).unwrap();
        assert_eq!(steps[2].args, ["{run}/reward"]);
        assert_eq!(steps[4].args, ["{run}/round-2/reward"]);
        assert_eq!(steps[5].done, "{run}/round-3/ppo");
    }

    #[test]
    fn a_child_preset_replaces_a_step_in_place_or_inserts_it_before_another() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let names = |preset: &str| -> Vec<String> {
            Preset::load(&root, preset).unwrap().steps.into_iter().map(|s| s.name).collect()
        };
        let smollm2 = names("smollm2");
        assert_eq!(names("rlaif"), smollm2, "rlaif swaps the label step in place");
        assert!(Preset::load(&root, "rlaif").unwrap().step("label").unwrap().bin == "rlhf-judge");
        let cai = names("cai");
        let revise = cai.iter().position(|n| n == "revise").unwrap();
        assert_eq!(cai[revise + 1], "sft");
    }
}
