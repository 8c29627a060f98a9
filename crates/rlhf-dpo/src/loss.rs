//! The preference losses, on summed response log-probs of chosen (`c`) and rejected (`r`) responses.
//!
//! With `h = (log π(c) − log π(r)) − (log π_ref(c) − log π_ref(r))`:
//!
//! | `kind` | per-pair loss | paper |
//! |---|---|---|
//! | `sigmoid` | `−(1−ε)·log σ(βh) − ε·log σ(−βh)` (ε = `label_smoothing`; ε > 0 is conservative DPO) | Rafailov et al. 2023; Mitchell 2023 |
//! | `ipo` | `(h − 1/(2β))²` | Azar et al. 2023, eq. 17 |
//! | `hinge` | `max(0, 1 − βh)` | Zhao et al. 2023 (SLiC), as in TRL |
//! | `simpo` | `−(1−ε)·log σ(z) − ε·log σ(−z)`, `z = β·(log π(c)/|c| − log π(r)/|r|) − γ` (no reference) | Meng et al. 2024 |
//! | `orpo` | `−β·log σ(log odds(c) − log odds(r))`, `log odds(y) = a − log(1 − eᵃ)`, `a = log π(y)/|y|`, plus the NLL of `c` (no reference) | Hong et al. 2024, eqs. 4–7, as in TRL |
//! | `kto` | desirable `y`: `λ_D·(1 − σ(β(r − z)))`, undesirable: `λ_U·(1 − σ(β(z − r)))`, `r = log π(y) − log π_ref(y)` | Ethayarajh et al. 2024, eq. 7, as in TRL |
//!
//! KTO trains on unpaired labels: a row's `chosen` is the labelled completion `y` and its `rejected`
//! a mismatched completion `y'` (another prompt's), whose log-ratios estimate the reference point
//! `z = max(0, mean_batch(log π(y') − log π_ref(y')))`, detached, as TRL's `KTOTrainer` does.
//!
//! Implicit rewards (the `rewards/*` metrics) are `β·(log π − log π_ref)` per response, or
//! `β·log π/|y|` for SimPO and ORPO; for KTO `β·r` of the labelled completion (chosen) against `β·z`
//! (rejected). ORPO's objective always adds the mean negative log-likelihood per chosen token (its
//! SFT term, weight 1; β is its λ). With `rpo_alpha = α > 0` the objective adds `α` times the mean
//! negative log-likelihood per chosen token (RPO, Pang et al. 2024). IPO is applied to summed log-probs, as in
//! the paper (TRL averages them per token for IPO). The arithmetic runs in f64.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::{Error, Result};

/// Which preference loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// DPO (with `label_smoothing > 0`: conservative DPO).
    #[default]
    Sigmoid,
    Ipo,
    Hinge,
    /// Reference-free, length-normalised.
    Simpo,
    /// Reference-free odds ratio plus the SFT loss on chosen responses.
    Orpo,
    /// Kahneman–Tversky optimisation, on unpaired desirable / undesirable labels.
    Kto,
}

/// The loss and its coefficients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    pub kind: LossKind,
    /// Strength of the implicit KL constraint (SimPO: reward scale, ~2 in its paper).
    pub beta: f64,
    /// cDPO's ε: the probability that a label is flipped (`sigmoid` and `simpo` only).
    pub label_smoothing: f64,
    /// SimPO's target reward margin γ (only `simpo` uses it).
    pub simpo_gamma: f64,
    /// Weight α of the NLL term on chosen responses (RPO); 0 = off. (ORPO has its own, weight 1.)
    pub rpo_alpha: f64,
    /// KTO's λ_D, the weight of desirable examples' losses.
    pub desirable_weight: f64,
    /// KTO's λ_U, the weight of undesirable examples' losses.
    pub undesirable_weight: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            kind: LossKind::Sigmoid,
            beta: 0.1,
            label_smoothing: 0.0,
            simpo_gamma: 0.5,
            rpo_alpha: 0.0,
            desirable_weight: 1.0,
            undesirable_weight: 1.0,
        }
    }
}

