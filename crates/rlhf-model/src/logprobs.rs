//! Per-token log-probabilities of response tokens given their prompt: the kernel of SFT, DPO and PPO.
//!
//! [`build_batch`] lays out `tokens(prompt) ++ tokens(response) ++ [eos]` rows (left or right
//! padding) with an attention mask, position ids from that mask, and a response mask (the eos counts
//! as a response token). [`sequence_logprobs`] runs the model and returns, aligned with the input
//! positions, `log p(x_t | x_<t)` on response tokens (0 elsewhere), their per-row sum and count, and
//! optionally the per-token entropy. It is memory-lean: the LM head runs only from the first
//! response position on, and log-probs are `gathered logit - logsumexp` (no second `[B,T,V]`
//! tensor, no one-hot). Gradients flow; wrap in `tch::no_grad` for reference scoring.

use crate::error::{Error, Result};
use crate::layers::position_ids_from_mask;
use crate::model::CausalLm;
use tch::{Device, Kind, Tensor};

/// Which side of a row padding goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingSide {
    /// `[tokens..., pad...]` (training batches).
    #[default]
    Right,
    /// `[pad..., tokens...]` (generation prompts).
    Left,
}

/// A padded batch of prompt+response rows.
#[derive(Debug)]
pub struct TokenBatch {
    /// `[B, T]` int64.
    pub input_ids: Tensor,
    /// `[B, T]` int64, 1 on real tokens.
    pub attention_mask: Tensor,
    /// `[B, T]` int64, from the attention mask.
    pub position_ids: Tensor,
    /// `[B, T]` f32, 1 on response tokens (including the appended eos).
    pub response_mask: Tensor,
    /// Prompt length per row.
    pub prompt_lens: Vec<i64>,
    /// Response length per row (including the appended eos).
    pub response_lens: Vec<i64>,
    /// Smallest column holding a response token in any row (`T` when no row has one).
    pub first_response_col: i64,
    /// Padding side used.
    pub side: PaddingSide,
}

/// Builds a batch from `(prompt_tokens, response_tokens)` pairs: each row is
/// `prompt ++ response ++ [eos]` (`eos = None` appends nothing), padded with `pad_token_id`.
pub fn build_batch<P, R>(
    pairs: &[(P, R)],
    eos_token_id: Option<i64>,
    pad_token_id: i64,
    side: PaddingSide,
    device: Device,
) -> Result<TokenBatch>
where
    P: AsRef<[i64]>,
    R: AsRef<[i64]>,
{
    if pairs.is_empty() {
        return Err(Error::invalid("build_batch needs at least one (prompt, response) pair"));
    }
    let rows: Vec<(usize, Vec<i64>)> = pairs
        .iter()
        .map(|(p, r)| {
            let mut row = p.as_ref().to_vec();
            row.extend_from_slice(r.as_ref());
            row.extend(eos_token_id);
            (p.as_ref().len(), row)
        })
        .collect();
    let t = rows.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
    if t == 0 {
        return Err(Error::invalid("all rows are empty"));
    }
    let b = rows.len();
    let mut ids = vec![pad_token_id; b * t];
    let mut mask = vec![0i64; b * t];
    let mut resp = vec![0f32; b * t];
    let (mut prompt_lens, mut response_lens) = (Vec::with_capacity(b), Vec::with_capacity(b));
    let mut first = t as i64;
    for (i, (plen, row)) in rows.iter().enumerate() {
        let off = match side {
            PaddingSide::Right => 0,
            PaddingSide::Left => t - row.len(),
        };
        for (j, &tok) in row.iter().enumerate() {
            ids[i * t + off + j] = tok;
            mask[i * t + off + j] = 1;
            // The row's very first token has no context and cannot be scored.
            if j >= *plen && j > 0 {
                resp[i * t + off + j] = 1.0;
            }
        }
        let rlen = row.len() - plen;
        if rlen > 0 {
            first = first.min((off + (*plen).max(1)) as i64);
        }
        prompt_lens.push(*plen as i64);
        response_lens.push(rlen as i64);
    }
    let shape = [b as i64, t as i64];
    let input_ids = Tensor::from_slice(&ids).view(shape).to_device(device);
    let attention_mask = Tensor::from_slice(&mask).view(shape).to_device(device);
    let position_ids = position_ids_from_mask(&attention_mask);
    let response_mask = Tensor::from_slice(&resp).view(shape).to_device(device);
    Ok(TokenBatch {
        input_ids,
        attention_mask,
        position_ids,
        response_mask,
        prompt_lens,
        response_lens,
        first_response_col: first,
        side,
    })
}

