//! The workspace's dependency rules (ARCHITECTURE.md, "Invariants"): stage crates never depend on
//! each other and build on `rlhf-data`, `rlhf-model` and the trainer core `rlhf-train`; `rlhf-data`,
//! `rlhf-task`, `rlhf-bench` and `xtask` build without libtorch; the crates below the stages never
//! reach one.
//!
//! Checked on the manifests alone (`cargo metadata --no-deps`: no lock-file resolution, no registry,
//! no network): the non-dev dependency edges between workspace members are walked transitively, and
//! the third-party crates every reached member declares are collected. No third-party crate pulls in
//! tch, so a crate that reaches no member declaring `tch` or `torch-sys` builds without libtorch.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

const STAGES: &[&str] = &["rlhf-sft", "rlhf-reward", "rlhf-ppo", "rlhf-dpo", "rlhf-eval"];
const TORCH: &[&str] = &["tch", "torch-sys", "rlhf-model"];
const NO_TORCH: &[&str] = &["rlhf-data", "rlhf-task", "rlhf-bench", "xtask"];
/// Crates the stages build on; none may reach a stage.
const BELOW_STAGES: &[&str] =
    &["rlhf-data", "rlhf-task", "rlhf-bench", "rlhf-model", "rlhf-dist", "rlhf-train", "rlhf-judge"];

/// Each workspace member's declared non-dev dependencies (normal and build), by package name.
struct Workspace(BTreeMap<String, Vec<Dependency>>);

struct Dependency {
    name: String,
    /// A path dependency on another member (else a third-party crate).
    member: bool,
}

impl Workspace {
    fn load() -> Result<Self> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .context("running cargo metadata")?;
        ensure!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
        let meta: Value = serde_json::from_slice(&out.stdout)?;
        let packages = meta["packages"].as_array().context("cargo metadata: no packages")?;
        let members: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
        let mut deps = BTreeMap::new();
        for package in packages {
            let name = package["name"].as_str().context("a package without a name")?;
            let declared = package["dependencies"]
                .as_array()
                .with_context(|| format!("{name}: no dependency list"))?
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| {
                    let dep = d["name"].as_str().with_context(|| format!("{name}: a dependency without a name"))?;
                    let member = d["path"].is_string() && members.contains(dep);
                    Ok(Dependency { name: dep.to_string(), member })
                })
                .collect::<Result<_>>()?;
            deps.insert(name.to_string(), declared);
        }
        Ok(Workspace(deps))
    }

    /// The members `root` reaches through non-dev dependencies, and every crate they declare (members
    /// and third-party), `root` itself excluded.
    fn closure(&self, root: &str) -> Result<BTreeSet<String>> {
        ensure!(self.0.contains_key(root), "{root} is not a workspace member");
        let mut seen = BTreeSet::new();
        let mut todo = vec![root];
        while let Some(member) = todo.pop() {
            for dep in &self.0[member] {
                if seen.insert(dep.name.clone()) && dep.member {
                    todo.push(&dep.name);
                }
            }
        }
        Ok(seen)
    }
}

#[test]
fn data_task_and_xtask_do_not_pull_in_libtorch() -> Result<()> {
    let workspace = Workspace::load()?;
    for pkg in NO_TORCH {
        let deps = workspace.closure(pkg)?;
        for torch in TORCH {
            ensure!(!deps.contains(*torch), "{pkg} depends on {torch}");
        }
    }
    Ok(())
}

#[test]
fn stage_crates_only_meet_through_files() -> Result<()> {
    let workspace = Workspace::load()?;
    for stage in STAGES {
        let deps = workspace.closure(stage)?;
        for shared in ["rlhf-data", "rlhf-model", "rlhf-train"] {
            ensure!(deps.contains(shared), "{stage} should build on {shared}");
        }
        for other in STAGES.iter().filter(|other| *other != stage) {
            ensure!(!deps.contains(*other), "{stage} depends on {other}: stages may only meet through files");
        }
    }
    for base in BELOW_STAGES {
        let deps = workspace.closure(base)?;
        for stage in STAGES {
            ensure!(
                !deps.contains(*stage),
                "{base} depends on the stage {stage}: stages build on it, not the other way"
            );
        }
    }
    Ok(())
}
