//! The preference losses against hand-computed values: Bradley–Terry, margins, label smoothing,
//! rankings (all K·(K−1)/2 pairs of one forward pass, averaged per ranking) and mixed steps.

use rlhf_reward::config::LossConfig;
use rlhf_reward::data::{Pair, TokenizedPreference};
use rlhf_reward::loss::{accuracy_and_margin, preference_loss, PairIndex, PreferenceBatch};
use tch::{Device, Tensor};

/// `-log σ(x)` for the values used below, computed by hand: ln(1 + e^-x).
const NLL_1: f64 = 0.313_261_687_518_222_86; // ln(1 + e^-1)
const NLL_2: f64 = 0.126_928_011_042_972_63; // ln(1 + e^-2)
const NLL_HALF: f64 = 0.474_076_984_180_106_63; // ln(1 + e^-0.5)
const NLL_MINUS_1: f64 = 1.313_261_687_518_222_8; // ln(1 + e^1)

fn pair(better: usize, worse: usize, margin: f32) -> Pair {
    Pair { better, worse, margin }
}

fn preference(responses: usize, pairs: Vec<Pair>) -> TokenizedPreference {
    TokenizedPreference { rows: (0..responses as i64).map(|i| vec![3, 4 + i]).collect(), pairs }
}

/// The loss of `preferences` (one step) given the rewards of their rows, laid out in order.
fn loss(preferences: &[TokenizedPreference], rewards: &[f32], config: &LossConfig) -> f64 {
    let refs: Vec<&TokenizedPreference> = preferences.iter().collect();
    let pairs = PairIndex::new(&refs, refs.len(), Device::Cpu);
    let d = pairs.differences(&Tensor::from_slice(rewards));
    preference_loss(&d, &pairs, config).double_value(&[])
}

fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
}

#[test]
fn bradley_terry() {
    let comparison = [preference(2, vec![pair(0, 1, 0.5)])];
    close(loss(&comparison, &[1.0, 0.0], &LossConfig::default()), NLL_1);
    // The labelled-worse response scoring higher costs more.
    close(loss(&comparison, &[0.0, 1.0], &LossConfig::default()), NLL_MINUS_1);
}

#[test]
fn margin_is_used_only_when_asked() {
    let comparison = [preference(2, vec![pair(0, 1, 0.5)])];
    let with_margin = LossConfig { use_margin: true, ..LossConfig::default() };
    close(loss(&comparison, &[1.0, 0.0], &with_margin), NLL_HALF);
    close(loss(&comparison, &[1.0, 0.0], &LossConfig::default()), NLL_1);
}

#[test]
fn label_smoothing() {
    let comparison = [preference(2, vec![pair(0, 1, 0.0)])];
    let smoothed = LossConfig { label_smoothing: 0.1, ..LossConfig::default() };
    close(loss(&comparison, &[1.0, 0.0], &smoothed), 0.9 * NLL_1 + 0.1 * NLL_MINUS_1);
}

#[test]
fn a_ranking_is_the_mean_over_its_pairs() {
    // Rewards [0, 2, 1], ranked best first [1, 2, 0]: pairs (1,2) d=1, (1,0) d=2, (2,0) d=1.
    let ranking = [preference(3, vec![pair(1, 2, 0.0), pair(1, 0, 0.0), pair(2, 0, 0.0)])];
    let want = (2.0 * NLL_1 + NLL_2) / 3.0;
    close(loss(&ranking, &[0.0, 2.0, 1.0], &LossConfig::default()), want);
    // A step's loss is the mean over its preferences, however many pairs each has.
    let mixed = [preference(2, vec![pair(0, 1, 0.0)]), ranking[0].clone()];
    close(loss(&mixed, &[1.0, 0.0, 0.0, 2.0, 1.0], &LossConfig::default()), (NLL_1 + want) / 2.0);
}

#[test]
fn a_batch_scores_every_response_once() {
    let prefs = [preference(2, vec![pair(0, 1, 0.0)]), preference(4, vec![pair(3, 0, 0.0), pair(3, 1, 0.0)])];
    let refs: Vec<&TokenizedPreference> = prefs.iter().collect();
    let batch = PreferenceBatch::new(&refs, 2, 0, Device::Cpu).unwrap();
    assert_eq!(batch.tokens.input_ids.size(), [6, 2]);
    assert_eq!(Vec::<i64>::try_from(&batch.pairs.better).unwrap(), [0, 5, 5]);
    assert_eq!(Vec::<i64>::try_from(&batch.pairs.worse).unwrap(), [1, 2, 3]);
    assert_eq!(Vec::<f32>::try_from(&batch.pairs.weight).unwrap(), [0.5, 0.25, 0.25]);
}

#[test]
fn accuracy_and_mean_margin() {
    let (accuracy, margin) = accuracy_and_margin(&Tensor::from_slice(&[1.0f32, -0.5, 2.0, 0.0]));
    close(accuracy, 0.5);
    close(margin, 0.625);
}