impl TokenBatch {
    /// Also scores `spans[i]`, ranges of row `i`'s own tokens (0: its first token, which has no
    /// context and stays unscored): SFT's earlier assistant turns inside a prompt.
    pub fn score_spans(&mut self, spans: &[&[std::ops::Range<usize>]]) -> Result<()> {
        let (b, t) = (self.input_ids.size()[0], self.input_ids.size()[1]);
        if spans.len() as i64 != b {
            return Err(Error::invalid(format!("score_spans: {} span lists for {b} rows", spans.len())));
        }
        if spans.iter().all(|row| row.is_empty()) {
            return Ok(());
        }
        let device = self.response_mask.device();
        let mut mask = Vec::<f32>::try_from(self.response_mask.to_device(Device::Cpu).view([-1]))?;
        for (i, row) in spans.iter().enumerate() {
            let len = (self.prompt_lens[i] + self.response_lens[i]) as usize;
            let offset = match self.side {
                PaddingSide::Right => 0,
                PaddingSide::Left => t as usize - len,
            };
            for span in row.iter() {
                if span.end > len {
                    return Err(Error::invalid(format!("score_spans: span {span:?} beyond row {i} of {len} tokens")));
                }
                for j in span.clone().filter(|&j| j > 0) {
                    mask[i * t as usize + offset + j] = 1.0;
                    self.first_response_col = self.first_response_col.min((offset + j) as i64);
                }
            }
        }
        self.response_mask = Tensor::from_slice(&mask).view([b, t]).to_device(device);
        Ok(())
    }
}

/// Options of [`sequence_logprobs`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogprobOptions {
    /// Logits are divided by this before the softmax (match the sampling temperature in PPO).
    pub temperature: f64,
    /// Also compute the per-token entropy.
    pub entropy: bool,
}

impl Default for LogprobOptions {
    fn default() -> Self {
        LogprobOptions { temperature: 1.0, entropy: false }
    }
}

/// Result of [`sequence_logprobs`]; `[B, T]` tensors are aligned with the input positions.
#[derive(Debug)]
pub struct SequenceLogprobs {
    /// `log p(x_t | x_<t)` (f32) on response tokens, 0 elsewhere.
    pub token_logprobs: Tensor,
    /// Entropy (nats, f32) of the distribution that predicted `x_t`, on response tokens, 0 elsewhere.
    pub entropy: Option<Tensor>,
    /// Per-row sum of response log-probs `[B]`.
    pub sum: Tensor,
    /// Per-row number of response tokens `[B]` (f32).
    pub count: Tensor,
}

impl SequenceLogprobs {
    /// The response log-probs of each row as a vector (for the rollouts table).
    pub fn per_row(&self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        rows_of(&self.token_logprobs, batch)
    }
}

/// Extracts each row's response positions of a `[B, T]` tensor.
pub fn rows_of(values: &Tensor, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
    let v = values.detach().to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
    let t = v.size()[1] as usize;
    let flat: Vec<f32> = Vec::<f32>::try_from(v.view([-1]))?;
    let mask: Vec<f32> = Vec::<f32>::try_from(batch.response_mask.to_device(Device::Cpu).view([-1]))?;
    Ok((0..batch.prompt_lens.len())
        .map(|i| (0..t).filter(|&j| mask[i * t + j] > 0.0).map(|j| flat[i * t + j]).collect())
        .collect())
}

/// `log softmax(logits)[target]` for `logits [.., V]` and `targets [..]` (f32), computed as
/// `gathered - logsumexp` without materializing the log-softmax.
pub fn gather_logprobs(logits: &Tensor, targets: &Tensor) -> Tensor {
    let logits = logits.to_kind(Kind::Float);
    let lse = logits.logsumexp([-1], false);
    logits.gather(-1, &targets.unsqueeze(-1), false).squeeze_dim(-1) - lse
}

/// Entropy of `softmax(logits)` over the last dim (f32).
pub fn entropy_from_logits(logits: &Tensor) -> Tensor {
    let logits = logits.to_kind(Kind::Float);
    let lse = logits.logsumexp([-1], true);
    let p = (&logits - &lse).exp();
    lse.squeeze_dim(-1) - (p * logits).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)
}

/// Logit elements materialized at once when scoring without autograd (2^27 f32 = 512 MiB).
const LOGITS_BUDGET: i64 = 1 << 27;

/// Runs the model on `batch` and scores the response tokens (see the module doc).
pub fn sequence_logprobs(model: &CausalLm, batch: &TokenBatch, opts: LogprobOptions) -> Result<SequenceLogprobs> {
    // With right padding every real token precedes its row's padding, so causal attention alone
    // never lets it see a pad (the pads' own outputs are masked out below): no key mask keeps
    // attention on its fused causal kernel.
    let key_mask = match batch.side {
        PaddingSide::Right => None,
        PaddingSide::Left => Some(&batch.attention_mask),
    };
    let hidden = model.hidden_states(&batch.input_ids, key_mask, Some(&batch.position_ids), None)?;
    logprobs_from_hidden(model, &hidden, batch, opts)
}

