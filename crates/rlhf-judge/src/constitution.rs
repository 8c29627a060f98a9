//! A constitution file (TOML): a name and `[[principle]]` tables, each with a `name`, a `critique`
//! request, a `revision` request and a `comparison` question, all non-empty. The repository ships
//! `configs/constitutions/task.toml` (the embedded task, in plain words, not the gold rule) and
//! `general.toml` (helpful, harmless, honest, respectful).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Principles a model critiques, revises and compares by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constitution {
    pub name: String,
    #[serde(rename = "principle")]
    pub principles: Vec<Principle>,
}

/// One principle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principle {
    pub name: String,
    /// Constitutional AI's critique request.
    pub critique: String,
    /// Constitutional AI's revision request.
    pub revision: String,
    /// The question an AI judge answers with A or B.
    pub comparison: String,
}

impl Constitution {
    /// Reads and checks the constitution at `path`.
    pub fn load(path: &Path) -> Result<Constitution> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Input { path: path.into(), message: format!("cannot read: {e}") })?;
        Constitution::parse(&text).map_err(|message| Error::Input { path: path.into(), message })
    }

    /// Parses and checks a constitution's TOML text.
    pub fn parse(text: &str) -> std::result::Result<Constitution, String> {
        let constitution: Constitution = toml::from_str(text).map_err(|e| format!("not a constitution: {e}"))?;
        if constitution.principles.is_empty() {
            return Err("has no [[principle]]".into());
        }
        let mut names = std::collections::HashSet::new();
        for p in &constitution.principles {
            for (field, value) in
                [("name", &p.name), ("critique", &p.critique), ("revision", &p.revision), ("comparison", &p.comparison)]
            {
                if value.trim().is_empty() {
                    return Err(format!("principle `{}`: `{field}` is empty", p.name));
                }
            }
            if !names.insert(p.name.as_str()) {
                return Err(format!("principle `{}` is named twice", p.name));
            }
        }
        Ok(constitution)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_constitutions_load_and_bad_ones_are_one_clear_error() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/constitutions");
        let task = Constitution::load(&root.join("task.toml")).unwrap();
        assert_eq!(task.principles.len(), 6);
        assert_eq!(Constitution::load(&root.join("general.toml")).unwrap().principles[1].name, "harmless");
        assert!(Constitution::parse("name = \"x\"\nprinciple = []").unwrap_err().contains("no [[principle]]"));
        let empty = "name = \"x\"\n[[principle]]\nname = \"a\"\ncritique = \"\"\nrevision = \"r\"\ncomparison = \"c\"";
        assert_eq!(Constitution::parse(empty).unwrap_err(), "principle `a`: `critique` is empty");
        let typo = "name = \"x\"\n[[principle]]\nname = \"a\"\ncritic = \"c\"";
        assert!(Constitution::parse(typo).unwrap_err().contains("unknown field `critic`"));
    }
}
