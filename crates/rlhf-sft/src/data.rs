//! Training examples as token ids.
//!
//! An [`Example`] is `prompt ++ target`: the loss covers the target tokens, and the prompt's earlier
//! assistant turns when the prompt is a multi-turn conversation under a chat template (every
//! assistant turn is trained on, as TRL's `assistant_only_loss` does). SFT examples follow
//! the project's rule `tokens(prompt) ++ tokens(response) ++ [eos]` (the eos is a target); pretraining
//! rows are whole documents with an empty prompt (everything is a target but the first token, which
//! has no context). The trainer deals them out with `rlhf_train::batching::BatchStream`.

use std::ops::Range;

use rlhf_data::Demonstration;
use rlhf_model::Tokenizer;

use crate::Result;

/// One training row: the loss covers `target` given `prompt`, and `prompt_targets`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Example {
    pub prompt: Vec<i64>,
    pub target: Vec<i64>,
    /// Ranges of `prompt` the loss covers too: a conversation's earlier assistant turns.
    pub prompt_targets: Vec<Range<usize>>,
}

impl Example {
    /// Tokens in the row.
    pub fn len(&self) -> usize {
        self.prompt.len() + self.target.len()
    }
    /// Whether the row has no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Tokens the loss is computed on (a row's first token has no context and is never one).
    pub fn scored(&self) -> usize {
        let in_prompt: usize = self.prompt_targets.iter().map(|span| span.len() - usize::from(span.start == 0)).sum();
        in_prompt + self.target.len() - usize::from(self.prompt.is_empty() && !self.target.is_empty())
    }
}

/// Tokenizes demonstrations as `tokens(prompt) ++ tokens(response) ++ [eos]`, cutting rows longer
/// than `max_len` tokens at the end. Returns the examples and how many were cut.
pub fn tokenize_demonstrations(
    tokenizer: &Tokenizer,
    demonstrations: &[Demonstration],
    max_len: usize,
) -> Result<(Vec<Example>, usize)> {
    let pairs: Vec<(&Demonstration, &str)> = demonstrations.iter().map(|d| (d, d.response.as_str())).collect();
    let mut cut = 0;
    let examples = tokenizer
        .encode_prompt_response_batch(&pairs)?
        .into_iter()
        .map(|ids| {
            let mut example =
                Example { prompt: ids.prompt, target: ids.response, prompt_targets: ids.earlier_assistant_turns };
            if example.len() > max_len {
                cut += 1;
                example.prompt.truncate(max_len);
                example.target.truncate(max_len - example.prompt.len());
                example.prompt_targets.retain_mut(|span| {
                    span.end = span.end.min(max_len);
                    span.start < span.end
                });
            }
            example
        })
        .collect();
    Ok((examples, cut))
}

/// Pretraining rows: each document followed by `eos`, cut to `max_len` tokens, with an empty
/// prompt. Rows hold one document each (no packing), so a document's prompt is always in view.
pub fn document_rows(documents: Vec<Vec<i64>>, eos: i64, max_len: usize) -> Vec<Example> {
    documents
        .into_iter()
        .map(|mut doc| {
            doc.push(eos);
            doc.truncate(max_len);
            Example { prompt: Vec::new(), target: doc, prompt_targets: Vec::new() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_rows_end_with_eos_and_are_cut() {
        let rows = document_rows(vec![vec![1, 2, 3], vec![4, 5]], 0, 3);
        let targets: Vec<Vec<i64>> = rows.iter().map(|r| r.target.clone()).collect();
        assert_eq!(targets, vec![vec![1, 2, 3], vec![4, 5, 0]]);
        assert_eq!(rows[0].scored(), 2);
    }
}
