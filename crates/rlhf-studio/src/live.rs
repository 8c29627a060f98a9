//! Live sampling: the ranking queue refills with fresh responses from a policy (`label --model DIR
//! --prompts FILE`), the "collect comparisons on the current policy's outputs" step of iterative
//! RLHF, with people.
//!
//! When some annotator has fewer than [`Live::low_water`] items left, the next `batch_prompts`
//! prompts of the prompts table (cycling through it) are sampled `samples_per_prompt` times, as
//! `rlhf-eval generate` samples them (batch seed: the studio's seed plus the prompt cursor). Each
//! batch becomes items (distinct responses, at least two) and is appended to `live.jsonl` as one
//! fsynced line, with the cursor after it and the policy that wrote it, before anyone sees it; a
//! restart continues from the last batch on disk. Live item `k` (the cursor's position) has the id
//! `<prompt id>@<k>`, unique however often the prompts cycle.

use std::path::{Path, PathBuf};

use rlhf_data::{Prompt, PromptText, RecordReader};
use rlhf_eval::generate::{SampleConfig, SampleSettings, TokenSample};
use rlhf_model::GenerationDefaults;
use serde::{Deserialize, Serialize};

use crate::items::{Item, MAX_RESPONSES, MAX_TEXT_CHARS};
use crate::{Error, Result};

/// The journal of live batches in a studio directory.
pub const LIVE_FILE: &str = "live.jsonl";

/// How a studio samples live (kept in `studio.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Live {
    /// The prompts table, absolute.
    pub prompts: PathBuf,
    /// Responses sampled per prompt (2 to 9: the keys rank at most 9).
    pub samples_per_prompt: u32,
    /// Prompts sampled per refill.
    pub batch_prompts: usize,
    /// A refill starts when an annotator has fewer items than this left.
    pub low_water: usize,
}

/// One refill, as `live.jsonl` keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveBatch {
    /// The prompt cursor after this batch.
    pub next_prompt: usize,
    /// The checkpoint that wrote the responses.
    pub policy: String,
    pub items: Vec<Item>,
}

impl Live {
    /// Checks the settings and the prompts table (it must have prompts).
    pub fn new(prompts: &Path, samples_per_prompt: u32, batch_prompts: usize) -> Result<Live> {
        if !(2..=MAX_RESPONSES as u32).contains(&samples_per_prompt) {
            return Err(Error::input(
                prompts,
                format!("live sampling ranks 2 to {MAX_RESPONSES} samples per prompt, not {samples_per_prompt}"),
            ));
        }
        if batch_prompts == 0 {
            return Err(Error::input(prompts, "live sampling needs at least one prompt per refill"));
        }
        if RecordReader::<Prompt>::open(prompts)?.num_rows() == 0 {
            return Err(Error::input(prompts, "has no prompts to sample from"));
        }
        let prompts = std::path::absolute(prompts).map_err(|e| Error::io(prompts, "resolve", e))?;
        Ok(Live { prompts, samples_per_prompt, batch_prompts, low_water: batch_prompts.max(4) })
    }

    /// Every prompt of the table, in order.
    pub fn read_prompts(&self) -> Result<Vec<Prompt>> {
        let mut prompts = Vec::new();
        for chunk in RecordReader::<Prompt>::open(&self.prompts)? {
            prompts.extend(chunk?.records);
        }
        if prompts.is_empty() {
            return Err(Error::input(&self.prompts, "has no prompts to sample from"));
        }
        Ok(prompts)
    }
}

/// What refills need while a server runs: the prompts, and how to sample them.
pub struct Feed {
    pub prompts: Vec<Prompt>,
    /// Sampling as `rlhf-eval generate` does, with the checkpoint's `generation_config.json`; the
    /// seed is the studio's, each refill adding its cursor.
    pub config: SampleConfig,
    /// The prompts a refill samples.
    pub batch_prompts: usize,
    /// Refill when an annotator has fewer items than this left.
    pub low_water: usize,
}

impl Feed {
    pub fn new(live: &Live, seed: u64, defaults: &GenerationDefaults) -> Result<Feed> {
        let base = SampleConfig { samples_per_prompt: live.samples_per_prompt, seed, ..SampleConfig::default() };
        Ok(Feed {
            prompts: live.read_prompts()?,
            config: base.with_settings(&SampleSettings::default(), defaults),
            batch_prompts: live.batch_prompts,
            low_water: live.low_water,
        })
    }
}

/// The prompts of the refill starting at `cursor`, each with its position (cycling through `all`).
pub fn next_prompts(all: &[Prompt], cursor: usize, count: usize) -> Vec<(usize, Prompt)> {
    (cursor..cursor + count).map(|k| (k, all[k % all.len()].clone())).collect()
}

/// The items of a refill: the samples of the prompts at `positions` (`prompt_index` into it),
/// distinct non-empty responses per prompt, prompts with fewer than two left out. Over-long texts are
/// cut to what the studio shows.
pub fn batch_items(positions: &[(usize, Prompt)], samples: Vec<TokenSample>) -> Vec<Item> {
    let mut items: Vec<Item> = positions
        .iter()
        .map(|(k, prompt)| {
            let text = PromptText::of(prompt);
            Item {
                id: format!("{}@{k}", prompt.id),
                prompt: cut(text.text),
                prompt_messages: text.messages,
                responses: Vec::new(),
                sources: Vec::new(),
            }
        })
        .collect();
    for sample in samples {
        let response = cut(sample.text);
        let Some(item) = items.get_mut(sample.prompt_index) else { continue };
        if !response.trim().is_empty() && !item.responses.contains(&response) && item.responses.len() < MAX_RESPONSES {
            item.responses.push(response);
        }
    }
    items.retain(|item| item.responses.len() >= 2);
    items
}

fn cut(text: String) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((end, _)) => text[..end].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(id: &str) -> Prompt {
        Prompt { id: id.into(), prompt: format!("question {id}"), prompt_messages: None }
    }

    fn sample(prompt_index: usize, text: &str) -> TokenSample {
        TokenSample { prompt_index, sample: 0, prompt_tokens: vec![1], tokens: vec![2], eos: true, text: text.into() }
    }

    #[test]
    fn refills_cycle_through_the_prompts_with_unique_ids_and_keep_distinct_pairs() {
        let all = [prompt("a"), prompt("b")];
        let positions = next_prompts(&all, 1, 3);
        assert_eq!(
            positions.iter().map(|(k, p)| (*k, p.id.as_str())).collect::<Vec<_>>(),
            [(1, "b"), (2, "a"), (3, "b")]
        );
        let samples = vec![
            sample(0, "x"),
            sample(0, "y"),
            sample(1, "same"),
            sample(1, "same"),
            sample(2, " "),
            sample(2, "z"),
            sample(2, "x"),
        ];
        let items = batch_items(&positions, samples);
        let got: Vec<(&str, Vec<&str>)> =
            items.iter().map(|i| (i.id.as_str(), i.responses.iter().map(String::as_str).collect())).collect();
        assert_eq!(
            got,
            [("b@1", vec!["x", "y"]), ("b@3", vec!["z", "x"])],
            "a's two samples are identical; empty ones drop"
        );
    }
}
