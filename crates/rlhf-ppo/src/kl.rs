//! The KL penalty: per-token estimators of `KL(π ‖ π_ref)` from sampled tokens' log-probs
//! (Schulman's k1 and k3), and the coefficient β, fixed or adapted towards a target KL by the
//! proportional controller of Ziegler et al. (2019).

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// How one sampled token's log-probs estimate the KL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `log π − log π_ref`: unbiased, can be negative per token.
    #[default]
    K1,
    /// `(ρ − 1) − log ρ` with `ρ = π_ref / π`: unbiased, never negative, lower variance.
    K3,
}

impl KlEstimator {
    /// Per-token estimates from policy and reference log-probs (same shape).
    pub fn per_token(self, logprobs: &Tensor, ref_logprobs: &Tensor) -> Tensor {
        match self {
            KlEstimator::K1 => logprobs - ref_logprobs,
            KlEstimator::K3 => {
                let log_ratio = ref_logprobs - logprobs;
                log_ratio.exp() - 1.0 - log_ratio
            }
        }
    }
}

/// β and how it moves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KlController {
    /// The current coefficient.
    pub beta: f64,
    /// `Some(target)`: adaptive; `None`: fixed.
    pub target: Option<f64>,
    /// Samples over which a full proportional correction is applied.
    pub horizon: f64,
}

impl KlController {
    /// `β ← β·(1 + clip(KL/target − 1, −0.2, 0.2)·n_samples/horizon)`; a fixed β stays.
    pub fn update(&mut self, kl: f64, n_samples: usize) {
        if let Some(target) = self.target {
            let error = (kl / target - 1.0).clamp(-0.2, 0.2);
            self.beta *= 1.0 + error * n_samples as f64 / self.horizon;
        }
    }
}
