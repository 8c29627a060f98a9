//! The items people label, made once and kept in the studio directory, so a changed or moved input
//! cannot change what the journal's labels refer to: for ranking, from a samples table
//! (`rlhf-eval generate` output: the demonstrations schema, K rows per prompt id); for a blind
//! study, from one responses table per policy (e.g. the eval's `responses_<policy>.parquet`).

use std::collections::HashMap;
use std::path::Path;

use rlhf_data::{ChatMessage, Demonstration, Location, Record, RecordReader};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The most responses one item shows: the keys 1 to 9 rank them.
pub const MAX_RESPONSES: usize = 9;
/// The longest response or prompt the studio takes, in characters.
pub const MAX_TEXT_CHARS: usize = 50_000;

/// A prompt with the responses an annotator ranks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The prompt's id in the samples table.
    pub id: String,
    pub prompt: String,
    #[serde(default)]
    pub prompt_messages: Option<Vec<ChatMessage>>,
    /// Distinct responses, in the samples table's order.
    pub responses: Vec<String>,
    /// In a study, the policy each response came from (never shown while the study runs).
    #[serde(default)]
    pub sources: Vec<String>,
}

/// What [`items_from_samples`] left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Prompts with fewer than two distinct responses: nothing to rank.
    pub single: usize,
    /// Responses identical to an earlier one of the same prompt.
    pub duplicates: usize,
}

/// Groups the rows of the samples table at `path` by prompt id (in first-appearance order) into
/// items of distinct responses. A prompt with more than [`MAX_RESPONSES`] responses, a text longer
/// than [`MAX_TEXT_CHARS`], or a table with nothing to rank is an error naming the file.
pub fn items_from_samples(path: &Path) -> Result<(Vec<Item>, Dropped)> {
    let mut items: Vec<Item> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut dropped = Dropped::default();
    for_each_row(path, |row| {
        let at = *index.entry(row.id.clone()).or_insert_with(|| {
            items.push(Item {
                id: row.id.clone(),
                prompt: row.prompt.clone(),
                prompt_messages: row.prompt_messages.clone(),
                responses: Vec::new(),
                sources: Vec::new(),
            });
            items.len() - 1
        });
        let item = &mut items[at];
        if item.responses.contains(&row.response) {
            dropped.duplicates += 1;
            return Ok(());
        }
        if item.responses.len() == MAX_RESPONSES {
            return Err(Error::input(
                path,
                format!(
                    "id {}: more than {MAX_RESPONSES} distinct responses; the studio ranks at most {MAX_RESPONSES}",
                    row.id
                ),
            ));
        }
        item.responses.push(row.response);
        Ok(())
    })?;
    let before = items.len();
    items.retain(|item| item.responses.len() >= 2);
    dropped.single = before - items.len();
    if items.is_empty() {
        return Err(Error::input(path, "no prompt has two distinct responses to rank"));
    }
    Ok((items, dropped))
}

/// What [`study_items`] left out: prompts where the two policies answered alike.
pub type Identical = usize;

/// Blind A/B items from one responses table per policy, `(name, table)`: the prompts every table
/// answers (each table's first response to a prompt), in the first table's order; prompt `k` pits
/// the `k mod P`-th of the P pairs of policies against each other, so every pair meets equally often.
/// Prompts where the pair answered identically are left out and counted.
pub fn study_items(policies: &[(String, std::path::PathBuf)]) -> Result<(Vec<Item>, Identical)> {
    if policies.len() < 2 {
        return Err(Error::input(".", "a study needs at least two policies (--policy NAME=TABLE, twice or more)"));
    }
    let mut answers: Vec<HashMap<String, String>> = Vec::new();
    let mut prompts: Vec<(String, String, Option<Vec<ChatMessage>>)> = Vec::new();
    for (index, (_, path)) in policies.iter().enumerate() {
        let mut first: HashMap<String, String> = HashMap::new();
        for_each_row(path, |row| {
            if let std::collections::hash_map::Entry::Vacant(slot) = first.entry(row.id.clone()) {
                if index == 0 {
                    prompts.push((row.id, row.prompt, row.prompt_messages));
                }
                slot.insert(row.response);
            }
            Ok(())
        })?;
        answers.push(first);
    }
    let pairs: Vec<(usize, usize)> =
        (0..policies.len()).flat_map(|a| ((a + 1)..policies.len()).map(move |b| (a, b))).collect();
    let (mut items, mut identical) = (Vec::<Item>::new(), 0);
    let shared = prompts.into_iter().filter(|(id, _, _)| answers.iter().all(|table| table.contains_key(id)));
    for (k, (id, prompt, prompt_messages)) in shared.enumerate() {
        let (a, b) = pairs[k % pairs.len()];
        let (first, second) = (&answers[a][&id], &answers[b][&id]);
        if first == second {
            identical += 1;
            continue;
        }
        items.push(Item {
            // The prompt's id alone: one pair per prompt, and nothing the page sees names a policy.
            id,
            prompt,
            prompt_messages,
            responses: vec![first.clone(), second.clone()],
            sources: vec![policies[a].0.clone(), policies[b].0.clone()],
        });
    }
    if items.is_empty() {
        return Err(Error::input(&policies[0].1, "no prompt that every policy answered, differently"));
    }
    Ok((items, identical))
}

