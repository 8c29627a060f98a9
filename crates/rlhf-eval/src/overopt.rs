//! Reward over-optimisation (Gao, Schulman and Hilton 2022): each policy's gold gain over the
//! reference and its proxy reward against `d = √KL`, Gao et al.'s fits of the gold gain (their RL
//! form `d(α − β·ln d)` and the best-of-n quadratic `d(α − β·d)`) with the fitted peak, and the
//! policies past the gold peak whose proxy still rose while gold fell, by a paired bootstrap test.
//! Policies outside the sweep (a mitigation: an ensemble-trained PPO, a later round) are put on the
//! same axes, not fitted.

use std::fmt::Write as _;

use crate::plots::{self, Labelled, Series};
use crate::report::{Evaluation, PolicyResult};
use crate::stats::{fit_gold, FitForm, GoldFit};
use crate::Result;

/// One policy on the over-optimisation axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub name: String,
    /// √KL to the reference.
    pub d: f64,
    pub gold: f64,
    /// Gold minus the reference's gold.
    pub gain: f64,
    pub proxy: Option<f64>,
}

/// The analysis of a run whose policies sit at several distances from the reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Overoptimisation {
    pub reference: String,
    /// Policies with a KL and a gold score, the reference first (at d = 0), then by d.
    pub points: Vec<Point>,
    /// Other policies on the same axes (not the reference, not in the sweep), by d; not fitted.
    pub others: Vec<Point>,
    /// The fits that could be made, RL form first.
    pub fits: Vec<GoldFit>,
    /// The policy of highest gold.
    pub peak: String,
}

/// Policies needed beside the reference before the analysis is shown (and the fits made).
const MIN_POLICIES: usize = 3;

/// The analysis of [`Evaluation::sweep`], with a gold judge and at least [`MIN_POLICIES`] of its
/// policies at a KL from the reference; `None` otherwise.
pub fn analyse(eval: &Evaluation) -> Option<Overoptimisation> {
    eval.gold_judge.as_ref()?;
    let reference = eval.reference.as_deref().and_then(|r| eval.policy(r))?;
    let reference_gold = reference.gold?;
    let point = |p: &PolicyResult, d: f64| -> Option<Point> {
        let gold = p.gold?;
        Some(Point { name: p.name.clone(), d, gold, gain: gold - reference_gold, proxy: eval.proxy(p) })
    };
    let on_axes = |in_sweep: bool| -> Vec<Point> {
        let mut points: Vec<Point> = eval
            .policies
            .iter()
            .filter(|p| p.name != reference.name && eval.sweep.contains(&p.name) == in_sweep)
            .filter_map(|p| point(p, p.kl?.max(0.0).sqrt()))
            .collect();
        points.sort_by(|a, b| a.d.total_cmp(&b.d));
        points
    };
    let swept = on_axes(true);
    if swept.len() < MIN_POLICIES {
        return None;
    }
    let gains: Vec<(f64, f64)> = swept.iter().map(|p| (p.d, p.gain)).collect();
    let fits = [FitForm::Rl, FitForm::BestOfN].into_iter().filter_map(|form| fit_gold(&gains, form)).collect();
    let peak = swept.iter().max_by(|a, b| a.gold.total_cmp(&b.gold)).map(|p| p.name.clone())?;
    let mut points = vec![point(reference, 0.0)?];
    points.extend(swept);
    Some(Overoptimisation { reference: reference.name.clone(), points, others: on_axes(false), fits, peak })
}

/// The flags of policies past the gold peak: proxy above the peak's while gold is lower, the drop
/// significant by the paired bootstrap ([`PolicyResult::gold_vs_peak`]).
pub fn flags(eval: &Evaluation) -> Vec<String> {
    let mut out = Vec::new();
    for p in &eval.policies {
        let Some((peak_name, diff)) = &p.gold_vs_peak else { continue };
        let Some(peak) = eval.policy(peak_name) else { continue };
        let (Some(proxy), Some(peak_proxy), Some(gold), Some(peak_gold)) =
            (eval.proxy(p), eval.proxy(peak), p.gold, peak.gold)
        else {
            continue;
        };
        if proxy > peak_proxy && diff.significantly_lower() {
            out.push(format!(
                "**{}**: past the gold peak ({peak_name}, KL {:.2}): proxy reward rose ({peak_proxy:.3} → {proxy:.3}) while gold fell ({peak_gold:.3} → {gold:.3}; paired bootstrap 95% CI of the change [{:.3}, {:.3}]): over-optimised.",
                p.name,
                peak.kl.unwrap_or(0.0),
                diff.low,
                diff.high
            ));
        }
    }
    out
}

