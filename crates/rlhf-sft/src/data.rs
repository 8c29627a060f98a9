//! Training examples as token ids, and their order.
//!
//! An [`Example`] is `prompt ++ target`: the loss covers the target tokens only. SFT examples follow
//! the project's rule `tokens(prompt) ++ tokens(response) ++ [eos]` (the eos is a target); pretraining
//! rows are packed documents with an empty prompt (everything is a target but the first token, which
//! has no context). [`BatchStream`] deals out micro-batches, epoch after epoch, in an order drawn from
//! a seeded [`TrainRng`] and bucketed by length; its position and the RNG state at the start of the
//! epoch are all a checkpoint needs to continue the same order.

use rand::seq::SliceRandom;
use rlhf_data::Demonstration;
use rlhf_model::train_state::{restore_rng, rng_state};
use rlhf_model::{Tokenizer, TrainRng};

use crate::error::Result;

/// One training row: the loss covers `target`, given `prompt`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Example {
    pub prompt: Vec<i64>,
    pub target: Vec<i64>,
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
        self.target.len() - usize::from(self.prompt.is_empty() && !self.target.is_empty())
    }
}

/// Tokenizes demonstrations as `tokens(prompt) ++ tokens(response) ++ [eos]`, cutting rows longer
/// than `max_len` tokens at the end. Returns the examples and how many were cut.
pub fn tokenize_demonstrations(
    tokenizer: &Tokenizer,
    demonstrations: &[Demonstration],
    max_len: usize,
) -> Result<(Vec<Example>, usize)> {
    let pairs: Vec<(&str, &str)> = demonstrations.iter().map(|d| (d.prompt.as_str(), d.response.as_str())).collect();
    let mut cut = 0;
    let examples = tokenizer
        .encode_prompt_response_batch(&pairs)?
        .into_iter()
        .map(|ids| {
            let mut example = Example { prompt: ids.prompt, target: ids.response };
            if example.len() > max_len {
                cut += 1;
                example.prompt.truncate(max_len);
                example.target.truncate(max_len - example.prompt.len());
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
            Example { prompt: Vec::new(), target: doc }
        })
        .collect()
}

/// Batches per length bucket: examples are shuffled, then sorted by length within groups of this
/// many batches, so a batch holds examples of similar length while the order stays random.
const BUCKET_BATCHES: usize = 32;

/// One epoch's micro-batches: shuffled, length-bucketed, then the batches shuffled.
fn epoch_batches(lengths: &[usize], batch_size: usize, rng: &mut TrainRng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let mut batches: Vec<Vec<usize>> = Vec::with_capacity(lengths.len().div_ceil(batch_size));
    for group in order.chunks_mut(batch_size * BUCKET_BATCHES) {
        group.sort_by_key(|&i| lengths[i]);
        batches.extend(group.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

/// Where a [`BatchStream`] stands, as a checkpoint stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPosition {
    pub epoch: u64,
    /// Examples of this epoch already dealt.
    pub examples: u64,
    /// The RNG state at the start of the epoch (its order is redrawn from it).
    pub rng_state: Vec<u64>,
}

/// An endless stream of micro-batches (indices into the examples), epoch after epoch.
pub struct BatchStream {
    lengths: Vec<usize>,
    batch_size: usize,
    rng: TrainRng,
    position: StreamPosition,
    batches: Vec<Vec<usize>>,
    next: usize,
}

impl BatchStream {
    /// A stream over examples of the given lengths, starting at epoch 0.
    pub fn new(lengths: Vec<usize>, batch_size: usize, rng: TrainRng) -> Self {
        let position = StreamPosition { epoch: 0, examples: 0, rng_state: rng_state(&rng) };
        let mut stream = BatchStream { lengths, batch_size, rng, position, batches: Vec::new(), next: 0 };
        stream.batches = epoch_batches(&stream.lengths, batch_size, &mut stream.rng);
        stream
    }

    /// The stream continued from a saved position.
    pub fn resume(lengths: Vec<usize>, batch_size: usize, position: &StreamPosition) -> Result<Self> {
        let mut stream = Self::new(lengths, batch_size, restore_rng(&position.rng_state)?);
        stream.position.epoch = position.epoch;
        while stream.position.examples < position.examples && stream.next < stream.batches.len() {
            stream.position.examples += stream.batches[stream.next].len() as u64;
            stream.next += 1;
        }
        Ok(stream)
    }

    /// The current position.
    pub fn position(&self) -> &StreamPosition {
        &self.position
    }

    /// The next micro-batch, starting a new epoch when this one is used up.
    pub fn next_batch(&mut self) -> &[usize] {
        if self.next == self.batches.len() {
            self.position = StreamPosition { epoch: self.position.epoch + 1, examples: 0, rng_state: rng_state(&self.rng) };
            self.batches = epoch_batches(&self.lengths, self.batch_size, &mut self.rng);
            self.next = 0;
        }
        self.next += 1;
        let batch = &self.batches[self.next - 1];
        self.position.examples += batch.len() as u64;
        batch
    }

    /// Micro-batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.batches.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn document_rows_end_with_eos_and_are_cut() {
        let rows = document_rows(vec![vec![1, 2, 3], vec![4, 5]], 0, 3);
        let targets: Vec<Vec<i64>> = rows.iter().map(|r| r.target.clone()).collect();
        assert_eq!(targets, vec![vec![1, 2, 3], vec![4, 5, 0]]);
        assert_eq!(rows[0].scored(), 2);
    }

    #[test]
    fn a_resumed_stream_deals_the_same_batches() {
        let lengths: Vec<usize> = (0..50).map(|i| i % 7 + 1).collect();
        let mut a = BatchStream::new(lengths.clone(), 4, TrainRng::seed_from_u64(3));
        assert_eq!(a.batches_per_epoch(), 13);
        let mut saved = None;
        let mut rest = Vec::new();
        for i in 0..40 {
            if i == 17 {
                saved = Some(a.position().clone());
            }
            let batch = a.next_batch().to_vec();
            if i >= 17 {
                rest.push(batch);
            }
        }
        let mut b = BatchStream::resume(lengths, 4, &saved.unwrap()).unwrap();
        let resumed: Vec<Vec<usize>> = (17..40).map(|_| b.next_batch().to_vec()).collect();
        assert_eq!(resumed, rest);
        assert_eq!(b.position().epoch, 3);
    }
}