/// Hands each row of the responses table at `path` to `take`, once it is valid (non-empty texts)
/// and no text is longer than [`MAX_TEXT_CHARS`].
fn for_each_row(path: &Path, mut take: impl FnMut(Demonstration) -> Result<()>) -> Result<()> {
    for chunk in RecordReader::<Demonstration>::open(path)? {
        let chunk = chunk?;
        for (offset, row) in chunk.records.into_iter().enumerate() {
            row.validate(|| Location::Row { path: path.to_path_buf(), row: chunk.first_row + offset as u64 })?;
            for (what, text) in [("prompt", &row.prompt), ("response", &row.response)] {
                let chars = text.chars().count();
                if chars > MAX_TEXT_CHARS {
                    return Err(Error::input(
                        path,
                        format!(
                            "id {}: the {what} is {chars} characters; the studio shows at most {MAX_TEXT_CHARS}",
                            row.id
                        ),
                    ));
                }
            }
            take(row)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlhf_data::write_records;

    fn row(id: &str, response: &str) -> Demonstration {
        Demonstration {
            id: id.into(),
            prompt: format!("prompt {id}"),
            response: response.into(),
            prompt_messages: None,
        }
    }

    #[test]
    fn rows_group_by_prompt_and_identical_or_lone_responses_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.parquet");
        let rows = [row("a", "x"), row("b", "only"), row("a", "y"), row("a", "x"), row("c", "1"), row("c", "2")];
        write_records(&path, &rows).unwrap();
        let (items, dropped) = items_from_samples(&path).unwrap();
        let got: Vec<(&str, Vec<&str>)> =
            items.iter().map(|i| (i.id.as_str(), i.responses.iter().map(String::as_str).collect())).collect();
        assert_eq!(got, [("a", vec!["x", "y"]), ("c", vec!["1", "2"])]);
        assert_eq!(dropped, Dropped { single: 1, duplicates: 1 });
    }

    #[test]
    fn study_items_pair_every_two_policies_in_turn_on_shared_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let mut policies = Vec::new();
        for name in ["sft", "ppo", "dpo"] {
            let path = dir.path().join(format!("{name}.parquet"));
            // dpo answers p1 like sft; ppo lacks p5.
            let rows: Vec<Demonstration> = (0..6)
                .filter(|p| name != "ppo" || *p != 5)
                .map(|p| {
                    row(&format!("p{p}"), &if name == "dpo" && p == 1 { "sft 1".into() } else { format!("{name} {p}") })
                })
                .collect();
            write_records(&path, &rows).unwrap();
            policies.push((name.to_string(), path));
        }
        let (items, identical) = study_items(&policies).unwrap();
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        // p0 sft-ppo, p1 sft-dpo (identical: dropped), p2 ppo-dpo, p3 sft-ppo, p4 sft-dpo.
        assert_eq!(ids, ["p0", "p2", "p3", "p4"]);
        assert_eq!(identical, 1);
        assert_eq!(items[1].sources, ["ppo", "dpo"]);
        assert_eq!(items[1].responses, ["ppo 2", "dpo 2"]);
        assert!(study_items(&policies[..1]).is_err());
    }

    #[test]
    fn too_many_responses_or_nothing_to_rank_is_one_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.parquet");
        let rows: Vec<Demonstration> = (0..10).map(|i| row("a", &format!("r{i}"))).collect();
        write_records(&path, &rows).unwrap();
        let err = items_from_samples(&path).unwrap_err().to_string();
        assert!(err.contains("samples.parquet") && err.contains("more than 9"), "{err}");
        write_records(&path, &[row("a", "x")]).unwrap();
        let err = items_from_samples(&path).unwrap_err().to_string();
        assert!(err.contains("no prompt has two distinct responses"), "{err}");
    }
}
