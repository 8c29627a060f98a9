//! The workspace's dependency rules (ARCHITECTURE.md, "Invariants"), checked on `cargo metadata`:
//! stage crates never depend on each other, and `rlhf-data` and `xtask` build without libtorch.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

const STAGES: &[&str] = &["rlhf-sft", "rlhf-reward", "rlhf-ppo", "rlhf-dpo", "rlhf-eval"];

/// Package name -> names of its normal and build dependencies (dev-dependencies excluded).
struct Graph(HashMap<String, Vec<String>>);

impl Graph {
    fn load() -> Result<Self> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--offline"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .context("running cargo metadata")?;
        anyhow::ensure!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
        let meta: Value = serde_json::from_slice(&out.stdout)?;
        let id_to_name: HashMap<&str, &str> = meta["packages"]
            .as_array()
            .context("packages")?
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        let mut edges = HashMap::new();
        for node in meta["resolve"]["nodes"].as_array().context("resolve.nodes")? {
            let name = id_to_name[node["id"].as_str().unwrap()].to_string();
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"] != "dev"))
                .map(|d| id_to_name[d["pkg"].as_str().unwrap()].to_string())
                .collect();
            edges.insert(name, deps);
        }
        Ok(Graph(edges))
    }

    /// Every package `root` pulls in, transitively, itself excluded.
    fn closure(&self, root: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![root.to_string()];
        while let Some(pkg) = todo.pop() {
            for dep in self.0.get(&pkg).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen
    }
}

#[test]
fn data_crate_and_xtask_do_not_pull_in_libtorch() -> Result<()> {
    let graph = Graph::load()?;
    for pkg in ["rlhf-data", "xtask"] {
        let deps = graph.closure(pkg);
        for torch in ["tch", "torch-sys", "rlhf-model"] {
            assert!(!deps.contains(torch), "{pkg} depends on {torch}");
        }
    }
    Ok(())
}

#[test]
fn stage_crates_only_meet_through_files() -> Result<()> {
    let graph = Graph::load()?;
    for stage in STAGES {
        let deps = graph.closure(stage);
        assert!(deps.contains("rlhf-data") && deps.contains("rlhf-model"), "{stage} should build on rlhf-data and rlhf-model");
        for other in STAGES.iter().filter(|other| *other != stage) {
            assert!(!deps.contains(*other), "{stage} depends on {other}: stages may only meet through files");
        }
    }
    Ok(())
}