impl Overoptimisation {
    /// The markdown table of the points (the sweep's, then the others').
    pub fn table(&self) -> String {
        let mut s = String::from("| policy | sweep | √KL | gold | gold gain | proxy |\n|---|---|---|---|---|---|\n");
        let sweep = self.points.iter().map(|p| (p, "yes")).chain(self.others.iter().map(|p| (p, "no")));
        for (p, swept) in sweep {
            let proxy = p.proxy.map_or("–".into(), |v| format!("{v:.3}"));
            let _ = writeln!(s, "| {} | {swept} | {:.3} | {:.3} | {:+.3} | {proxy} |", p.name, p.d, p.gold, p.gain);
        }
        s
    }

    /// One line per fit: its form, coefficients, R² and peak.
    pub fn fit_lines(&self) -> Vec<String> {
        self.fits
            .iter()
            .map(|fit| {
                let peak = match fit.peak {
                    Some((d, gain)) => format!("peak at √KL {d:.2} (KL {:.1}), gold gain {gain:+.3}", d * d),
                    None if fit.beta > 0.0 => "no gain anywhere: the fitted curve falls from the reference on".into(),
                    None => "no peak: the fitted gain still rises".into(),
                };
                format!(
                    "gold gain ≈ {}: α = {:.3}, β = {:.3}, R² = {:.3}; {peak}",
                    fit.form.formula(),
                    fit.alpha,
                    fit.beta,
                    fit.r2
                )
            })
            .collect()
    }

