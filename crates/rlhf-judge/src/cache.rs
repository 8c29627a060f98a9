//! The judgment cache: one fsynced JSON line per judged pair ([`rlhf_data::journal`]), a
//! [`Verdict`] keyed by (model, principle, prompt, first, second), so a rerun (or a run resumed
//! after a kill) asks the model nothing it already answered. `rlhf-data validate --kind verdicts`
//! checks one.

use std::collections::HashMap;
use std::path::Path;

use rlhf_data::journal::Journal;
use rlhf_data::Verdict;

use crate::ai::AiVerdict;
use crate::Result;

type Key = (String, String, String, String, String);

/// The cache, open for appending.
pub struct Cache {
    journal: Journal<Verdict>,
    answers: HashMap<Key, (Option<f64>, Option<f64>)>,
}

impl Cache {
    /// Opens (or creates) the cache at `path`.
    pub fn open(path: &Path) -> Result<Cache> {
        let (journal, entries) = Journal::<Verdict>::open(path)?;
        let answers = entries
            .into_iter()
            .map(|e| ((e.model, e.principle, e.prompt, e.first, e.second), (e.p_ab, e.p_ba)))
            .collect();
        Ok(Cache { journal, answers })
    }

    /// How many pairs it holds.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    pub fn get(&self, model: &str, principle: &str, prompt: &str, first: &str, second: &str) -> Option<AiVerdict> {
        let key = (model.into(), principle.into(), prompt.into(), first.into(), second.into());
        self.answers.get(&key).map(|&(p_ab, p_ba)| AiVerdict { principle: principle.into(), p_ab, p_ba })
    }

    /// Keeps `verdict` (on disk when this returns).
    pub fn put(&mut self, model: &str, prompt: &str, first: &str, second: &str, verdict: &AiVerdict) -> Result<()> {
        let entry = Verdict {
            model: model.into(),
            principle: verdict.principle.clone(),
            prompt: prompt.into(),
            first: first.into(),
            second: second.into(),
            p_ab: verdict.p_ab,
            p_ba: verdict.p_ba,
        };
        self.journal.append(&entry)?;
        self.answers
            .insert((entry.model, entry.principle, entry.prompt, entry.first, entry.second), (entry.p_ab, entry.p_ba));
        Ok(())
    }
}
