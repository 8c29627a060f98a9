//! Model-free statistics (no libtorch), shared by the evaluation and the studio: distinct-n; the
//! win rate of one policy over another and their mean score difference, on a judge's paired
//! scores, each with a seeded bootstrap confidence interval; Gao et al.'s over-optimisation fits
//! of gold against √KL; Bradley–Terry ratings from pairwise votes ([`ratings`]); agreement between
//! annotators ([`agreement`]).

pub mod agreement;
pub mod ratings;

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
    let (low, high) = bootstrap_interval(&outcomes, resamples, seed);
    Some(WinRate { rate, low, high, n })
}

/// The percentile-bootstrap 95% interval of the mean of `values` (`resamples` resamples seeded by
/// `seed`; no resamples: the mean itself).
pub fn bootstrap_interval(values: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    let n = values.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples).map(|_| mean((0..n).map(|_| values[rng.random_range(0..n)]))).collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if means.is_empty() {
            mean(values.iter().copied())
        } else {
            means[((means.len() - 1) as f64 * q).round() as usize]
        }
    };
    (at(0.025), at(0.975))
}

/// The mean of paired differences `a − b` with its bootstrap 95% interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanDiff {
    pub diff: f64,
    pub low: f64,
    pub high: f64,
}

impl MeanDiff {
    /// Whether `a` is lower than `b` beyond the interval (its upper end is below 0).
    pub fn significantly_lower(&self) -> bool {
        self.high < 0.0
    }
}

/// `mean(a − b)` over paired scores with a percentile bootstrap 95% interval (`resamples`
/// resamples of the pairs, seeded by `seed`). `None` without pairs.
pub fn paired_mean_diff(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<MeanDiff> {
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    if diffs.is_empty() {
        return None;
    }
    let (low, high) = bootstrap_interval(&diffs, resamples, seed);
    Some(MeanDiff { diff: mean(diffs.iter().copied()), low, high })
}

/// A fit of gold-score gain over the reference against `d = √KL`, one of Gao, Schulman and Hilton's
/// (2022) functional forms, by least squares through the origin (`gain(0) = 0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GoldFit {
    pub form: FitForm,
    pub alpha: f64,
    pub beta: f64,
    /// Share of the gains' variance about zero that the fit explains.
    pub r2: f64,
    /// The maximising `d` and the gain there, when the fitted curve turns down.
    pub peak: Option<(f64, f64)>,
}

/// Gao et al.'s forms: `Rl`: `d(α − β ln d)` (their fit for RL); `BestOfN`: `d(α − β d)` (for
/// best-of-n, the quadratic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FitForm {
    Rl,
    BestOfN,
}

impl FitForm {
    /// The second basis function (the first is `d`), subtracted with weight β.
    fn basis(self, d: f64) -> f64 {
        match self {
            FitForm::Rl => d * d.ln(),
            FitForm::BestOfN => d * d,
        }
    }

    /// The fitted gain at `d`.
    pub fn eval(self, alpha: f64, beta: f64, d: f64) -> f64 {
        if d <= 0.0 {
            0.0
        } else {
            alpha * d - beta * self.basis(d)
        }
    }

    pub fn formula(self) -> &'static str {
        match self {
            FitForm::Rl => "d(α − β·ln d)",
            FitForm::BestOfN => "d(α − β·d)",
        }
    }
}

/// Fits `gain ≈ form(d)` to `(d, gain)` points with `d > 0`; `None` with fewer than three such
/// points or a degenerate design.
pub fn fit_gold(points: &[(f64, f64)], form: FitForm) -> Option<GoldFit> {
    let points: Vec<(f64, f64)> =
        points.iter().copied().filter(|&(d, g)| d > 0.0 && d.is_finite() && g.is_finite()).collect();
    if points.len() < 3 {
        return None;
    }
    // Normal equations for gain = α·x1 − β·x2 with x1 = d, x2 = basis(d).
    let (mut s11, mut s12, mut s22, mut s1y, mut s2y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(d, y) in &points {
        let (x1, x2) = (d, -form.basis(d));
        s11 += x1 * x1;
        s12 += x1 * x2;
        s22 += x2 * x2;
        s1y += x1 * y;
        s2y += x2 * y;
    }
    let det = s11 * s22 - s12 * s12;
    if det.abs() < 1e-12 * (s11 * s22).max(1e-300) {
        return None;
    }
    let alpha = (s1y * s22 - s2y * s12) / det;
    let beta = (s11 * s2y - s12 * s1y) / det;
    let residual: f64 = points.iter().map(|&(d, y)| (y - form.eval(alpha, beta, d)).powi(2)).sum();
    let total: f64 = points.iter().map(|&(_, y)| y * y).sum();
    let peak = (beta > 0.0).then(|| {
        let d = match form {
            // d/dd [αd − βd ln d] = α − β(ln d + 1) = 0.
            FitForm::Rl => (alpha / beta - 1.0).exp(),
            FitForm::BestOfN => alpha / (2.0 * beta),
        };
        (d, form.eval(alpha, beta, d))
    });
    let peak = peak.filter(|&(d, _)| d > 0.0 && d.is_finite());
    Some(GoldFit { form, alpha, beta, r2: if total > 0.0 { 1.0 - residual / total } else { 0.0 }, peak })
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

    #[test]
    fn paired_differences_are_significant_only_beyond_their_noise() {
        let b: Vec<f64> = (0..200).map(|i| (i % 7) as f64).collect();
        let lower: Vec<f64> = b.iter().enumerate().map(|(i, x)| x - 0.5 + 0.1 * ((i % 3) as f64 - 1.0)).collect();
        let d = paired_mean_diff(&lower, &b, 500, 3).unwrap();
        assert!((d.diff + 0.5).abs() < 1e-2 && d.low <= d.diff && d.diff <= d.high, "{d:?}");
        assert!(d.significantly_lower());
        // Differences of ±1 around zero: no significant drop.
        let noisy: Vec<f64> = b.iter().enumerate().map(|(i, x)| x + if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        assert!(!paired_mean_diff(&noisy, &b, 500, 3).unwrap().significantly_lower());
        assert_eq!(paired_mean_diff(&[], &[], 10, 0), None);
    }

    #[test]
    fn gold_fits_recover_their_curves_and_peaks() {
        let ds = [0.5, 1.0, 2.0, 3.0, 4.0, 6.0];
        for (form, alpha, beta) in [(FitForm::BestOfN, 1.2, 0.2), (FitForm::Rl, 1.0, 0.5)] {
            let points: Vec<(f64, f64)> = ds.iter().map(|&d| (d, form.eval(alpha, beta, d))).collect();
            let fit = fit_gold(&points, form).unwrap();
            assert!((fit.alpha - alpha).abs() < 1e-9 && (fit.beta - beta).abs() < 1e-9, "{fit:?}");
            assert!((fit.r2 - 1.0).abs() < 1e-12);
            let (d, gain) = fit.peak.unwrap();
            let expected = if form == FitForm::BestOfN { 3.0 } else { (alpha / beta - 1.0f64).exp() };
            assert!((d - expected).abs() < 1e-9 && (gain - form.eval(alpha, beta, d)).abs() < 1e-12, "{fit:?}");
        }
        // A gain that only grows has no peak; two points are too few.
        let rising: Vec<(f64, f64)> = ds.iter().map(|&d| (d, d * (1.0 + 0.05 * d))).collect();
        assert_eq!(fit_gold(&rising, FitForm::BestOfN).unwrap().peak, None);
        assert_eq!(fit_gold(&rising[..2], FitForm::Rl), None);
    }
}
