//! The items people label, made once from a samples table (`rlhf-eval generate` output: the
//! demonstrations schema, K rows per prompt id) and kept in the studio directory, so a changed or
//! moved samples file cannot change what the journal's labels refer to.

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
            let at = *index.entry(row.id.clone()).or_insert_with(|| {
                items.push(Item {
                    id: row.id.clone(),
                    prompt: row.prompt.clone(),
                    prompt_messages: row.prompt_messages.clone(),
                    responses: Vec::new(),
                });
                items.len() - 1
            });
            let item = &mut items[at];
            if item.responses.contains(&row.response) {
                dropped.duplicates += 1;
                continue;
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
        }
    }
    let before = items.len();
    items.retain(|item| item.responses.len() >= 2);
    dropped.single = before - items.len();
    if items.is_empty() {
        return Err(Error::input(path, "no prompt has two distinct responses to rank"));
    }
    Ok((items, dropped))
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
