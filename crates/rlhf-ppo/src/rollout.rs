//! Rollouts: sampling responses with the KV cache, the padded layout every later pass shares, and
//! the forward passes that score it (policy log-probs and entropy, reference log-probs, values).
//!
//! A batch is `[pad… prompt | response …pad]`: prompts left-padded to width `P`, responses
//! right-padded to width `N`, so column `P + t` holds every row's `t`-th generated token and all
//! per-token quantities are `[B, N]` tensors aligned with the response. The log-prob of token
//! `P + t` and the value of the state before it both come from the hidden state at `P + t − 1`.

use rlhf_model::logprobs::logprobs_from_hidden;
use rlhf_model::{
    generate_from_tokens, position_ids_from_mask, CausalLm, GenerationConfig, LogprobOptions, PaddingSide,
    SequenceClassifier, TokenBatch, ValueHead,
};
use tch::{Device, Kind, Tensor};

use crate::Result;

/// One sampled response to one prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Index into the run's prompts.
    pub prompt: usize,
    pub prompt_tokens: Vec<i64>,
    /// Generated tokens, eos included when one was sampled.
    pub response_tokens: Vec<i64>,
    pub has_eos: bool,
}

/// Samples one response per prompt-token row, `batch_size` rows per generation call, with
/// `config.seed` advanced per call.
pub fn sample(
    policy: &CausalLm,
    prompts: &[(usize, &[i64])],
    config: &GenerationConfig,
    batch_size: usize,
) -> Result<Vec<Sample>> {
    let mut samples = Vec::with_capacity(prompts.len());
    for (chunk_index, chunk) in prompts.chunks(batch_size.max(1)).enumerate() {
        let rows: Vec<Vec<i64>> = chunk.iter().map(|(_, tokens)| tokens.to_vec()).collect();
        let cfg = GenerationConfig { seed: config.seed.wrapping_add(chunk_index as u64), ..config.clone() };
        let generation = generate_from_tokens(policy, &rows, &cfg)?;
        for ((prompt, prompt_tokens), response) in chunk.iter().zip(generation.rows()?) {
            let has_eos = response.last().is_some_and(|t| config.eos_token_ids.contains(t));
            samples.push(Sample {
                prompt: *prompt,
                prompt_tokens: prompt_tokens.to_vec(),
                response_tokens: response,
                has_eos,
            });
        }
    }
    Ok(samples)
}

/// Rows in the shared layout (see the module doc).
#[derive(Debug)]
pub struct Layout {
    /// `[B, P + N]` int64.
    pub input_ids: Tensor,
    /// `[B, P + N]` int64, 1 on prompt and response tokens.
    pub attention_mask: Tensor,
    /// `[B, N]` f32, 1 on response tokens.
    pub response_mask: Tensor,
    pub prompt_lens: Vec<i64>,
    pub response_lens: Vec<i64>,
}

impl Layout {
    /// Lays out samples on `device` (padding with `pad`).
    pub fn new(samples: &[Sample], pad: i64, device: Device) -> Layout {
        let p = samples.iter().map(|s| s.prompt_tokens.len()).max().unwrap_or(1);
        let n = samples.iter().map(|s| s.response_tokens.len()).max().unwrap_or(1).max(1);
        let (b, w) = (samples.len(), p + n);
        let mut ids = vec![pad; b * w];
        let mut mask = vec![0i64; b * w];
        let mut response = vec![0f32; b * n];
        for (i, s) in samples.iter().enumerate() {
            let start = i * w + p - s.prompt_tokens.len();
            ids[start..i * w + p].copy_from_slice(&s.prompt_tokens);
            ids[i * w + p..i * w + p + s.response_tokens.len()].copy_from_slice(&s.response_tokens);
            mask[start..i * w + p + s.response_tokens.len()].fill(1);
            response[i * n..i * n + s.response_tokens.len()].fill(1.0);
        }
        let shape = [b as i64, w as i64];
        Layout {
            input_ids: Tensor::from_slice(&ids).view(shape).to_device(device),
            attention_mask: Tensor::from_slice(&mask).view(shape).to_device(device),
            response_mask: Tensor::from_slice(&response).view([b as i64, n as i64]).to_device(device),
            prompt_lens: samples.iter().map(|s| s.prompt_tokens.len() as i64).collect(),
            response_lens: samples.iter().map(|s| s.response_tokens.len() as i64).collect(),
        }
    }

