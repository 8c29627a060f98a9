//! An AI judge as a config names it: `rlhf-judge label`'s flags and online DPO's
//! `[online.ai_judge]` table build one the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rlhf_model::Placement;
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::{AiJudge, Constitution, Error, LocalModel, OpenAiModel, OpenAiSettings, Result};

/// Which model judges, by which constitution, with which cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeSpec {
    /// A local checkpoint as the judge (empty: the server at `openai_url`).
    pub local: PathBuf,
    /// The local judge's name in what it labels (`ai:<name>`); empty: the checkpoint directory's.
    pub name: String,
    /// An OpenAI-compatible server, e.g. `http://127.0.0.1:8000/v1`.
    pub openai_url: String,
    /// The model the server serves.
    pub openai_model: String,
    /// The environment variable holding the server's API key (empty: none).
    pub api_key_env: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Retries of a request refused with 429 or 5xx (or dropped).
    pub max_retries: u32,
    /// Seconds one request may take.
    pub timeout_s: f64,
    /// The constitution (TOML) whose comparison questions the judge answers.
    pub constitution: PathBuf,
    /// The judgment cache (JSON Lines); empty: none.
    pub cache: PathBuf,
    /// Seed of the principle drawn per pair.
    pub seed: u64,
}

impl Default for JudgeSpec {
    fn default() -> Self {
        JudgeSpec {
            local: PathBuf::new(),
            name: String::new(),
            openai_url: String::new(),
            openai_model: String::new(),
            api_key_env: String::new(),
            concurrency: 4,
            max_retries: 5,
            timeout_s: 120.0,
            constitution: PathBuf::new(),
            cache: PathBuf::new(),
            seed: 0,
        }
    }
}

impl JudgeSpec {
    /// The judge it names; what is missing or contradictory is one error.
    pub fn build(&self, placement: Placement) -> Result<AiJudge> {
        if self.constitution.as_os_str().is_empty() {
            return Err(Error::Input { path: ".".into(), message: "an AI judge needs a constitution".into() });
        }
        let constitution = Constitution::load(&self.constitution)?;
        let invalid = |message: &str| Error::Input { path: self.constitution.clone(), message: message.into() };
        let letters: Box<dyn crate::Letters> = match (self.local.as_os_str().is_empty(), self.openai_url.is_empty()) {
            (false, true) => Box::new(LocalModel::load(&self.local, placement)?.named(&self.name)),
            (true, false) if self.openai_model.is_empty() => {
                return Err(invalid("an OpenAI-compatible judge needs the served model's name"))
            }
            (true, false) => {
                let mut settings = OpenAiSettings::new(&self.openai_url, &self.openai_model);
                if !self.api_key_env.is_empty() {
                    settings.api_key = std::env::var(&self.api_key_env).ok();
                }
                settings.concurrency = self.concurrency;
                settings.max_retries = self.max_retries;
                settings.timeout = Duration::from_secs_f64(self.timeout_s.max(0.001));
                Box::new(OpenAiModel::new(settings))
            }
            _ => return Err(invalid("an AI judge is a local checkpoint or an OpenAI-compatible server: name one")),
        };
        let judge = AiJudge::new(letters, constitution, self.seed);
        Ok(if self.cache.as_os_str().is_empty() { judge } else { judge.with_cache(Cache::open(&self.cache)?) })
    }

    /// Its paths, relative ones taken from `base`.
    pub fn resolve(&mut self, base: &Path) {
        for path in [&mut self.local, &mut self.constitution, &mut self.cache] {
            if !path.as_os_str().is_empty() && path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}
