//! Preferences as the trainer sees them, read from comparisons and rankings tables.
//!
//! A [`Preference`] is one prompt with K ≥ 2 responses and the pairs among them that were judged
//! (better, worse, margin): a comparison gives K = 2 and one pair, a ranking of K responses all
//! K·(K−1)/2 pairs. Each preference is one training example: its responses share one forward pass
//! and its loss is the mean over its pairs (InstructGPT). Pairs whose two texts are identical carry
//! no preference: they are dropped and counted. [`TokenizedPreference`]s hold the token rows
//! `tokens(prompt) ++ tokens(response) ++ [eos]`, dealt out by `rlhf_train::batching::BatchStream`
//! in a seeded, length-bucketed, resumable order.

use std::path::Path;

use rlhf_data::{read_table, AsPrompt, Comparison, Location, PromptText, Ranking, Record};
use rlhf_model::Tokenizer;

use crate::{Error, Result};

/// One judged pair: indices into the responses, the better first, and the stated margin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    pub better: usize,
    pub worse: usize,
    /// From the comparison's `margin` column (0 when absent or for rankings).
    pub margin: f32,
}

/// A prompt, its responses and the judged pairs among them.
#[derive(Clone, Debug, PartialEq)]
pub struct Preference {
    /// The prompt's text and, when it is a conversation, its turns.
    pub prompt: PromptText,
    pub responses: Vec<String>,
    pub pairs: Vec<Pair>,
}

/// Preferences read from files, with what was dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preferences {
    pub items: Vec<Preference>,
    /// Pairs dropped because both responses were the same text.
    pub identical_pairs: usize,
}

impl Preferences {
    /// Number of judged pairs.
    pub fn pair_count(&self) -> usize {
        self.items.iter().map(|p| p.pairs.len()).sum()
    }

    fn push(&mut self, prompt: PromptText, responses: Vec<String>, judged: impl IntoIterator<Item = Pair>) {
        let mut pairs = Vec::new();
        for pair in judged {
            if responses[pair.better] == responses[pair.worse] {
                self.identical_pairs += 1;
            } else {
                pairs.push(pair);
            }
        }
        if !pairs.is_empty() {
            self.items.push(Preference { prompt, responses, pairs });
        }
    }

    /// Adds the rows of a comparisons table; empty texts are errors naming the file and row. A
    /// table mixing objectives (its `objective` column) is trained on as one, with a warning.
    pub fn add_comparisons(&mut self, path: &Path) -> Result<()> {
        let mut objectives = std::collections::BTreeSet::new();
        for c in read_checked::<Comparison>(path, "comparisons")? {
            objectives.extend(c.objective);
            let margin = c.margin.unwrap_or(0.0);
            let prompt = PromptText { text: c.prompt, messages: c.prompt_messages };
            self.push(prompt, vec![c.chosen, c.rejected], [Pair { better: 0, worse: 1, margin }]);
        }
        if objectives.len() > 1 {
            let names: Vec<String> = objectives.into_iter().collect();
            tracing::warn!(
                "{}: comparisons of several objectives ({}) train one reward model; filter the table for one reward model per objective",
                path.display(),
                names.join(", ")
            );
        }
        Ok(())
    }

    /// Adds the rows of a rankings table (each becomes all its pairs, better-ranked first).
    pub fn add_rankings(&mut self, path: &Path) -> Result<()> {
        for r in read_checked::<Ranking>(path, "rankings")? {
            let order: Vec<usize> = r.ranking.iter().map(|&i| i as usize).collect();
            let pairs: Vec<Pair> = order
                .iter()
                .enumerate()
                .flat_map(|(pos, &better)| {
                    order[pos + 1..].iter().map(move |&worse| Pair { better, worse, margin: 0.0 })
                })
                .collect();
            self.push(PromptText { text: r.prompt, messages: r.prompt_messages }, r.responses, pairs);
        }
        Ok(())
    }