/// Like [`sequence_logprobs`] from precomputed final hidden states `[B, T, H]` (share one trunk
/// pass between log-probs and a value head).
pub fn logprobs_from_hidden(
    model: &CausalLm,
    hidden: &Tensor,
    batch: &TokenBatch,
    opts: LogprobOptions,
) -> Result<SequenceLogprobs> {
    logprobs_chunked(model, hidden, batch, opts, LOGITS_BUDGET)
}

fn logprobs_chunked(
    model: &CausalLm,
    hidden: &Tensor,
    batch: &TokenBatch,
    opts: LogprobOptions,
    budget: i64,
) -> Result<SequenceLogprobs> {
    if opts.temperature <= 0.0 {
        return Err(Error::invalid(format!("temperature must be > 0, got {}", opts.temperature)));
    }
    let (b, t) = (batch.input_ids.size()[0], batch.input_ids.size()[1]);
    let device = hidden.device();
    // Rows are scored from column `s` on; the logits predicting column j sit at j - 1.
    let s = batch.first_response_col.clamp(1, t);
    let n = t - s;
    let zeros = |k: i64| Tensor::zeros([b, k], (Kind::Float, device));
    let mask = batch.response_mask.to_device(device);
    let (lp, ent) = if n == 0 {
        (zeros(t), opts.entropy.then(|| zeros(t)))
    } else {
        let targets = batch.input_ids.to_device(device).narrow(1, s, n);
        let m = mask.narrow(1, s, n);
        // Without autograd (reference scoring, eval) the logits are built a few rows at a time, so
        // the peak is one chunk of `[rows, n, V]` instead of the whole batch.
        let vocab = model.config().vocab_size().max(1);
        let rows = if hidden.requires_grad() { b } else { (budget / (n * vocab)).clamp(1, b) };
        let (mut lps, mut ents) = (Vec::new(), Vec::new());
        for r0 in (0..b).step_by(rows as usize) {
            let r = rows.min(b - r0);
            let logits = model.logits_from_hidden(&hidden.narrow(0, r0, r).narrow(1, s - 1, n));
            let logits = if opts.temperature != 1.0 { logits.to_kind(Kind::Float) / opts.temperature } else { logits };
            let mr = m.narrow(0, r0, r);
            lps.push(gather_logprobs(&logits, &targets.narrow(0, r0, r)) * &mr);
            if opts.entropy {
                ents.push(entropy_from_logits(&logits) * &mr);
            }
        }
        let lp = Tensor::cat(&[zeros(s), Tensor::cat(&lps, 0)], 1);
        let ent = opts.entropy.then(|| Tensor::cat(&[zeros(s), Tensor::cat(&ents, 0)], 1));
        (lp, ent)
    };
    Ok(SequenceLogprobs {
        sum: lp.sum_dim_intlist([1i64].as_slice(), false, Kind::Float),
        count: mask.sum_dim_intlist([1i64].as_slice(), false, Kind::Float),
        token_logprobs: lp,
        entropy: ent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LlamaConfig, ModelConfig};

    #[test]
    fn chunked_scoring_without_grad_equals_one_pass() {
        tch::manual_seed(3);
        let m =
            CausalLm::new(ModelConfig::llama(LlamaConfig::new(64, 16, 32, 1, 2, 1)), Device::Cpu, Kind::Float).unwrap();
        let pairs = vec![(vec![5i64, 6], vec![7i64, 8, 9]), (vec![10, 11, 12], vec![13]), (vec![14], vec![15, 16])];
        let batch = build_batch(&pairs, Some(2), 0, PaddingSide::Right, Device::Cpu).unwrap();
        let opts = LogprobOptions { temperature: 0.9, entropy: true };
        let hidden = m.hidden_states(&batch.input_ids, Some(&batch.attention_mask), None, None).unwrap();
        let full = logprobs_chunked(&m, &hidden, &batch, opts, i64::MAX).unwrap();
        let chunked = tch::no_grad(|| logprobs_chunked(&m, &hidden.detach(), &batch, opts, 1)).unwrap();
        assert!((&full.token_logprobs - &chunked.token_logprobs).abs().max().double_value(&[]) < 1e-6);
        let (e1, e2) = (full.entropy.unwrap(), chunked.entropy.unwrap());
        assert!((e1 - e2).abs().max().double_value(&[]) < 1e-6);
        assert_eq!(Vec::<f32>::try_from(&chunked.count).unwrap(), vec![4.0, 2.0, 3.0]);
    }
}
