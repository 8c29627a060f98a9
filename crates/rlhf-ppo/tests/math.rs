//! The objective's pieces against values computed by hand: GAE, masked whitening, the clipped
//! policy and value losses (DAPO's clip-higher and GSPO's sequence ratio too), the k1/k3 KL
//! estimators, the adaptive KL controller, the GRPO, Dr. GRPO and RLOO baselines and the reward
//! shaping.

use rlhf_ppo::advantage::{dr_grpo, explained_variance, gae, grpo, masked_mean, masked_whiten, per_token, rloo};
use rlhf_ppo::config::{MissingEos, RewardSection};
use rlhf_ppo::kl::{KlController, KlEstimator};
use rlhf_ppo::loss::{policy_loss, sequence_policy_loss, value_loss, Clip};
use rlhf_ppo::reward::{shape_scores, ResponseShape, RunningMoments};
use tch::Tensor;

fn t(rows: &[&[f64]]) -> Tensor {
    let n = rows[0].len() as i64;
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().map(|&x| x as f32)).collect();
    Tensor::from_slice(&flat).view([-1, n])
}

fn v(x: &Tensor) -> Vec<f64> {
    Vec::<f32>::try_from(x.flatten(0, -1)).unwrap().into_iter().map(f64::from).collect()
}

fn close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

fn scalar(x: &Tensor) -> f64 {
    x.double_value(&[])
}

#[test]
fn gae_matches_the_recursion_by_hand() {
    // Row 0: three tokens. Row 1: two tokens (the third is padding, whatever it holds).
    let rewards = t(&[&[0.0, 0.0, 1.0], &[0.0, 2.0, 5.0]]);
    let values = t(&[&[0.5, 0.4, 0.3], &[1.0, 1.0, 9.0]]);
    let mask = t(&[&[1.0, 1.0, 1.0], &[1.0, 1.0, 0.0]]);
    let (advantages, returns) = gae(&rewards, &values, &mask, 0.9, 0.8);
    // Row 0: δ2 = 1 − 0.3 = 0.7; δ1 = 0.9·0.3 − 0.4 = −0.13, A1 = −0.13 + 0.72·0.7 = 0.374;
    //        δ0 = 0.9·0.4 − 0.5 = −0.14, A0 = −0.14 + 0.72·0.374 = 0.12928.
    // Row 1: A1 = 2 − 1 = 1; δ0 = 0.9·1 − 1 = −0.1, A0 = −0.1 + 0.72 = 0.62.
    close(&v(&advantages), &[0.12928, 0.374, 0.7, 0.62, 1.0, 0.0]);
    close(&v(&returns), &[0.62928, 0.774, 1.0, 1.62, 2.0, 0.0]);
    // γ = λ = 1 without values: every token's advantage is the reward-to-go.
    let (advantages, _) = gae(&rewards, &Tensor::zeros_like(&values), &mask, 1.0, 1.0);
    close(&v(&advantages), &[1.0, 1.0, 1.0, 2.0, 2.0, 0.0]);
}

#[test]
fn whitening_uses_only_masked_elements() {
    let x = t(&[&[1.0, 2.0, 3.0, 100.0]]);
    let mask = t(&[&[1.0, 1.0, 1.0, 0.0]]);
    assert!((scalar(&masked_mean(&x, &mask)) - 2.0).abs() < 1e-6);
    // mean 2, unbiased variance (1 + 0 + 1) / 2 = 1.
    close(&v(&masked_whiten(&x, &mask, true)), &[-1.0, 0.0, 1.0, 0.0]);
    close(&v(&masked_whiten(&x, &mask, false)), &[1.0, 2.0, 3.0, 0.0]);
}

#[test]
fn clipped_policy_loss_by_hand() {
    // Ratios 1, 1.5 (positive advantage, clipped to 1.2) and 0.5 (negative advantage, clipped to 0.8).
    let old = t(&[&[0.0, 0.0, 0.0]]);
    let new = t(&[&[0.0, 1.5f64.ln(), 0.5f64.ln()]]);
    let advantages = t(&[&[1.0, 1.0, -1.0]]);
    let mask = t(&[&[1.0, 1.0, 1.0]]);
    let out = policy_loss(&new, &old, &advantages, &mask, Clip::symmetric(0.2));
    // max(−A·ρ, −A·clip(ρ)): −1, max(−1.5, −1.2) = −1.2, max(0.5, 0.8) = 0.8.
    assert!((scalar(&out.loss) - (-1.0 - 1.2 + 0.8) / 3.0).abs() < 1e-6);
    assert!((scalar(&out.clip_fraction) - 2.0 / 3.0).abs() < 1e-6);
    let kl = 0.5 * (1.5f64.ln().powi(2) + 0.5f64.ln().powi(2)) / 3.0;
    assert!((scalar(&out.approx_kl) - kl).abs() < 1e-6);
    // Masked tokens count for nothing.
    let masked = policy_loss(&new, &old, &advantages, &t(&[&[1.0, 0.0, 0.0]]), Clip::symmetric(0.2));
    assert!((scalar(&masked.loss) + 1.0).abs() < 1e-6 && scalar(&masked.clip_fraction) == 0.0);
    // DAPO's clip-higher [0.8, 1.28]: the 1.5 ratio is clipped to 1.28, the 0.5 one still to 0.8.
    let higher = policy_loss(&new, &old, &advantages, &mask, Clip { low: 0.2, high: 0.28 });
    assert!((scalar(&higher.loss) - (-1.0 - 1.28 + 0.8) / 3.0).abs() < 1e-6);
}

