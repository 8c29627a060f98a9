//! Comparisons as token ids ([`Pair`]), their batches and log-probs, and the held-out split (the
//! training order is `rlhf_train::batching::BatchStream`, plainly shuffled).
//!
//! A pair is scored as two rows, `prompt ++ chosen` and `prompt ++ rejected` (responses end with
//! eos, the project's tokenization rule), stacked into one right-padded batch so the policy runs
//! one forward pass per micro-batch (chosen rows first, then rejected).
//!
//! KTO's unpaired labels ([`tokenize_labels`]) are pairs too: `chosen` is the labelled completion,
//! `rejected` the completion of the next row with another prompt (cyclically, in table order, as
//! TRL builds its KL dataset by shifting completions), and `label` says whether `chosen` is
//! desirable. Only the labelled rows carry gradients; the mismatched ones are scored under no-grad.

use std::path::Path;

use rlhf_data::{Comparison, Feedback};
use rlhf_model::{build_batch, sequence_logprobs, CausalLm, LogprobOptions, PaddingSide, Tokenizer};
use tch::{Kind, Tensor};

use crate::loss::{PolicyLogps, ReferenceLogps};
use crate::{Error, Result};

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
    /// KTO: whether `chosen` (the labelled completion) is desirable; `None` for a preference pair.
    pub label: Option<bool>,
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

/// Pairs of (prompt, first response) and (prompt, second response) token ids, cut to `limits`;
/// also how many had a part cut.
fn encode_pairs<P: rlhf_data::AsPrompt + Sync>(
    tokenizer: &Tokenizer,
    first: &[(P, &str)],
    second: &[(P, &str)],
    limits: Limits,
) -> Result<(Vec<Pair>, usize)> {
    let chosen = tokenizer.encode_prompt_response_batch(first)?;
    let rejected = tokenizer.encode_prompt_response_batch(second)?;
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
            Pair { prompt, chosen, rejected, reference: None, label: None }
        })
        .collect();
    Ok((pairs, cut))
}

/// Tokenizes comparisons; returns the pairs and how many had a part cut to fit `limits`.
pub fn tokenize(tokenizer: &Tokenizer, comparisons: &[Comparison], limits: Limits) -> Result<(Vec<Pair>, usize)> {
    let chosen: Vec<(&Comparison, &str)> = comparisons.iter().map(|c| (c, c.chosen.as_str())).collect();
    let rejected: Vec<(&Comparison, &str)> = comparisons.iter().map(|c| (c, c.rejected.as_str())).collect();
    encode_pairs(tokenizer, &chosen, &rejected, limits)
}

/// For each label, the index of the next one (cyclically) whose prompt differs: its completion is
/// the mismatched one. Fails when every label has the same prompt.
fn mismatched_partners(labels: &[Feedback]) -> Result<Vec<usize>> {
    let n = labels.len();
    (0..n)
        .map(|i| {
            (1..n).map(|step| (i + step) % n).find(|&j| labels[j].prompt != labels[i].prompt).ok_or_else(|| {
                Error::Invalid("KTO needs labels on at least two different prompts (for its KL estimate)".into())
            })
        })
        .collect()
}

/// Tokenizes unpaired labels (see the module doc); returns them and how many had a part cut.
pub fn tokenize_labels(tokenizer: &Tokenizer, labels: &[Feedback], limits: Limits) -> Result<(Vec<Pair>, usize)> {
    let partners = mismatched_partners(labels)?;
    let labelled: Vec<(&Feedback, &str)> = labels.iter().map(|l| (l, l.completion.as_str())).collect();
    let mismatched: Vec<(&Feedback, &str)> =
        labels.iter().zip(&partners).map(|(l, &j)| (l, labels[j].completion.as_str())).collect();
    let (mut pairs, cut) = encode_pairs(tokenizer, &labelled, &mismatched, limits)?;
    for (pair, label) in pairs.iter_mut().zip(labels) {
        pair.label = Some(label.label);
    }
    Ok((pairs, cut))
}

/// Summed log-probs and token counts of `rows`, one right-padded batch.
fn score_rows(model: &CausalLm, rows: &[(&[i64], &[i64])], pad_id: i64) -> Result<rlhf_model::SequenceLogprobs> {
    let batch = build_batch(rows, None, pad_id, PaddingSide::Right, model.device())?;
    Ok(sequence_logprobs(model, &batch, LogprobOptions::default())?)
}

/// The policy's summed response log-probs of `pairs` (carries the graph; for labelled pairs only
/// through the labelled rows).
pub fn policy_logps(model: &CausalLm, pairs: &[&Pair], pad_id: i64) -> Result<PolicyLogps> {
    let chosen = pairs.iter().map(|p| (p.prompt.as_slice(), p.chosen.as_slice()));
    let rejected = pairs.iter().map(|p| (p.prompt.as_slice(), p.rejected.as_slice()));
    let n = pairs.len() as i64;
    let labels: Option<Vec<f64>> = pairs.iter().map(|p| p.label.map(|l| f64::from(u8::from(l)))).collect();
    if let Some(labels) = labels {
        let labelled = score_rows(model, &chosen.collect::<Vec<_>>(), pad_id)?;
        let mismatched = tch::no_grad(|| score_rows(model, &rejected.collect::<Vec<_>>(), pad_id))?;
        return Ok(PolicyLogps {
            chosen: labelled.sum,
            rejected: mismatched.sum,
            chosen_tokens: labelled.count,
            rejected_tokens: mismatched.count,
            labels: Some(Tensor::from_slice(&labels)),
        });
    }
    let rows: Vec<(&[i64], &[i64])> = chosen.chain(rejected).collect();
    let scored = score_rows(model, &rows, pad_id)?;
    Ok(PolicyLogps {
        chosen: scored.sum.narrow(0, 0, n),
        rejected: scored.sum.narrow(0, n, n),
        chosen_tokens: scored.count.narrow(0, 0, n),
        rejected_tokens: scored.count.narrow(0, n, n),
        labels: None,
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
        let bytes =
            std::fs::read(path).map_err(|e| Error::File { path: path.to_path_buf(), message: e.to_string() })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heldout_split_is_stable_and_near_its_fraction() {
        let ids: Vec<String> = (0..4000).map(|i| format!("pair-{i}")).collect();
        let held = ids.iter().filter(|id| is_heldout(id, 0.1)).count();
        assert!((300..500).contains(&held), "{held}");
        assert!(!ids.iter().any(|id| is_heldout(id, 0.0)));
        assert_eq!(Fnv::default().update(b"a").finish(), Fnv::default().update(b"a").finish());
        assert_ne!(
            Fnv::default().update(b"ab").update(b"c").finish(),
            Fnv::default().update(b"a").update(b"bc").finish()
        );
    }
}
