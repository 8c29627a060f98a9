//! Comparisons as token ids ([`Pair`]), their batches and log-probs, the held-out split and the
//! training order ([`PairStream`]).
//!
//! A pair is scored as two rows, `prompt ++ chosen` and `prompt ++ rejected` (responses end with
//! eos, the project's tokenization rule), stacked into one right-padded batch so the policy runs
//! one forward pass per micro-batch (chosen rows first, then rejected).

use std::path::Path;

use rand::seq::SliceRandom;
use rlhf_data::Comparison;
use rlhf_model::train_state::{restore_rng, rng_state};
use rlhf_model::{build_batch, sequence_logprobs, CausalLm, LogprobOptions, PaddingSide, Tokenizer, TrainRng};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::loss::{PolicyLogps, ReferenceLogps};

/// One comparison as token ids.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pair {
    pub prompt: Vec<i64>,
    /// `tokens(chosen) ++ [eos]` (possibly cut).
    pub chosen: Vec<i64>,
    /// `tokens(rejected) ++ [eos]` (possibly cut).
    pub rejected: Vec<i64>,
    /// Reference log-probs `[chosen, rejected]`, once known.
    pub reference: Option<[f64; 2]>,
}

impl Pair {
    /// Tokens in both rows.
    pub fn tokens(&self) -> usize {
        2 * self.prompt.len() + self.chosen.len() + self.rejected.len()
    }
}

/// Token budgets of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longer prompts keep their last tokens.
    pub max_prompt_len: usize,
    /// Longer responses are cut at the end.
    pub max_response_len: usize,
}

/// Tokenizes comparisons; returns the pairs and how many had a part cut to fit `limits`.
pub fn tokenize(tokenizer: &Tokenizer, comparisons: &[Comparison], limits: Limits) -> Result<(Vec<Pair>, usize)> {
    let encode = |response: fn(&Comparison) -> &str| {
        let texts: Vec<(&str, &str)> = comparisons.iter().map(|c| (c.prompt.as_str(), response(c))).collect();
        tokenizer.encode_prompt_response_batch(&texts)
    };
    let chosen = encode(|c| c.chosen.as_str())?;
    let rejected = encode(|c| c.rejected.as_str())?;
    let mut cut = 0;
    let pairs = chosen
        .into_iter()
        .zip(rejected)
        .map(|(c, r)| {
            let mut prompt = c.prompt;
            let (mut chosen, mut rejected) = (c.response, r.response);
            let long = prompt.len() > limits.max_prompt_len
                || chosen.len() > limits.max_response_len
                || rejected.len() > limits.max_response_len;
            cut += usize::from(long);
            prompt.drain(..prompt.len().saturating_sub(limits.max_prompt_len));
            chosen.truncate(limits.max_response_len);
            rejected.truncate(limits.max_response_len);
            Pair { prompt, chosen, rejected, reference: None }
        })
        .collect();
    Ok((pairs, cut))
}

/// The policy's summed response log-probs of `pairs` (carries the graph).
pub fn policy_logps(model: &CausalLm, pairs: &[&Pair], pad_id: i64) -> Result<PolicyLogps> {
    let chosen = pairs.iter().map(|p| (p.prompt.as_slice(), p.chosen.as_slice()));
    let rejected = pairs.iter().map(|p| (p.prompt.as_slice(), p.rejected.as_slice()));
    let rows: Vec<(&[i64], &[i64])> = chosen.chain(rejected).collect();
    let batch = build_batch(&rows, None, pad_id, PaddingSide::Right, model.device())?;
    let scored = sequence_logprobs(model, &batch, LogprobOptions::default())?;
    let n = pairs.len() as i64;
    Ok(PolicyLogps {
        chosen: scored.sum.narrow(0, 0, n),
        rejected: scored.sum.narrow(0, n, n),
        chosen_tokens: scored.count.narrow(0, 0, n),
        rejected_tokens: scored.count.narrow(0, n, n),
    })
}

/// The cached reference log-probs of `pairs`, as tensors.
pub fn cached_reference(pairs: &[&Pair]) -> Result<ReferenceLogps> {
    let values = pairs
        .iter()
        .map(|p| p.reference.ok_or_else(|| Error::Invalid("a pair has no reference log-probs".into())))
        .collect::<Result<Vec<[f64; 2]>>>()?;
    let column = |i: usize| Tensor::from_slice(&values.iter().map(|v| v[i]).collect::<Vec<f64>>());
    Ok(ReferenceLogps { chosen: column(0), rejected: column(1) })
}