    /// Prompt width `P`.
    pub fn prompt_width(&self) -> i64 {
        self.input_ids.size()[1] - self.response_width()
    }
    /// Response width `N`.
    pub fn response_width(&self) -> i64 {
        self.response_mask.size()[1]
    }

    /// The rows `rows`, trimmed to their own widest prompt and response, with the column range
    /// `[0, N')` to cut the iteration's `[B, N]` tensors to.
    pub fn select(&self, rows: &[usize]) -> Layout {
        let index =
            Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>()).to_device(self.input_ids.device());
        let prompt_lens: Vec<i64> = rows.iter().map(|&r| self.prompt_lens[r]).collect();
        let response_lens: Vec<i64> = rows.iter().map(|&r| self.response_lens[r]).collect();
        let p = prompt_lens.iter().copied().max().unwrap_or(1);
        let n = response_lens.iter().copied().max().unwrap_or(1).max(1);
        let start = self.prompt_width() - p;
        Layout {
            input_ids: self.input_ids.index_select(0, &index).narrow(1, start, p + n),
            attention_mask: self.attention_mask.index_select(0, &index).narrow(1, start, p + n),
            response_mask: self.response_mask.index_select(0, &index).narrow(1, 0, n),
            prompt_lens,
            response_lens,
        }
    }

    /// `[B, N]` rows `rows` of an iteration-wide per-token tensor, cut to this layout's width.
    pub fn cut(&self, per_token: &Tensor, rows: &[usize]) -> Tensor {
        let index =
            Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>()).to_device(per_token.device());
        per_token.index_select(0, &index).narrow(1, 0, self.response_width())
    }

    /// The layout as a [`TokenBatch`] for `rlhf_model`'s log-prob kernel.
    fn token_batch(&self) -> TokenBatch {
        let b = self.input_ids.size()[0];
        let p = self.prompt_width();
        let prompt_zeros = Tensor::zeros([b, p], (Kind::Float, self.response_mask.device()));
        TokenBatch {
            input_ids: self.input_ids.shallow_clone(),
            attention_mask: self.attention_mask.shallow_clone(),
            position_ids: position_ids_from_mask(&self.attention_mask),
            response_mask: Tensor::cat(&[prompt_zeros, self.response_mask.shallow_clone()], 1),
            prompt_lens: self.prompt_lens.clone(),
            response_lens: self.response_lens.clone(),
            first_response_col: p,
            side: PaddingSide::Left,
        }
    }

    /// `[B, P + N]` per-position values → `[B, N]` values of the states before each response token.
    fn values_before_tokens(&self, per_position: &Tensor) -> Tensor {
        per_position.narrow(1, self.prompt_width() - 1, self.response_width()).to_kind(Kind::Float)
            * &self.response_mask
    }
}

/// The critic of GAE, or none for the group baselines.
pub enum Critic {
    None,
    /// A transformer with a per-token scalar head (initialised from a reward model).
    Separate(Box<SequenceClassifier>),
    /// A value head on the policy's final hidden states.
    Shared(ValueHead),
}

/// What one policy forward pass gives on a layout (`[B, N]` each).
pub struct PolicyPass {
    pub logprobs: Tensor,
    pub entropy: Option<Tensor>,
    /// Values when the critic is a head on the policy.
    pub values: Option<Tensor>,
}

/// Policy log-probs (at `temperature`), optionally entropy, and the shared critic's values.
pub fn policy_pass(
    policy: &CausalLm,
    critic: &Critic,
    layout: &Layout,
    temperature: f64,
    entropy: bool,
) -> Result<PolicyPass> {
    let batch = layout.token_batch();
    let hidden =
        policy.hidden_states(&batch.input_ids, Some(&batch.attention_mask), Some(&batch.position_ids), None)?;
    let scored = logprobs_from_hidden(policy, &hidden, &batch, LogprobOptions { temperature, entropy })?;
    let (p, n) = (layout.prompt_width(), layout.response_width());
    let values = match critic {
        Critic::Shared(head) => Some(layout.values_before_tokens(&head.forward(&hidden))),
        _ => None,
    };
    Ok(PolicyPass {
        logprobs: scored.token_logprobs.narrow(1, p, n),
        entropy: scored.entropy.map(|e| e.narrow(1, p, n)),
        values,
    })
}

/// The separate critic's values `[B, N]`.
pub fn critic_values(critic: &SequenceClassifier, layout: &Layout) -> Result<Tensor> {
    let scores = critic.token_scores(&layout.input_ids, Some(&layout.attention_mask))?;
    Ok(layout.values_before_tokens(&scores))
}
