//! The PPO losses on `[B, N]` response-aligned tensors (see [`crate::advantage`]): the clipped
//! policy-ratio loss and the clipped value loss (Schulman et al. 2017; TRL/OpenRLHF conventions).

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

/// PPO's clipped policy loss from new and rollout log-probs.
pub fn policy_loss(
    logprobs: &Tensor,
    old_logprobs: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    clip: f64,
) -> PolicyLoss {
    let log_ratio = logprobs - old_logprobs;
    let ratio = log_ratio.exp();
    let unclipped = -advantages * &ratio;
    let clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip);
    let loss = masked_mean(&unclipped.maximum(&clipped), mask);
    let clip_fraction = masked_mean(&clipped.gt_tensor(&unclipped).to_kind(Kind::Float), mask).detach();
    let approx_kl = (masked_mean(&log_ratio.square(), mask) * 0.5).detach();
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
