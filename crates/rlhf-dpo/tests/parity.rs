//! Loss parity with `tests/fixtures/expected.json` (made by `make_fixtures.py` with transformers and
//! the papers' formulas): the summed response log-probs of a tiny policy and reference, and every
//! loss computed end to end from rlhf-model's log-probs, within 1e-5; ORPO's per-pair losses also
//! against TRL's own `odds_ratio_loss` (float32), within 1e-6, and KTO's batch loss, reference point
//! and mean rewards against TRL's `KTOTrainer` (float64), within 1e-12 on the fixture's log-probs.

use std::path::PathBuf;

use anyhow::Result;
use rlhf_dpo::data::{live_reference, policy_logps, Pair};
use rlhf_dpo::loss::{PairTerms, PolicyLogps, ReferenceLogps};
use rlhf_dpo::LossConfig;
use rlhf_model::CausalLm;
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

#[derive(Deserialize)]
struct TokenPair {
    prompt: Vec<i64>,
    chosen: Vec<i64>,
    rejected: Vec<i64>,
}

#[derive(Deserialize)]
struct Logps {
    chosen: Vec<f64>,
    rejected: Vec<f64>,
}

#[derive(Deserialize)]
struct Expected {
    config: LossConfig,
    per_pair: Vec<f64>,
    chosen_rewards: Vec<f64>,
    rejected_rewards: Vec<f64>,
    objective: f64,
    /// The same per-pair losses from TRL itself (float32), where the fixture script took them.
    #[serde(default)]
    trl_per_pair: Option<Vec<f64>>,
    /// KTO: each row's label; its rows are the pairs' rejected responses (labelled) and their
    /// chosen ones (mismatched, for the reference point).
    #[serde(default)]
    labels: Option<Vec<bool>>,
    /// KTO from TRL: the batch loss, the reference point z and the mean desirable / undesirable reward.
    #[serde(default)]
    trl_objective: Option<f64>,
    #[serde(default)]
    trl_kl: Option<f64>,
    #[serde(default)]
    trl_rewards: Option<[f64; 2]>,
}

/// KTO's view of a batch of pairs: the rejected responses labelled with `labels`, the chosen ones
/// as their mismatched completions.
fn labelled(policy: &PolicyLogps, reference: &ReferenceLogps, labels: &[bool]) -> (PolicyLogps, ReferenceLogps) {
    let labels: Vec<f64> = labels.iter().map(|&l| f64::from(u8::from(l))).collect();
    let policy = PolicyLogps {
        chosen: policy.rejected.shallow_clone(),
        rejected: policy.chosen.shallow_clone(),
        chosen_tokens: policy.rejected_tokens.shallow_clone(),
        rejected_tokens: policy.chosen_tokens.shallow_clone(),
        labels: Some(Tensor::from_slice(&labels)),
    };
    (policy, ReferenceLogps { chosen: reference.rejected.shallow_clone(), rejected: reference.chosen.shallow_clone() })
}

/// KTO's terms against TRL's batch values; returns the largest difference.
fn check_against_trl_kto(expected: &Expected, terms: &PairTerms, objective: f64, labels: &[bool]) -> f64 {
    let (Some(trl_objective), Some(trl_kl), Some([chosen, rejected])) =
        (expected.trl_objective, expected.trl_kl, expected.trl_rewards)
    else {
        return 0.0;
    };
    let rewards = values(&terms.chosen_rewards);
    let mean_where = |wanted: bool| {
        let picked: Vec<f64> = rewards.iter().zip(labels).filter(|(_, &l)| l == wanted).map(|(r, _)| *r).collect();
        picked.iter().sum::<f64>() / picked.len() as f64
    };
    let kl = terms.kl.as_ref().expect("KTO has a reference point").double_value(&[]);
    [objective - trl_objective, kl - trl_kl, mean_where(true) - chosen, mean_where(false) - rejected]
        .into_iter()
        .map(f64::abs)
        .fold(0.0, f64::max)
}

#[derive(Deserialize)]
struct Fixture {
    pairs: Vec<TokenPair>,
    policy: Logps,
    reference: Logps,
    losses: std::collections::BTreeMap<String, Expected>,
}

