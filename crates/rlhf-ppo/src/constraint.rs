//! Constrained RLHF (Safe RLHF, Dai et al. 2023): maximise the reward subject to an expected cost
//! at most a threshold, `max E[R]  s.t.  E[C] ≤ d`, through the Lagrangian
//! `min_{λ≥0} max_π E[R] − λ·(E[C] − d)`.
//!
//! The cost is a harmlessness reward model's score negated, `C = −r_harmless` (so a model trained on
//! "which is more harmless" comparisons serves as the cost model). Each iteration first updates the
//! multiplier by projected gradient ascent on the iteration's mean cost,
//! `λ ← clip(λ + η·(mean C − d), 0, λ_max)` (PPO-Lagrangian, Ray et al. 2019), then scores every
//! rollout `(R − λ·C) / (1 + λ)`: Safe RLHF's combination, whose division keeps the score's scale as λ
//! grows. One critic learns the combined score (Safe RLHF keeps a reward and a cost critic apart).

use serde::{Deserialize, Serialize};

/// `[constraint]`: off while `cost_model` is "".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConstraintSection {
    /// A reward-model directory whose score is harmlessness (higher = safer); the cost is its
    /// score negated. "" = no constraint.
    pub cost_model: std::path::PathBuf,
    /// `d` of `E[C] ≤ d`, on the cost model's (normalised) scale.
    pub threshold: f64,
    /// λ at the start of a run.
    pub lambda_init: f64,
    /// η, the step of the multiplier's update per iteration.
    pub lambda_lr: f64,
    /// The largest λ (the update is clipped to `[0, lambda_max]`).
    pub lambda_max: f64,
}

impl Default for ConstraintSection {
    fn default() -> Self {
        ConstraintSection {
            cost_model: std::path::PathBuf::new(),
            threshold: 0.0,
            lambda_init: 1.0,
            lambda_lr: 0.1,
            lambda_max: 20.0,
        }
    }
}

impl ConstraintSection {
    /// Whether a constraint is set.
    pub fn enabled(&self) -> bool {
        !self.cost_model.as_os_str().is_empty()
    }

    /// The multiplier at the start of a run.
    pub fn multiplier(&self) -> Lagrangian {
        Lagrangian { lambda: self.lambda_init }
    }
}

/// The Lagrange multiplier λ, saved in checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lagrangian {
    pub lambda: f64,
}

/// One iteration of the constraint: what the multiplier did and the scores it made.
#[derive(Clone, Debug, PartialEq)]
pub struct Constrained {
    /// `(R − λ·C) / (1 + λ)` per rollout, with the updated λ.
    pub scores: Vec<f32>,
    /// The mean cost, λ after the update, and the share of rollouts with `C ≤ d`.
    pub mean_cost: f64,
    pub lambda: f64,
    pub satisfied: f64,
}

impl Lagrangian {
    /// `λ ← clip(λ + η·(mean_cost − d), 0, λ_max)`; a non-finite mean cost leaves λ as it is (the
    /// numerical guard skips that batch).
    pub fn update(&mut self, mean_cost: f64, config: &ConstraintSection) {
        if mean_cost.is_finite() {
            self.lambda =
                (self.lambda + config.lambda_lr * (mean_cost - config.threshold)).clamp(0.0, config.lambda_max);
        }
    }

    /// Updates λ on `costs`, then combines each reward with its cost.
    pub fn apply(&mut self, rewards: &[f32], costs: &[f32], config: &ConstraintSection) -> Constrained {
        let n = costs.len().max(1) as f64;
        let mean_cost = costs.iter().map(|&c| c as f64).sum::<f64>() / n;
        self.update(mean_cost, config);
        let lambda = self.lambda;
        let scores = rewards.iter().zip(costs).map(|(&r, &c)| penalised(r as f64, c as f64, lambda) as f32).collect();
        let satisfied = costs.iter().filter(|&&c| c as f64 <= config.threshold).count() as f64 / n;
        Constrained { scores, mean_cost, lambda, satisfied }
    }
}

/// Safe RLHF's score of a rollout with reward `r` and cost `c` under multiplier `λ`:
/// `(r − λ·c) / (1 + λ)`.
pub fn penalised(reward: f64, cost: f64, lambda: f64) -> f64 {
    (reward - lambda * cost) / (1.0 + lambda)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(threshold: f64) -> ConstraintSection {
        ConstraintSection {
            cost_model: "harmless/rm/final".into(),
            threshold,
            lambda_init: 0.5,
            lambda_lr: 0.2,
            lambda_max: 2.0,
        }
    }

    #[test]
    fn the_multiplier_rises_above_the_threshold_falls_below_and_stays_in_bounds() {
        let config = section(-0.5);
        let mut m = config.multiplier();
        m.update(1.0, &config); // 0.5 + 0.2·(1 − (−0.5)) = 0.8
        assert!((m.lambda - 0.8).abs() < 1e-12, "{m:?}");
        m.update(-1.5, &config); // 0.8 + 0.2·(−1.5 + 0.5) = 0.6
        assert!((m.lambda - 0.6).abs() < 1e-12, "{m:?}");
        m.update(-20.0, &config); // far below: clipped at 0
        assert_eq!(m.lambda, 0.0);
        m.update(100.0, &config); // far above: clipped at λ_max
        assert_eq!(m.lambda, 2.0);
        m.update(f64::NAN, &config);
        assert_eq!(m.lambda, 2.0, "a NaN cost leaves λ alone");
    }

    #[test]
    fn scores_combine_reward_and_cost_with_the_updated_multiplier() {
        let config = section(0.0);
        let mut m = config.multiplier();
        // mean cost (1 + (−1) + 3) / 3 = 1 → λ = 0.5 + 0.2·1 = 0.7.
        let out = m.apply(&[2.0, 1.0, 0.5], &[1.0, -1.0, 3.0], &config);
        assert!((out.lambda - 0.7).abs() < 1e-12);
        assert!((out.mean_cost - 1.0).abs() < 1e-12);
        let expected = [(2.0 - 0.7) / 1.7, (1.0 + 0.7) / 1.7, (0.5 - 2.1) / 1.7];
        for (got, want) in out.scores.iter().zip(expected) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert!((out.satisfied - 1.0 / 3.0).abs() < 1e-12, "only the cost −1 is ≤ 0");
        assert_eq!(penalised(1.0, 1.0, 0.0), 1.0, "λ = 0 is the reward alone");
    }
}
