//! Model-free statistics of a set of responses: distinct-n, and the win rate of one policy over
//! another by a judge's paired scores, with a seeded bootstrap confidence interval.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;

/// Mean of `values` (0 for none).
pub fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Distinct-n: distinct word n-grams over all n-grams of `texts` (lower-cased words; 0 for none).
pub fn distinct_n<S: AsRef<str>>(texts: &[S], n: usize) -> f64 {
    let (mut seen, mut total) = (HashSet::new(), 0usize);
    for text in texts {
        let words: Vec<String> = text.as_ref().split_whitespace().map(str::to_lowercase).collect();
        for gram in words.windows(n) {
            seen.insert(gram.to_vec());
            total += 1;
        }
    }
    if total == 0 {
        0.0
    } else {
        seen.len() as f64 / total as f64
    }
}

/// A win rate with its bootstrap 95% interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WinRate {
    pub rate: f64,
    pub low: f64,
    pub high: f64,
    /// Paired comparisons.
    pub n: usize,
}

/// Win rate of `a` over `b` on paired scores (win 1, tie ½, loss 0), with a percentile bootstrap
/// 95% interval from `resamples` resamples seeded by `seed`. `None` without pairs.
pub fn win_rate(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<WinRate> {
    let outcomes: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| match x.partial_cmp(y) {
            Some(std::cmp::Ordering::Greater) => 1.0,
            Some(std::cmp::Ordering::Less) => 0.0,
            _ => 0.5,
        })
        .collect();
    let n = outcomes.len();
    if n == 0 {
        return None;
    }
    let rate = mean(outcomes.iter().copied());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples).map(|_| mean((0..n).map(|_| outcomes[rng.random_range(0..n)]))).collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| if means.is_empty() { rate } else { means[((means.len() - 1) as f64 * q).round() as usize] };
    Some(WinRate { rate, low: at(0.025), high: at(0.975), n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_counts_unique_ngrams() {
        let texts = ["the cat the cat", "The dog"];
        assert_eq!(distinct_n(&texts, 1), 3.0 / 6.0);
        assert_eq!(distinct_n(&texts, 2), 3.0 / 4.0);
        assert_eq!(distinct_n::<&str>(&[], 2), 0.0);
    }

    #[test]
    fn win_rate_counts_ties_half_and_brackets_the_rate() {
        let w = win_rate(&[2.0, 1.0, 0.0, 5.0], &[1.0, 1.0, 3.0, 4.0], 500, 7).unwrap();
        assert_eq!((w.rate, w.n), (0.625, 4));
        assert!(w.low <= w.rate && w.rate <= w.high && w.low >= 0.0 && w.high <= 1.0);
        assert_eq!(win_rate(&[2.0, 1.0, 0.0, 5.0], &[1.0, 1.0, 3.0, 4.0], 500, 7), Some(w));
        assert_eq!(win_rate(&[], &[], 10, 0), None);
    }
}