    /// The report's section: what it shows, the table, the fits.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Gold gain over {} and proxy reward against d = √KL (Gao et al. 2022); the highest gold: {}.\n\n{}\n",
            self.reference,
            self.peak,
            self.table()
        );
        for line in self.fit_lines() {
            let _ = writeln!(s, "- {line}.");
        }
        s
    }

    /// `overoptimization.png`: gold and proxy per policy against √KL, the first fit as a dotted curve.
    pub fn plot(&self) -> Result<(String, Vec<u8>)> {
        let reference_gold = self.points.first().map_or(0.0, |p| p.gold);
        let gold = self.points.iter().map(|p| (p.d, p.gold, p.name.clone())).collect();
        let proxy = self.points.iter().filter_map(|p| Some((p.d, p.proxy?, String::new()))).collect();
        let mut labelled: Vec<Labelled> = vec![("gold".into(), gold), ("proxy".into(), proxy)];
        if !self.others.is_empty() {
            let others = self.others.iter().map(|p| (p.d, p.gold, p.name.clone())).collect();
            labelled.push(("gold (other policies)".into(), others));
        }
        let d_max = self.points.iter().chain(&self.others).map(|p| p.d).fold(0.0, f64::max);
        let clouds: Vec<Series> = self
            .fits
            .first()
            .map(|fit| {
                let curve = (1..=60)
                    .map(|k| d_max * k as f64 / 60.0)
                    .map(|d| (d, reference_gold + fit.form.eval(fit.alpha, fit.beta, d)))
                    .collect();
                (format!("gold fit {}", fit.form.formula()), curve)
            })
            .into_iter()
            .collect();
        let png = plots::scatter("over-optimisation", "√KL to the reference", &clouds, &labelled)?;
        let what = format!(
            "each swept policy's mean gold score and proxy reward against √KL to {} (labelled markers; other policies' gold apart), and the gold fit {} (dotted)",
            self.reference,
            self.fits.first().map_or("(none)", |f| f.form.formula())
        );
        Ok((what, png))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::NamedJudge;
    use crate::stats::MeanDiff;

    /// A β sweep: gold gain 1.0·d − 0.2·d² (peak at d = 2.5), proxy rising throughout.
    fn sweep() -> Evaluation {
        let mut policies = vec![PolicyResult::scored("sft", 0.0, 2.0, 0.0)];
        for (i, d) in [1.0f64, 2.0, 3.0, 4.0, 5.0].into_iter().enumerate() {
            policies.push(PolicyResult::scored(&format!("kl-{i}/ppo"), d * d, 2.0 + d - 0.2 * d * d, 0.5 * d));
        }
        // Past the peak (kl-1 at d = 2, gold 3.2): kl-3 and kl-4 fell significantly, kl-2 not.
        policies[3].gold_vs_peak = Some(("kl-1/ppo".into(), MeanDiff { diff: -0.2, low: -0.5, high: 0.1 }));
        policies[4].gold_vs_peak = Some(("kl-1/ppo".into(), MeanDiff { diff: -0.4, low: -0.7, high: -0.1 }));
        policies[5].gold_vs_peak = Some(("kl-1/ppo".into(), MeanDiff { diff: -1.2, low: -1.6, high: -0.8 }));
        Evaluation {
            run_dir: "run".into(),
            reference: Some("sft".into()),
            baselines: Vec::new(),
            gold_judge: Some(NamedJudge { name: "gold".into(), description: "the rule".into() }),
            reward_models: vec!["rm/final".into()],
            sweep: policies.iter().skip(1).map(|p| p.name.clone()).collect(),
            prompts: 10,
            policies,
            objectives: Vec::new(),
            ai_feedback: Vec::new(),
        }
    }

    #[test]
    fn a_sweep_gets_its_fits_its_peak_and_flags_past_the_peak() {
        let eval = sweep();
        let analysis = analyse(&eval).unwrap();
        assert_eq!(analysis.peak, "kl-1/ppo");
        assert_eq!(analysis.points[0].name, "sft");
        assert_eq!(analysis.points.len(), 6);
        let quadratic = analysis.fits.iter().find(|f| f.form == FitForm::BestOfN).unwrap();
        assert!((quadratic.alpha - 1.0).abs() < 1e-9 && (quadratic.beta - 0.2).abs() < 1e-9, "{quadratic:?}");
        assert!((quadratic.peak.unwrap().0 - 2.5).abs() < 1e-9);
        let section = analysis.markdown();
        assert!(section.contains("| kl-1/ppo | yes | 2.000 | 3.200 | +1.200 | 1.000 |"), "{section}");
        assert!(analysis.others.is_empty());
        assert!(section.contains("peak at √KL 2.50 (KL 6.2), gold gain +1.250"), "{section}");

        let flagged = flags(&eval);
        assert_eq!(flagged.len(), 2, "{flagged:?}");
        assert!(flagged[0].starts_with("**kl-3/ppo**: past the gold peak (kl-1/ppo, KL 4.00)"), "{}", flagged[0]);
        assert!(flagged[1].ends_with("[-1.600, -0.800]): over-optimised."), "{}", flagged[1]);
    }

    #[test]
    fn policies_outside_the_sweep_share_the_axes_unfitted() {
        let mut eval = sweep();
        eval.policies.push(PolicyResult::scored("ensemble/ppo", 9.0, 3.1, 0.8));
        let analysis = analyse(&eval).unwrap();
        assert_eq!(analysis.others.len(), 1);
        assert_eq!(analysis, Overoptimisation { others: analysis.others.clone(), ..analyse(&sweep()).unwrap() });
        assert!(analysis.table().ends_with("| ensemble/ppo | no | 3.000 | 3.100 | +1.100 | 0.800 |\n"));
        analysis.plot().unwrap();
    }

    #[test]
    fn too_few_policies_or_no_gold_leave_the_analysis_out() {
        let mut eval = sweep();
        eval.sweep.truncate(2);
        assert_eq!(analyse(&eval), None);
        let mut eval = sweep();
        eval.gold_judge = None;
        assert_eq!(analyse(&eval), None);
    }
}
