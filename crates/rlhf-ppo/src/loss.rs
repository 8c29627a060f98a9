//! The PPO losses on `[B, N]` response-aligned tensors (see [`crate::advantage`]): the clipped
//! policy-ratio loss and the clipped value loss (Schulman et al. 2017; TRL/OpenRLHF conventions).
//! The ratio may be clipped asymmetrically, `[1 − ε_low, 1 + ε_high]` (DAPO's clip-higher, Yu et
//! al. 2025), and taken per sequence as the geometric mean of its tokens' ratios
//! ([`sequence_policy_loss`], GSPO, Zheng et al. 2025).

use crate::advantage::masked_mean;
use tch::{Kind, Tensor};

/// The clipped surrogate loss and what it tells about the update.
#[derive(Debug)]
pub struct PolicyLoss {
    /// `mean(max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε)))` over the mask (a graph for backward).
    pub loss: Tensor,
    /// Fraction of tokens where the clipped branch was taken.
    pub clip_fraction: Tensor,
    /// `½·mean((log π − log π_old)²)`: how far the policy moved from the rollout policy.
    pub approx_kl: Tensor,
}

/// The ratio's clip range `[1 − low, 1 + high]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clip {
    pub low: f64,
    pub high: f64,
}

impl Clip {
    /// `[1 − ε, 1 + ε]`.
    pub fn symmetric(eps: f64) -> Self {
        Clip { low: eps, high: eps }
    }
}

/// `max(−A·ρ, −A·clip(ρ))` elementwise, and where the clipped branch was taken (as 0/1 floats).
fn clipped_surrogate(ratio: &Tensor, advantages: &Tensor, clip: Clip) -> (Tensor, Tensor) {
    let unclipped = -advantages * ratio;
    let clipped = -advantages * ratio.clamp(1.0 - clip.low, 1.0 + clip.high);
    let taken = clipped.gt_tensor(&unclipped).to_kind(Kind::Float);
    (unclipped.maximum(&clipped), taken)
}

/// PPO's clipped policy loss from new and rollout log-probs, a mean over the masked tokens.
pub fn policy_loss(
    logprobs: &Tensor,
    old_logprobs: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    clip: Clip,
) -> PolicyLoss {
    let log_ratio = logprobs - old_logprobs;
    let (surrogate, taken) = clipped_surrogate(&log_ratio.exp(), advantages, clip);
    let loss = masked_mean(&surrogate, mask);
    let clip_fraction = masked_mean(&taken, mask).detach();
    let approx_kl = (masked_mean(&log_ratio.square(), mask) * 0.5).detach();
    PolicyLoss { loss, clip_fraction, approx_kl }
}

/// GSPO's policy loss: per row the sequence ratio `s = exp(mean_t(log π − log π_old))` over its
/// masked tokens, the clipped surrogate `max(−A·s, −A·clip(s))` with the row's advantage `A` (the
/// first token's: sequence advantages are constant over a row), and the mean over rows. Gradients
/// reach every token through `s` (the paper's sequence-level objective).
pub fn sequence_policy_loss(
    logprobs: &Tensor,
    old_logprobs: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    clip: Clip,
) -> PolicyLoss {
    let lengths = mask.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).clamp_min(1.0);
    let log_ratio = (logprobs - old_logprobs) * mask;
    let sequence_log_ratio = log_ratio.sum_dim_intlist([1i64].as_slice(), false, Kind::Float) / &lengths;
    let (surrogate, taken) = clipped_surrogate(&sequence_log_ratio.exp(), &advantages.select(1, 0), clip);
    let loss = surrogate.mean(Kind::Float);
    let clip_fraction = taken.mean(Kind::Float).detach();
    let approx_kl = (sequence_log_ratio.square().mean(Kind::Float) * 0.5).detach();
    PolicyLoss { loss, clip_fraction, approx_kl }
}

/// The clipped value loss and its clip fraction.
#[derive(Debug)]
pub struct ValueLoss {
    /// `½·mean(max((V − R)², (V_clipped − R)²))` with `V_clipped = V_old + clip(V − V_old, ±ε)`.
    pub loss: Tensor,
    /// Fraction of tokens where the clipped branch was larger.
    pub clip_fraction: Tensor,
}

/// PPO's clipped value loss from new values, rollout values and returns.
pub fn value_loss(values: &Tensor, old_values: &Tensor, returns: &Tensor, mask: &Tensor, clip: f64) -> ValueLoss {
    let clipped_values = old_values + (values - old_values).clamp(-clip, clip);
    let unclipped = (values - returns).square();
    let clipped = (clipped_values - returns).square();
    let loss = masked_mean(&unclipped.maximum(&clipped), mask) * 0.5;
    let clip_fraction = masked_mean(&clipped.gt_tensor(&unclipped).to_kind(Kind::Float), mask).detach();
    ValueLoss { loss, clip_fraction }
}