#[test]
fn gspo_clips_the_sequence_ratio_by_hand() {
    // Row 1: token log-ratios ln 1.5 and ln 1.5 (mean), so s = 1.5, A = 1: clipped to 1.2 → −1.2.
    // Row 2: one real token, log-ratio ln 0.9, A = −2: s = 0.9 inside [0.8, 1.2] → 2·0.9 = 1.8.
    let old = t(&[&[0.0, 0.0], &[0.0, 0.0]]);
    let new = t(&[&[1.5f64.ln(), 1.5f64.ln()], &[0.9f64.ln(), 5.0]]);
    let advantages = t(&[&[1.0, 1.0], &[-2.0, 0.0]]);
    let mask = t(&[&[1.0, 1.0], &[1.0, 0.0]]);
    let out = sequence_policy_loss(&new, &old, &advantages, &mask, Clip::symmetric(0.2));
    assert!((scalar(&out.loss) - (-1.2 + 1.8) / 2.0).abs() < 1e-6, "{}", scalar(&out.loss));
    assert!((scalar(&out.clip_fraction) - 0.5).abs() < 1e-6);
    let kl = 0.5 * (1.5f64.ln().powi(2) + 0.9f64.ln().powi(2)) / 2.0;
    assert!((scalar(&out.approx_kl) - kl).abs() < 1e-6);
    // The gradient reaches each token of an unclipped row through s: d(−A·s)/d log π_t = −A·s/|y|.
    let new = new.set_requires_grad(true);
    sequence_policy_loss(&new, &old, &advantages, &mask, Clip::symmetric(0.2)).loss.backward();
    close(&v(&new.grad()), &[0.0, 0.0, 2.0 * 0.9 / 2.0, 0.0]);
}

#[test]
fn clipped_value_loss_by_hand() {
    let values = t(&[&[1.0, 2.0]]);
    let old = t(&[&[0.5, 0.5]]);
    let returns = t(&[&[1.5, 0.0]]);
    let mask = t(&[&[1.0, 1.0]]);
    let out = value_loss(&values, &old, &returns, &mask, 0.2);
    // Clipped values 0.7, 0.7: squared errors max(0.25, 0.64) = 0.64 and max(4, 0.49) = 4.
    assert!((scalar(&out.loss) - 0.5 * (0.64 + 4.0) / 2.0).abs() < 1e-6);
    assert!((scalar(&out.clip_fraction) - 0.5).abs() < 1e-6);
}

#[test]
fn kl_estimators_by_hand() {
    let logprobs = t(&[&[-1.0, -2.0, -0.3]]);
    let reference = t(&[&[-1.5, -1.0, -0.3]]);
    close(&v(&KlEstimator::K1.per_token(&logprobs, &reference)), &[0.5, -1.0, 0.0]);
    // k3 = e^{r} − 1 − r with r = log π_ref − log π = −0.5, 1, 0.
    let k3 = [(-0.5f64).exp() - 1.0 + 0.5, 1f64.exp() - 2.0, 0.0];
    close(&v(&KlEstimator::K3.per_token(&logprobs, &reference)), &k3);
}

#[test]
fn adaptive_kl_controller_follows_ziegler() {
    let mut c = KlController { beta: 0.1, target: Some(6.0), horizon: 10_000.0 };
    c.update(9.0, 64); // error clip(0.5) = 0.2
    assert!((c.beta - 0.1 * (1.0 + 0.2 * 64.0 / 10_000.0)).abs() < 1e-12);
    let before = c.beta;
    c.update(5.4, 100); // error −0.1
    assert!((c.beta - before * (1.0 - 0.1 * 100.0 / 10_000.0)).abs() < 1e-12);
    let before = c.beta;
    c.update(0.0, 10); // error clipped to −0.2
    assert!((c.beta - before * (1.0 - 0.2 * 10.0 / 10_000.0)).abs() < 1e-12);
    let mut fixed = KlController { beta: 0.1, target: None, horizon: 10_000.0 };
    fixed.update(100.0, 1000);
    assert_eq!(fixed.beta, 0.1);
}

