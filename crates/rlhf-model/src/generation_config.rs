//! A checkpoint's `generation_config.json`, as `transformers`' `generate` reads it: the end tokens
//! (one id or a list), the pad token and the sampling defaults (`do_sample`, `temperature`,
//! `top_k`, `top_p`, `max_new_tokens`). Every field is optional; a missing file is no defaults.

use std::path::Path;

use serde::Deserialize;

use crate::config::TokenIds;
use crate::error::{Error, Result};

/// The file's name in a checkpoint directory.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// What `generation_config.json` sets.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct GenerationDefaults {
    pub eos_token_id: Option<TokenIds>,
    pub pad_token_id: Option<i64>,
    pub do_sample: Option<bool>,
    pub temperature: Option<f64>,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
    pub max_new_tokens: Option<i64>,
}

impl GenerationDefaults {
    /// Reads `<dir>/generation_config.json`; the defaults of nothing when the file is absent.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join(GENERATION_CONFIG_FILE);
        if !path.is_file() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|source| Error::Json { path, source })
    }

    /// The end-token ids it names (none when it names none).
    pub fn eos_token_ids(&self) -> Vec<i64> {
        match &self.eos_token_id {
            Some(TokenIds::One(id)) => vec![*id],
            Some(TokenIds::Many(ids)) => ids.clone(),
            None => Vec::new(),
        }
    }

    /// The temperature its sampling defaults give: 0 (greedy) for `do_sample: false`, its
    /// `temperature` (else 1) for `do_sample: true`, `None` when it does not set `do_sample`.
    pub fn temperature(&self) -> Option<f64> {
        match self.do_sample {
            Some(true) => self.temperature.or(Some(1.0)),
            Some(false) => Some(0.0),
            None => None,
        }
    }
}