/// Summed response log-probs of the policy, `[B]` each, and the response token counts. For KTO
/// (see the module doc) `chosen` is the labelled completion, `rejected` the mismatched one.
#[derive(Debug)]
pub struct PolicyLogps {
    pub chosen: Tensor,
    pub rejected: Tensor,
    pub chosen_tokens: Tensor,
    pub rejected_tokens: Tensor,
    /// KTO: 1.0 where the labelled completion is desirable, 0.0 where not (f64, `[B]`).
    pub labels: Option<Tensor>,
}

/// Summed response log-probs of the reference model, `[B]` each.
#[derive(Debug)]
pub struct ReferenceLogps {
    pub chosen: Tensor,
    pub rejected: Tensor,
}

/// Per-pair results of a batch (f64, `[B]`).
#[derive(Debug)]
pub struct PairTerms {
    /// The preference loss of each pair (carries the graph).
    pub losses: Tensor,
    /// Implicit rewards (detached).
    pub chosen_rewards: Tensor,
    pub rejected_rewards: Tensor,
    /// KTO's reference point `z` (detached, a scalar).
    pub kl: Option<Tensor>,
}

fn f64_of(t: &Tensor) -> Tensor {
    t.to_kind(Kind::Double)
}

/// `−(1−ε)·log σ(x) − ε·log σ(−x)`.
fn smoothed_logistic(x: &Tensor, smoothing: f64) -> Tensor {
    -x.log_sigmoid() * (1.0 - smoothing) - (-x).log_sigmoid() * smoothing
}

impl LossConfig {
    /// Whether the loss needs reference log-probs.
    pub fn needs_reference(&self) -> bool {
        !matches!(self.kind, LossKind::Simpo | LossKind::Orpo)
    }

    /// Whether the loss trains on unpaired labels (KTO) rather than pairs.
    pub fn unpaired(&self) -> bool {
        self.kind == LossKind::Kto
    }

    /// Weight of the mean NLL per chosen token in the objective: ORPO's 1, else RPO's α.
    pub fn nll_weight(&self) -> f64 {
        if self.kind == LossKind::Orpo {
            1.0
        } else {
            self.rpo_alpha
        }
    }

    /// Checks the coefficients.
    pub fn validate(&self) -> Result<()> {
        if self.beta.is_nan() || self.beta <= 0.0 {
            return Err(Error::Invalid(format!("loss.beta must be > 0, got {}", self.beta)));
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return Err(Error::Invalid(format!(
                "loss.label_smoothing must be in [0, 0.5), got {}",
                self.label_smoothing
            )));
        }
        if self.label_smoothing > 0.0 && !matches!(self.kind, LossKind::Sigmoid | LossKind::Simpo) {
            return Err(Error::Invalid(format!(
                "loss.label_smoothing applies to the sigmoid and simpo losses, not {:?}",
                self.kind
            )));
        }
        if self.rpo_alpha < 0.0 || self.simpo_gamma < 0.0 {
            return Err(Error::Invalid("loss.rpo_alpha and loss.simpo_gamma must be >= 0".into()));
        }
        if self.rpo_alpha > 0.0 && matches!(self.kind, LossKind::Orpo | LossKind::Kto) {
            return Err(Error::Invalid(format!("loss.rpo_alpha does not apply to {:?}", self.kind)));
        }
        let weights = [self.desirable_weight, self.undesirable_weight];
        if weights.iter().any(|w| w.is_nan() || *w <= 0.0) {
            return Err(Error::Invalid(format!(
                "loss.desirable_weight and loss.undesirable_weight must be > 0, got {weights:?}"
            )));
        }
        Ok(())
    }