#[test]
fn group_baselines_by_hand() {
    let rewards = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 5.0, 5.0, 5.0]);
    // Group 1: mean 2, unbiased std 1. Group 2: no spread, advantage 0.
    close(&v(&grpo(&rewards, 3, 1e-4)), &[-1.0 / 1.0001, 0.0, 1.0 / 1.0001, 0.0, 0.0, 0.0]);
    // Dr. GRPO: the same without the std.
    close(&v(&dr_grpo(&Tensor::from_slice(&[1.0f32, 2.0, 6.0, 5.0, 5.0, 5.0]), 3)), &[-2.0, -1.0, 3.0, 0.0, 0.0, 0.0]);
    // RLOO: r_i − mean of the others: 1 − 2.5, 2 − 2, 3 − 1.5.
    close(&v(&rloo(&rewards, 3)), &[-1.5, 0.0, 1.5, 0.0, 0.0, 0.0]);
    close(&v(&rloo(&Tensor::from_slice(&[4.0f32, 1.0]), 2)), &[3.0, -3.0]);
    let mask = t(&[&[1.0, 1.0, 0.0], &[1.0, 0.0, 0.0]]);
    close(&v(&per_token(&Tensor::from_slice(&[2.0f32, -1.0]), &mask)), &[2.0, 2.0, 0.0, -1.0, 0.0, 0.0]);
}

#[test]
fn explained_variance_is_one_for_perfect_values() {
    let returns = t(&[&[1.0, 2.0, 4.0]]);
    let mask = t(&[&[1.0, 1.0, 1.0]]);
    assert!((explained_variance(&returns, &returns, &mask) - 1.0).abs() < 1e-6);
    assert!(explained_variance(&Tensor::zeros_like(&returns), &returns, &mask).abs() < 1e-6);
}

#[test]
fn reward_shaping_by_hand() {
    let shapes = [ResponseShape { tokens: 4, has_eos: true }, ResponseShape { tokens: 10, has_eos: false }];
    let mut moments = RunningMoments::default();
    let base = RewardSection { length_penalty: 0.1, missing_eos_penalty: -2.0, ..RewardSection::default() };
    let replace = RewardSection { missing_eos: MissingEos::Replace, ..base.clone() };
    close(
        &shape_scores(&[1.0, 3.0], &shapes, &replace, &mut moments).iter().map(|&x| x as f64).collect::<Vec<_>>(),
        &[0.6, -2.0],
    );
    let add = RewardSection { missing_eos: MissingEos::Add, clip: 2.5, ..base.clone() };
    close(
        &shape_scores(&[1.0, 3.0], &shapes, &add, &mut moments).iter().map(|&x| x as f64).collect::<Vec<_>>(),
        &[0.6, 2.5 - 1.0 - 2.0],
    );
    assert_eq!(moments, RunningMoments::default(), "moments only move when normalising");
    let normalize = RewardSection { normalize: true, missing_eos: MissingEos::Off, length_penalty: 0.0, ..base };
    let scores = shape_scores(&[1.0, 3.0], &shapes, &normalize, &mut moments);
    close(&scores.iter().map(|&x| x as f64).collect::<Vec<_>>(), &[-1.0, 1.0]);
    assert_eq!((moments.count, moments.mean), (2.0, 2.0));
}

#[test]
fn ensemble_combinations() {
    use rlhf_model::reward::{combine, Combine};
    let r = [1.0, 3.0, 2.0];
    assert_eq!(combine(&r, Combine::Mean, 1.0), 2.0);
    assert_eq!(combine(&r, Combine::Min, 1.0), 1.0);
    let std = (2.0f64 / 3.0).sqrt();
    assert!((combine(&r, Combine::MeanMinusStd, 0.5) as f64 - (2.0 - 0.5 * std)).abs() < 1e-6);
}

#[test]
fn weighted_sums_of_objectives_by_hand() {
    use rlhf_ppo::config::RewardCombine;
    use rlhf_ppo::reward::combine_rewards;
    let weighted = RewardSection::default();
    // 0.75 · helpful 1.0 + 0.25 · harmless (−2.0) = 0.25.
    assert_eq!(combine_rewards(&[1.0, -2.0], &[0.75, 0.25], &weighted), 0.25);
    assert_eq!(combine_rewards(&[1.0, -2.0], &[1.0, 0.0], &weighted), 1.0, "w = 1: helpful only");
    let mean = RewardSection { combine: RewardCombine::Mean, ..RewardSection::default() };
    assert_eq!(combine_rewards(&[1.0, -2.0], &[0.75, 0.25], &mean), -0.5, "an ensemble ignores the weights");
}
