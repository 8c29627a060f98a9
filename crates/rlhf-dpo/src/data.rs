//! Comparisons as token ids ([`Pair`]), their batches and log-probs, and the held-out split (the
//! training order is `rlhf_train::batching::BatchStream`, plainly shuffled).
//!
//! A pair is scored as two rows, `prompt ++ chosen` and `prompt ++ rejected` (responses end with
//! eos, the project's tokenization rule), stacked into one right-padded batch so the policy runs
//! one forward pass per micro-batch (chosen rows first, then rejected).

use std::path::Path;

use rlhf_data::Comparison;
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
        let texts: Vec<(&Comparison, &str)> = comparisons.iter().map(|c| (c, response(c))).collect();
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