    /// Per-pair losses and implicit rewards. `reference` is required unless the loss is SimPO or
    /// ORPO.
    pub fn pair_terms(&self, policy: &PolicyLogps, reference: Option<&ReferenceLogps>) -> Result<PairTerms> {
        let beta = self.beta;
        let (chosen, rejected) = (f64_of(&policy.chosen), f64_of(&policy.rejected));
        if !self.needs_reference() {
            let chosen_avg = &chosen / f64_of(&policy.chosen_tokens);
            let rejected_avg = &rejected / f64_of(&policy.rejected_tokens);
            let losses = if self.kind == LossKind::Simpo {
                let z = (&chosen_avg - &rejected_avg) * beta - self.simpo_gamma;
                smoothed_logistic(&z, self.label_smoothing)
            } else {
                // log(1 − eᵃ) as log(−expm1(a)), exact for the mean log-prob a < 0.
                let log_one_minus = |a: &Tensor| (-a.expm1()).log();
                let log_odds =
                    (&chosen_avg - &rejected_avg) - (log_one_minus(&chosen_avg) - log_one_minus(&rejected_avg));
                -log_odds.log_sigmoid() * beta
            };
            return Ok(PairTerms {
                losses,
                chosen_rewards: chosen_avg.detach() * beta,
                rejected_rewards: rejected_avg.detach() * beta,
                kl: None,
            });
        }
        let reference =
            reference.ok_or_else(|| Error::Invalid(format!("the {:?} loss needs reference log-probs", self.kind)))?;
        let device = chosen.device();
        let chosen_ratio = &chosen - f64_of(&reference.chosen).to_device(device);
        let rejected_ratio = &rejected - f64_of(&reference.rejected).to_device(device);
        if self.kind == LossKind::Kto {
            return self.kto_terms(policy, &chosen_ratio, &rejected_ratio);
        }
        let h = &chosen_ratio - &rejected_ratio;
        let losses = match self.kind {
            LossKind::Sigmoid => smoothed_logistic(&(&h * beta), self.label_smoothing),
            LossKind::Ipo => (&h - 1.0 / (2.0 * beta)).square(),
            LossKind::Hinge => (&h * -beta + 1.0).relu(),
            LossKind::Simpo | LossKind::Orpo | LossKind::Kto => unreachable!("handled above"),
        };
        Ok(PairTerms {
            losses,
            chosen_rewards: chosen_ratio.detach() * beta,
            rejected_rewards: rejected_ratio.detach() * beta,
            kl: None,
        })
    }

    /// KTO's losses from the labelled completions' log-ratios `r` and the mismatched ones' `r'`.
    fn kto_terms(&self, policy: &PolicyLogps, r: &Tensor, mismatched: &Tensor) -> Result<PairTerms> {
        let labels = policy.labels.as_ref().ok_or_else(|| Error::Invalid("the kto loss needs labelled rows".into()))?;
        let desirable = f64_of(labels).to_device(r.device());
        let beta = self.beta;
        let z = mismatched.detach().mean(Kind::Double).clamp_min(0.0);
        let gain = |x: Tensor| -(x * beta).sigmoid() + 1.0;
        let losses = &desirable * gain(r - &z) * self.desirable_weight
            + (-&desirable + 1.0) * gain(&z - r) * self.undesirable_weight;
        let chosen_rewards = r.detach() * beta;
        let rejected_rewards = chosen_rewards.full_like(1.0) * (&z * beta);
        Ok(PairTerms { losses, chosen_rewards, rejected_rewards, kl: Some(z) })
    }