/// Reference log-probs scored now, under no-grad, by `model` (the reference, or the policy with
/// its adapters off).
pub fn live_reference(model: &CausalLm, pairs: &[&Pair], pad_id: i64) -> Result<ReferenceLogps> {
    let logps = tch::no_grad(|| policy_logps(model, pairs, pad_id))?;
    Ok(ReferenceLogps { chosen: logps.chosen.to_kind(Kind::Double), rejected: logps.rejected.to_kind(Kind::Double) })
}

/// A 64-bit FNV-1a hash, stable across platforms and releases (cache keys, the held-out split).
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Mixes in `bytes`, then a separator so consecutive fields cannot run together.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        for &byte in bytes.iter().chain(&[0xff]) {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
    /// Mixes in the bytes of a file.
    pub fn update_file(&mut self, path: &Path) -> Result<&mut Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::File { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(self.update(&bytes))
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// Whether the comparison with this id belongs to the held-out share `fraction` (by a hash of the
/// id, so the split does not depend on row order).
pub fn is_heldout(id: &str, fraction: f64) -> bool {
    fraction > 0.0 && (Fnv::default().update(id.as_bytes()).finish() as f64) < fraction * u64::MAX as f64
}

/// Where a [`PairStream`] stands, as a checkpoint stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPosition {
    pub epoch: u64,
    /// Micro-batches of this epoch already dealt.
    pub batches: u64,
    /// The RNG state at the start of the epoch (its order is redrawn from it).
    pub rng_state: Vec<u64>,
}

/// An endless stream of shuffled micro-batches (indices into the pairs), epoch after epoch.
pub struct PairStream {
    pairs: usize,
    batch_size: usize,
    rng: TrainRng,
    position: StreamPosition,
    batches: Vec<Vec<usize>>,
}

impl PairStream {
    /// A stream over `pairs` pairs starting at epoch 0, or continued from `position`.
    pub fn new(pairs: usize, batch_size: usize, rng: TrainRng, position: Option<&StreamPosition>) -> Result<Self> {
        let rng = match position {
            Some(p) => restore_rng(&p.rng_state)?,
            None => rng,
        };
        let start = StreamPosition { epoch: 0, batches: 0, rng_state: rng_state(&rng) };
        let mut stream = PairStream { pairs, batch_size, rng, position: start, batches: Vec::new() };
        stream.shuffle();
        if let Some(p) = position {
            stream.position.epoch = p.epoch;
            stream.position.batches = p.batches;
        }
        Ok(stream)
    }

    fn shuffle(&mut self) {
        let mut order: Vec<usize> = (0..self.pairs).collect();
        order.shuffle(&mut self.rng);
        self.batches = order.chunks(self.batch_size).map(<[usize]>::to_vec).collect();
    }

    pub fn position(&self) -> &StreamPosition {
        &self.position
    }

    /// Micro-batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.batches.len()
    }

    /// The next micro-batch, starting a new epoch when this one is used up.
    pub fn next_batch(&mut self) -> &[usize] {
        if self.position.batches as usize == self.batches.len() {
            self.position = StreamPosition { epoch: self.position.epoch + 1, batches: 0, rng_state: rng_state(&self.rng) };
            self.shuffle();
        }
        self.position.batches += 1;
        &self.batches[self.position.batches as usize - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_resumed_stream_deals_the_same_batches() {
        let mut a = PairStream::new(23, 4, TrainRng::seed_from_u64(3), None).unwrap();
        assert_eq!(a.batches_per_epoch(), 6);
        let mut saved = None;
        let mut rest = Vec::new();
        for i in 0..20 {
            if i == 9 {
                saved = Some(a.position().clone());
            }
            let batch = a.next_batch().to_vec();
            if i >= 9 {
                rest.push(batch);
            }
        }
        let mut b = PairStream::new(23, 4, TrainRng::seed_from_u64(99), saved.as_ref()).unwrap();
        let resumed: Vec<Vec<usize>> = (9..20).map(|_| b.next_batch().to_vec()).collect();
        assert_eq!(resumed, rest);
        assert_eq!(b.position().epoch, 3);
    }

    #[test]
    fn the_heldout_split_is_stable_and_near_its_fraction() {
        let ids: Vec<String> = (0..4000).map(|i| format!("pair-{i}")).collect();
        let held = ids.iter().filter(|id| is_heldout(id, 0.1)).count();
        assert!((300..500).contains(&held), "{held}");
        assert!(!ids.iter().any(|id| is_heldout(id, 0.0)));
        assert_eq!(Fnv::default().update(b"a").finish(), Fnv::default().update(b"a").finish());
        assert_ne!(Fnv::default().update(b"ab").update(b"c").finish(), Fnv::default().update(b"a").update(b"bc").finish());
    }
}