    /// Splits off the preferences of about `fraction` of the distinct prompts (chosen by a
    /// seeded hash of the prompt text): `(kept, held out)`.
    pub fn split_by_prompt(self, fraction: f64, seed: u64) -> (Preferences, Preferences) {
        let threshold = (fraction.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        let (mut kept, mut heldout) = (Preferences::default(), Preferences::default());
        for item in self.items {
            let side = if prompt_hash(&item.prompt.text, seed) < threshold { &mut heldout } else { &mut kept };
            side.items.push(item);
        }
        kept.identical_pairs = self.identical_pairs;
        (kept, heldout)
    }
}

/// FNV-1a of the prompt, mixed with the seed.
fn prompt_hash(prompt: &str, seed: u64) -> u64 {
    let hash = prompt.bytes().fold(0xcbf2_9ce4_8422_2325_u64 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    // A final avalanche so nearby prompts spread over the whole range.
    let mut z = hash;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Reads a table of `R`, failing on a missing file with a hint and on an invalid row (empty text,
/// bad ranking) with its file and row.
fn read_checked<R: Record>(path: &Path, what: &str) -> Result<Vec<R>> {
    if !path.is_file() {
        return Err(Error::file(path, format!("{what} table not found")));
    }
    let records = read_table::<R>(path)?.records;
    for (row, record) in records.iter().enumerate() {
        record.validate(|| Location::Row { path: path.to_path_buf(), row: row as u64 })?;
    }
    Ok(records)
}

/// A preference as token rows: `rows[i] = tokens(prompt) ++ tokens(responses[i]) ++ [eos]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenizedPreference {
    pub rows: Vec<Vec<i64>>,
    pub pairs: Vec<Pair>,
}

impl TokenizedPreference {
    /// Tokens over all rows (what a forward pass costs).
    pub fn tokens(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }
}

/// Tokenizes preferences under the project's rule, cutting rows longer than `max_len` at the end.
/// Returns them and how many rows were cut.
pub fn tokenize(
    tokenizer: &Tokenizer,
    items: &[Preference],
    max_len: usize,
) -> Result<(Vec<TokenizedPreference>, usize)> {
    let texts: Vec<(&PromptText, &str)> =
        items.iter().flat_map(|p| p.responses.iter().map(move |r| (&p.prompt, r.as_str()))).collect();
    let mut rows = tokenize_rows(tokenizer, &texts, max_len)?.into_iter();
    let mut cut = 0;
    let tokenized = items
        .iter()
        .map(|p| {
            let rows = rows.by_ref().take(p.responses.len()).map(|(row, was_cut)| {
                cut += usize::from(was_cut);
                row
            });
            TokenizedPreference { rows: rows.collect(), pairs: p.pairs.clone() }
        })
        .collect();
    Ok((tokenized, cut))
}

/// `tokens(prompt) ++ tokens(response) ++ [eos]` per pair, cut to `max_len`; each row says
/// whether it was cut.
pub fn tokenize_rows<P, R>(tokenizer: &Tokenizer, texts: &[(P, R)], max_len: usize) -> Result<Vec<(Vec<i64>, bool)>>
where
    P: AsPrompt + Sync,
    R: AsRef<str> + Sync,
{
    Ok(tokenizer
        .encode_prompt_response_batch(texts)?
        .into_iter()
        .map(|ids| {
            let mut row = ids.concatenated();
            let cut = row.len() > max_len;
            row.truncate(max_len);
            (row, cut)
        })
        .collect())
}

/// `items.len()` items drawn with replacement from `items`, seeded by `seed` (an ensemble member's
/// bootstrap resample).
pub fn bootstrap_resample<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    use rand::{Rng, SeedableRng};
    let mut rng = rlhf_train::TrainRng::seed_from_u64(seed ^ 0xB007_5742_u64);
    (0..items.len()).map(|_| items[rng.random_range(0..items.len())].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bootstrap_resample_draws_with_replacement_and_is_seeded() {
        let items: Vec<usize> = (0..200).collect();
        let a = bootstrap_resample(&items, 3);
        assert_eq!(a.len(), 200);
        assert_eq!(a, bootstrap_resample(&items, 3));
        assert_ne!(a, bootstrap_resample(&items, 4));
        let distinct = a.iter().collect::<std::collections::HashSet<_>>().len();
        // About 1 − 1/e of the items appear.
        assert!((100..160).contains(&distinct), "{distinct}");
    }

    #[test]
    fn split_keeps_prompts_together_and_is_seeded() {
        let mut all = Preferences::default();
        for i in 0..200 {
            for j in 0..2 {
                let responses = vec![format!("a{i}{j}"), format!("b{i}{j}")];
                all.push(
                    PromptText::of(&format!("prompt {i}")),
                    responses,
                    [Pair { better: 0, worse: 1, margin: 0.0 }],
                );
            }
        }
        let (kept, heldout) = all.clone().split_by_prompt(0.2, 7);
        assert!((50..=110).contains(&heldout.items.len()), "{}", heldout.items.len());
        assert_eq!(kept.items.len() + heldout.items.len(), 400);
        let kept_prompts: std::collections::HashSet<_> = kept.items.iter().map(|p| &p.prompt).collect();
        assert!(heldout.items.iter().all(|p| !kept_prompts.contains(&p.prompt)));
        assert_eq!(all.split_by_prompt(0.2, 7).1, heldout);
    }
}