    /// This batch's share of an optimizer step's objective: `Σ losses / step_pairs` plus, with RPO,
    /// `α · Σ −log π(c) / step_chosen_tokens` (α = 1 for ORPO; the step's totals, so micro-batches
    /// add up to the step's mean).
    pub fn objective(
        &self,
        terms: &PairTerms,
        policy: &PolicyLogps,
        step_pairs: f64,
        step_chosen_tokens: f64,
    ) -> Tensor {
        let preference = terms.losses.sum(Kind::Double) / step_pairs;
        let nll_weight = self.nll_weight();
        if nll_weight > 0.0 {
            let nll = -f64_of(&policy.chosen).sum(Kind::Double) / step_chosen_tokens.max(1.0);
            preference + nll * nll_weight
        } else {
            preference
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(values: &[f64]) -> Tensor {
        Tensor::from_slice(values)
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap()
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    fn log_sigmoid(x: f64) -> f64 {
        -(1.0 + (-x).exp()).ln()
    }

    /// Policy: chosen −10 (5 tokens), rejected −12 (4 tokens); reference: chosen −11, rejected −11.
    /// So h = (−10 + 12) − (−11 + 11) = 2, chosen ratio 1, rejected ratio −1.
    fn batch() -> (PolicyLogps, ReferenceLogps) {
        let policy = PolicyLogps {
            chosen: t(&[-10.0, -3.0]),
            rejected: t(&[-12.0, -2.0]),
            chosen_tokens: t(&[5.0, 3.0]),
            rejected_tokens: t(&[4.0, 1.0]),
            labels: None,
        };
        let reference = ReferenceLogps { chosen: t(&[-11.0, -3.0]), rejected: t(&[-11.0, -3.0]) };
        (policy, reference)
    }

    fn losses(config: LossConfig) -> Vec<f64> {
        let (policy, reference) = batch();
        values(&config.pair_terms(&policy, Some(&reference)).unwrap().losses)
    }

    #[test]
    fn each_loss_matches_hand_computed_values() {
        // h = [2, -1].
        let beta = 0.5;
        let base = LossConfig { beta, ..LossConfig::default() };
        close(&losses(base.clone()), &[-log_sigmoid(1.0), -log_sigmoid(-0.5)]);
        let cdpo = LossConfig { label_smoothing: 0.2, ..base.clone() };
        close(
            &losses(cdpo),
            &[-0.8 * log_sigmoid(1.0) - 0.2 * log_sigmoid(-1.0), -0.8 * log_sigmoid(-0.5) - 0.2 * log_sigmoid(0.5)],
        );
        // 1/(2β) = 1.
        close(&losses(LossConfig { kind: LossKind::Ipo, ..base.clone() }), &[1.0, 4.0]);
        close(&losses(LossConfig { kind: LossKind::Hinge, ..base.clone() }), &[0.0, 1.5]);
        // Averages: chosen [-2, -1], rejected [-3, -2]; z = 0.5·1 − 0.25 = 0.25 for both.
        let simpo = LossConfig { kind: LossKind::Simpo, simpo_gamma: 0.25, ..base };
        let (policy, _) = batch();
        let terms = simpo.pair_terms(&policy, None).unwrap();
        close(&values(&terms.losses), &[-log_sigmoid(0.25), -log_sigmoid(0.25)]);
        close(&values(&terms.chosen_rewards), &[-1.0, -0.5]);
    }

    #[test]
    fn rewards_and_the_rpo_term() {
        let (policy, reference) = batch();
        let config = LossConfig { beta: 0.1, rpo_alpha: 2.0, ..LossConfig::default() };
        let terms = config.pair_terms(&policy, Some(&reference)).unwrap();
        close(&values(&terms.chosen_rewards), &[0.1, 0.0]);
        close(&values(&terms.rejected_rewards), &[-0.1, 0.1]);
        let objective = config.objective(&terms, &policy, 2.0, 8.0).double_value(&[]);
        let preference = (-log_sigmoid(0.2) - log_sigmoid(-0.1)) / 2.0;
        assert!((objective - (preference + 2.0 * 13.0 / 8.0)).abs() < 1e-12, "{objective}");
    }

    #[test]
    fn orpo_is_the_odds_ratio_plus_the_chosen_nll() {
        // Averages: chosen a = [-2, -1], rejected b = [-3, -2].
        let (policy, _) = batch();
        let config = LossConfig { kind: LossKind::Orpo, beta: 0.5, ..LossConfig::default() };
        assert!(!config.needs_reference());
        let terms = config.pair_terms(&policy, None).unwrap();
        let log_odds = |a: f64| a - (1.0 - a.exp()).ln();
        let expected: Vec<f64> =
            [(-2.0, -3.0), (-1.0, -2.0)].iter().map(|&(a, b)| -0.5 * log_sigmoid(log_odds(a) - log_odds(b))).collect();
        close(&values(&terms.losses), &expected);
        close(&values(&terms.chosen_rewards), &[-1.0, -0.5]);
        close(&values(&terms.rejected_rewards), &[-1.5, -1.0]);
        // The SFT term: −Σ log π(c) / chosen tokens = 13 / 8, weight 1.
        let objective = config.objective(&terms, &policy, 2.0, 8.0).double_value(&[]);
        assert!((objective - ((expected[0] + expected[1]) / 2.0 + 13.0 / 8.0)).abs() < 1e-12, "{objective}");
    }

    #[test]
    fn kto_weighs_each_label_against_the_mismatched_reference_point() {
        // The labelled completions (`chosen`) have log-ratios r = [1, 0]; the first is desirable.
        let (mut policy, reference) = batch();
        policy.labels = Some(t(&[1.0, 0.0]));
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let config = LossConfig {
            kind: LossKind::Kto,
            beta: 0.5,
            desirable_weight: 1.5,
            undesirable_weight: 0.5,
            ..LossConfig::default()
        };
        // Mismatched ratios: −12 + 11 = −1 and −2 + 3 = 1, mean 0, so z = 0.
        let terms = config.pair_terms(&policy, Some(&reference)).unwrap();
        close(&values(&terms.losses), &[1.5 * (1.0 - sigmoid(0.5)), 0.5 * (1.0 - sigmoid(0.0))]);
        assert_eq!(terms.kl.as_ref().unwrap().double_value(&[]), 0.0);
        close(&values(&terms.chosen_rewards), &[0.5, 0.0]);
        // A positive mean mismatched ratio moves z: reference rejected −13, −3 gives [1, 1], z = 1.
        let shifted = ReferenceLogps { chosen: reference.chosen.shallow_clone(), rejected: t(&[-13.0, -3.0]) };
        let terms = config.pair_terms(&policy, Some(&shifted)).unwrap();
        close(&values(&terms.losses), &[1.5 * (1.0 - sigmoid(0.0)), 0.5 * (1.0 - sigmoid(0.5))]);
        close(&values(&terms.rejected_rewards), &[0.5, 0.5]);
        // Without labels, KTO refuses the batch.
        policy.labels = None;
        assert!(config.pair_terms(&policy, Some(&reference)).is_err());
    }

    #[test]
    fn gradients_reach_the_policy_log_probs() {
        let (mut policy, reference) = batch();
        policy.chosen = policy.chosen.to_kind(Kind::Float).set_requires_grad(true);
        let config = LossConfig::default();
        let terms = config.pair_terms(&policy, Some(&reference)).unwrap();
        config.objective(&terms, &policy, 2.0, 8.0).backward();
        let grad = values(&policy.chosen.grad());
        // d/dx −log σ(β(x − c)) = −β·σ(−βh), averaged over 2 pairs.
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        assert!((grad[0] + 0.1 * sigmoid(-0.2) / 2.0).abs() < 1e-6, "{grad:?}");
    }

    #[test]
    fn bad_coefficients_are_refused() {
        let bad = [
            LossConfig { beta: 0.0, ..LossConfig::default() },
            LossConfig { label_smoothing: 0.5, ..LossConfig::default() },
            LossConfig { kind: LossKind::Ipo, label_smoothing: 0.1, ..LossConfig::default() },
            LossConfig { rpo_alpha: -1.0, ..LossConfig::default() },
            LossConfig { kind: LossKind::Orpo, rpo_alpha: 1.0, ..LossConfig::default() },
            LossConfig { kind: LossKind::Orpo, label_smoothing: 0.1, ..LossConfig::default() },
            LossConfig { kind: LossKind::Kto, label_smoothing: 0.1, ..LossConfig::default() },
            LossConfig { kind: LossKind::Kto, rpo_alpha: 1.0, ..LossConfig::default() },
            LossConfig { kind: LossKind::Kto, undesirable_weight: 0.0, ..LossConfig::default() },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
        let (policy, _) = batch();
        assert!(LossConfig::default().pair_terms(&policy, None).is_err());
    }
}
