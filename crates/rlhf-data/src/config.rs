//! Stage configs: a TOML file deserialized into a `deny_unknown_fields` struct, with command-line
//! overrides (`--set train.lr=1e-4`) applied on the TOML tree first, and the resolved config written
//! back into the run directory so every run records exactly what it did.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

fn config_error(origin: impl Into<String>, message: impl std::fmt::Display) -> Error {
    Error::Config { origin: origin.into(), message: message.to_string().trim().replace('\n', " ") }
}

/// Starts from the struct's defaults, lays the file at `path` over them (tables merge key by key,
/// so a partial `[train]` table keeps the stage's other defaults), applies each `KEY=VALUE` override
/// in order, and deserializes. Unknown keys are errors naming the file.
pub fn load_config<T: DeserializeOwned + Serialize + Default>(path: Option<&Path>, overrides: &[String]) -> Result<T> {
    let mut table = toml::Table::try_from(T::default()).map_err(|e| config_error("default config", e))?;
    let origin = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "read the config", e))?;
            let file: toml::Table = toml::from_str(&text).map_err(|e| config_error(path.display().to_string(), e))?;
            merge(&mut table, file);
            path.display().to_string()
        }
        None => "default config".to_string(),
    };
    for assignment in overrides {
        apply_override(&mut table, assignment)?;
    }
    let origin =
        if overrides.is_empty() { origin } else { format!("{origin} with --set {}", overrides.join(" --set ")) };
    T::deserialize(table).map_err(|e| config_error(origin, e))
}

/// Lays `over` onto `base`: a table merges into a table key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(over)) => merge(base, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets one dotted key, e.g. `train.lr=1e-4`; the value is read as TOML (number, bool, array, string)
/// and taken as a plain string when it is not valid TOML.
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let origin = format!("--set {assignment}");
    let (key, raw) = assignment.split_once('=').ok_or_else(|| config_error(&origin, "expected KEY=VALUE"))?;
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.trim().split('.').collect();
    let last = parts.pop().filter(|k| !k.is_empty()).ok_or_else(|| config_error(&origin, "empty key"))?;
    let mut node = table;
    for part in parts {
        let entry = node.entry(part).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| config_error(&origin, format!("{part:?} is not a table")))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

/// Writes the resolved config as TOML, atomically (temp file + rename).
pub fn write_config<T: Serialize>(config: &T, path: &Path) -> Result<()> {
    let text = toml::to_string_pretty(config).map_err(|e| config_error(path.display().to_string(), e))?;
    crate::atomic::write_atomically(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Train {
        lr: f64,
        steps: u32,
        name: String,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Stage {
        seed: u64,
        train: Train,
    }

    #[test]
    fn overrides_apply_on_top_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stage.toml");
        std::fs::write(&path, "seed = 3\n[train]\nlr = 0.1\nsteps = 10\n").unwrap();
        let overrides = vec!["train.lr=1e-4".to_string(), "train.name=run a".to_string()];
        let config: Stage = load_config(Some(&path), &overrides).unwrap();
        assert_eq!(config, Stage { seed: 3, train: Train { lr: 1e-4, steps: 10, name: "run a".into() } });
        let out = dir.path().join("run").join("config.toml");
        write_config(&config, &out).unwrap();
        assert_eq!(load_config::<Stage>(Some(&out), &[]).unwrap(), config);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Tuned {
        seed: u64,
        train: Train,
    }

    impl Default for Tuned {
        fn default() -> Self {
            Tuned { seed: 7, train: Train { lr: 0.5, steps: 3, name: "tuned".into() } }
        }
    }

    #[test]
    fn a_partial_table_keeps_the_stage_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stage.toml");
        std::fs::write(&path, "[train]\nsteps = 10\n").unwrap();
        let config: Tuned = load_config(Some(&path), &[]).unwrap();
        assert_eq!(config, Tuned { seed: 7, train: Train { lr: 0.5, steps: 10, name: "tuned".into() } });
        std::fs::write(&path, "[train]\nstep = 10\n").unwrap();
        let err = load_config::<Tuned>(Some(&path), &[]).unwrap_err().to_string();
        assert!(err.contains("stage.toml") && err.contains("unknown field `step`"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_their_origin() {
        let err = load_config::<Stage>(None, &["train.lrr=1".into()]).unwrap_err().to_string();
        assert!(err.starts_with("default config with --set train.lrr=1: unknown field `lrr`"), "{err}");
        let err = load_config::<Stage>(None, &["train.steps=many".into()]).unwrap_err().to_string();
        assert!(err.contains("train.steps=many") && err.contains("invalid type"), "{err}");
        let err = load_config::<Stage>(None, &["seed".into()]).unwrap_err().to_string();
        assert_eq!(err, "--set seed: expected KEY=VALUE");
    }
}