const PAD: i64 = 0;
const EOS: i64 = 1;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Checks every loss of the fixture on the given log-probs; returns the largest difference.
fn check_losses(fixture: &Fixture, policy: &PolicyLogps, reference: &ReferenceLogps, tolerance: f64) -> f64 {
    let chosen_tokens: f64 = values(&policy.chosen_tokens).iter().sum();
    let mut worst: f64 = 0.0;
    for (name, expected) in &fixture.losses {
        let config = &expected.config;
        let kto = expected.labels.as_ref().map(|labels| labelled(policy, reference, labels));
        let (policy, reference) = kto.as_ref().map_or((policy, reference), |(p, r)| (p, r));
        let terms = config.pair_terms(policy, Some(reference)).unwrap();
        let objective = config.objective(&terms, policy, fixture.pairs.len() as f64, chosen_tokens).double_value(&[]);
        let diffs = [
            max_diff(&values(&terms.losses), &expected.per_pair),
            max_diff(&values(&terms.chosen_rewards), &expected.chosen_rewards),
            max_diff(&values(&terms.rejected_rewards), &expected.rejected_rewards),
            (objective - expected.objective).abs(),
        ];
        let diff = diffs.into_iter().fold(0.0, f64::max);
        assert!(diff <= tolerance, "{name}: max |diff| {diff:e} > {tolerance:e}");
        if let Some(trl) = &expected.trl_per_pair {
            let diff = max_diff(&values(&terms.losses), trl);
            assert!(diff <= 1e-6, "{name}: TRL's per-pair losses (float32) differ by {diff:e}");
        }
        if let Some(labels) = &expected.labels {
            let diff = check_against_trl_kto(expected, &terms, objective, labels);
            assert!(diff <= tolerance, "{name}: TRL's KTO values differ by {diff:e}");
        }
        worst = worst.max(diff);
    }
    worst
}

fn fixture() -> Result<Fixture> {
    Ok(serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json"))?)?)
}

#[test]
fn losses_match_the_papers_formulas_on_the_fixture_log_probs() -> Result<()> {
    let fixture = fixture()?;
    let tokens = |side: fn(&TokenPair) -> &Vec<i64>| -> Tensor {
        Tensor::from_slice(&fixture.pairs.iter().map(|p| side(p).len() as f64 + 1.0).collect::<Vec<_>>())
    };
    let policy = PolicyLogps {
        chosen: Tensor::from_slice(&fixture.policy.chosen),
        rejected: Tensor::from_slice(&fixture.policy.rejected),
        chosen_tokens: tokens(|p| &p.chosen),
        rejected_tokens: tokens(|p| &p.rejected),
        labels: None,
    };
    let reference = ReferenceLogps {
        chosen: Tensor::from_slice(&fixture.reference.chosen),
        rejected: Tensor::from_slice(&fixture.reference.rejected),
    };
    check_losses(&fixture, &policy, &reference, 1e-12);
    Ok(())
}

/// In float32, the training precision: summed log-probs within 1e-5 of transformers' (in float64),
/// and every loss, implicit reward and objective within 1e-5.
#[test]
fn losses_match_transformers_end_to_end() -> Result<()> {
    let fixture = fixture()?;
    let policy_model = CausalLm::from_pretrained(fixtures().join("policy"), Device::Cpu, Kind::Float)?;
    let reference_dir = fixtures().join("../../../rlhf-model/tests/fixtures/gpt2");
    let reference_model = CausalLm::from_pretrained(reference_dir, Device::Cpu, Kind::Float)?;
    let pairs: Vec<Pair> = fixture
        .pairs
        .iter()
        .map(|p| Pair {
            prompt: p.prompt.clone(),
            chosen: [p.chosen.as_slice(), &[EOS]].concat(),
            rejected: [p.rejected.as_slice(), &[EOS]].concat(),
            reference: None,
            label: None,
        })
        .collect();
    let batch: Vec<&Pair> = pairs.iter().collect();
    let policy = policy_logps(&policy_model, &batch, PAD)?;
    let reference = live_reference(&reference_model, &batch, PAD)?;
    let logp_diff = [
        max_diff(&values(&policy.chosen), &fixture.policy.chosen),
        max_diff(&values(&policy.rejected), &fixture.policy.rejected),
        max_diff(&values(&reference.chosen), &fixture.reference.chosen),
        max_diff(&values(&reference.rejected), &fixture.reference.rejected),
    ]
    .into_iter()
    .fold(0.0, f64::max);
    assert!(logp_diff <= 1e-5, "summed log-probs differ by {logp_diff:e}");
    let loss_diff = check_losses(&fixture, &policy, &reference, 1e-5);
    println!("parity: max |log-prob diff| {logp_diff:.2e}, max |loss diff| {loss_diff:.2e}");
    Ok(())
}
