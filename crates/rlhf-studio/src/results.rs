//! A studio's results, written as `results.md` and `results.json` (atomically): for a study, each
//! pair of policies' win rate with a bootstrap 95% interval and Bradley–Terry ratings with
//! intervals, pooled and per annotator; for every studio, the annotators' agreement (Cohen's κ per
//! pair of annotators, Krippendorff's α overall) and, where the embedded task's gold judge applies
//! (`gold`), each annotator's agreement with it. Writing a study's results closes it: the policies'
//! names are revealed here and nowhere before, so no vote comes after.
//!
//! Agreement is measured on pairwise decisions: each pair of responses an annotator judged is one
//! decision, "first better", "second better", "tie" or (in a study) "both bad".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use rlhf_data::Preferred;
use rlhf_stats::agreement::{cohen_kappa, krippendorff_alpha};
use rlhf_stats::ratings::{bradley_terry, Rating, Vote};
use rlhf_stats::{bootstrap_interval, mean};
use serde_json::json;

use crate::journal::Verdict;
use crate::studio::{lock, Files, StudioKind, CLOSED_FILE};
use crate::{Error, Result};

/// How to compute the results.
#[derive(Clone, Copy, Debug)]
pub struct ResultsOptions {
    /// Also measure each annotator against the embedded task's gold judge.
    pub gold: bool,
    /// Bootstrap resamples of every interval.
    pub resamples: usize,
    pub seed: u64,
}

impl Default for ResultsOptions {
    fn default() -> Self {
        ResultsOptions { gold: false, resamples: 1000, seed: 0 }
    }
}

pub const RESULTS_MD: &str = "results.md";
pub const RESULTS_JSON: &str = "results.json";

/// A decision's category.
const FIRST: usize = 0;
const SECOND: usize = 1;
const TIE: usize = 2;
const BOTH_BAD: usize = 3;

/// Computes the results of the studio in `dir` (no server may be serving it), writes them and
/// returns the markdown; a study is closed by it.
pub fn results(dir: &Path, options: ResultsOptions) -> Result<String> {
    let _lock = lock(dir)?;
    let files = Files::read(dir)?;
    let decisions = decisions(&files)?;
    let mut markdown = String::new();
    let labels = files.labels.iter().filter(|l| l.verdict != Verdict::Skipped).count();
    let annotators: Vec<&str> = files.spec.annotators.iter().map(|a| a.name.as_str()).collect();
    let title = match files.spec.kind {
        StudioKind::Study => "Study results",
        StudioKind::Ranking => "Labelling results",
    };
    writeln!(markdown, "# {title}\n").unwrap();
    writeln!(
        markdown,
        "{labels} labels on {} items by {} annotators ({} skips).\n",
        files.items.len(),
        annotators.len(),
        files.labels.len() - labels
    )
    .unwrap();
    let mut report = json!({ "kind": files.spec.kind, "labels": labels, "items": files.items.len() });
    if files.spec.kind == StudioKind::Study {
        report["study"] = study(&files, &annotators, options, &mut markdown)?;
    }
    report["agreement"] = agreement(&decisions, &annotators, &mut markdown);
    if options.gold {
        report["gold"] = gold(&files, &decisions, &annotators, options, &mut markdown)?;
    }
    rlhf_data::atomic::write_atomically(&dir.join(RESULTS_MD), markdown.as_bytes())?;
    let text = serde_json::to_vec_pretty(&report).map_err(|e| Error::input(dir.join(RESULTS_JSON), e.to_string()))?;
    rlhf_data::atomic::write_atomically(&dir.join(RESULTS_JSON), &text)?;
    if files.spec.kind == StudioKind::Study {
        rlhf_data::atomic::write_atomically(
            &dir.join(CLOSED_FILE),
            b"results written; the study takes no more votes\n",
        )?;
    }
    Ok(markdown)
}

/// One pairwise decision: (item index, first response, second response) → category, by annotator.
type Decisions = BTreeMap<(usize, usize, usize), BTreeMap<String, usize>>;

/// The category of a label's decision on its responses `i` and `j` (none for a skip).
fn decision(verdict: &Verdict, i: usize, j: usize) -> Option<usize> {
    match verdict {
        Verdict::Skipped => None,
        Verdict::BothBad => Some(BOTH_BAD),
        Verdict::Ranked { levels } => Some(match levels[i].cmp(&levels[j]) {
            std::cmp::Ordering::Less => FIRST,
            std::cmp::Ordering::Greater => SECOND,
            std::cmp::Ordering::Equal => TIE,
        }),
    }
}

/// A decision as a vote's outcome for the first response: a win 1, a loss 0, a tie or both bad ½.
fn outcome(category: usize) -> f64 {
    match category {
        FIRST => 1.0,
        SECOND => 0.0,
        _ => 0.5,
    }
}

fn decisions(files: &Files) -> Result<Decisions> {
    let mut decisions = Decisions::new();
    for label in &files.labels {
        let (item, shown) = files.item_of(label)?;
        let responses = shown.responses.len();
        for i in 0..responses {
            for j in (i + 1)..responses {
                if let Some(category) = decision(&label.verdict, i, j) {
                    decisions.entry((item, i, j)).or_default().insert(label.annotator.clone(), category);
                }
            }
        }
    }
    Ok(decisions)
}

/// The study's votes: (annotator, vote, decision); the vote's `a` and `b` index the policies, in
/// the order of the item's sources (the policies' own order: see `items::study_items`).
fn votes(files: &Files) -> Result<Vec<(&str, Vote, usize)>> {
    let policy = |name: &str| files.spec.policies.iter().position(|p| p == name);
    let mut votes = Vec::new();
    for label in &files.labels {
        let (_, item) = files.item_of(label)?;
        let (Some(a), Some(b)) =
            (item.sources.first().and_then(|s| policy(s)), item.sources.get(1).and_then(|s| policy(s)))
        else {
            continue;
        };
        if let Some(category) = decision(&label.verdict, 0, 1) {
            votes.push((label.annotator.as_str(), Vote { a, b, outcome: outcome(category) }, category));
        }
    }
    Ok(votes)
}

fn interval(rating: &Rating) -> String {
    format!("{:.0} [{:.0}, {:.0}]", rating.rating, rating.low, rating.high)
}

fn study(files: &Files, annotators: &[&str], options: ResultsOptions, md: &mut String) -> Result<serde_json::Value> {
    let policies = &files.spec.policies;
    let votes = votes(files)?;
    writeln!(md, "## Win rates\n\nA tie or a both-bad vote counts half a win each way.\n").unwrap();
    writeln!(md, "| A | B | votes | A wins | B wins | ties | both bad | A's win rate [95% CI] |").unwrap();
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|---|").unwrap();
    let mut pairs = Vec::new();
    for a in 0..policies.len() {
        for b in (a + 1)..policies.len() {
            let seen: Vec<(f64, usize)> = votes
                .iter()
                .filter(|(_, vote, _)| (vote.a, vote.b) == (a, b))
                .map(|(_, vote, category)| (vote.outcome, *category))
                .collect();
            if seen.is_empty() {
                continue;
            }
            let outcomes: Vec<f64> = seen.iter().map(|(o, _)| *o).collect();
            let count = |c: usize| seen.iter().filter(|(_, category)| *category == c).count();
            let rate = mean(outcomes.iter().copied());
            let (low, high) = bootstrap_interval(&outcomes, options.resamples, options.seed);
            writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {:.1}% [{:.1}, {:.1}] |",
                policies[a],
                policies[b],
                seen.len(),
                count(FIRST),
                count(SECOND),
                count(TIE),
                count(BOTH_BAD),
                100.0 * rate,
                100.0 * low,
                100.0 * high
            )
            .unwrap();
            pairs.push(json!({
                "a": policies[a], "b": policies[b], "votes": seen.len(), "a_wins": count(FIRST), "b_wins": count(SECOND),
                "ties": count(TIE), "both_bad": count(BOTH_BAD), "win_rate": rate, "low": low, "high": high,
            }));
        }
    }
    let all: Vec<Vote> = votes.iter().map(|(_, vote, _)| *vote).collect();
    let pooled = bradley_terry(policies.len(), &all, options.resamples, options.seed);
    let mut by_annotator = Vec::new();
    for name in annotators {
        let own: Vec<Vote> = votes.iter().filter(|(who, _, _)| who == name).map(|(_, vote, _)| *vote).collect();
        if !own.is_empty() {
            by_annotator.push((*name, bradley_terry(policies.len(), &own, options.resamples, options.seed)));
        }
    }
    writeln!(
        md,
        "\n## Bradley–Terry ratings\n\nElo scale (the ratings average 1000), bootstrap 95% intervals over the votes.\n"
    )
    .unwrap();
    let names: String = by_annotator.iter().map(|(name, _)| format!(" {name} |")).collect();
    writeln!(md, "| policy | pooled |{names}").unwrap();
    writeln!(md, "|---|---|{}", "---|".repeat(by_annotator.len())).unwrap();
    for (p, policy) in policies.iter().enumerate() {
        let cells: String = by_annotator.iter().map(|(_, ratings)| format!(" {} |", interval(&ratings[p]))).collect();
        writeln!(md, "| {policy} | {} |{cells}", interval(&pooled[p])).unwrap();
    }
    writeln!(md).unwrap();
    let rating_json = |ratings: &[Rating]| -> serde_json::Value {
        policies
            .iter()
            .zip(ratings)
            .map(|(policy, r)| (policy.clone(), json!({ "rating": r.rating, "low": r.low, "high": r.high })))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    Ok(json!({
        "policies": policies,
        "votes": votes.len(),
        "pairs": pairs,
        "ratings": rating_json(&pooled),
        "ratings_by_annotator": by_annotator.iter().map(|(name, r)| (name.to_string(), rating_json(r))).collect::<serde_json::Map<_, _>>(),
    }))
}

fn agreement(decisions: &Decisions, annotators: &[&str], md: &mut String) -> serde_json::Value {
    let units: Vec<Vec<usize>> = decisions.values().map(|by| by.values().copied().collect()).collect();
    let shared_units = units.iter().filter(|unit| unit.len() >= 2).count();
    let alpha = krippendorff_alpha(&units);
    let show = |value: Option<f64>| value.map_or("n/a".to_string(), |v| format!("{v:.3}"));
    writeln!(md, "## Agreement between annotators\n").unwrap();
    writeln!(
        md,
        "On pairwise decisions (first better, second better, tie, both bad). {shared_units} decisions have two or more \
         annotators; Krippendorff's α (nominal): {}.\n",
        show(alpha)
    )
    .unwrap();
    let mut pairs = Vec::new();
    let mut rows = String::new();
    for (i, a) in annotators.iter().enumerate() {
        for b in &annotators[i + 1..] {
            let (mut first, mut second) = (Vec::new(), Vec::new());
            for by in decisions.values() {
                if let (Some(x), Some(y)) = (by.get(*a), by.get(*b)) {
                    first.push(*x);
                    second.push(*y);
                }
            }
            if first.is_empty() {
                continue;
            }
            let kappa = cohen_kappa(&first, &second);
            let raw = first.iter().zip(&second).filter(|(x, y)| x == y).count() as f64 / first.len() as f64;
            writeln!(rows, "| {a} · {b} | {} | {:.1}% | {} |", first.len(), 100.0 * raw, show(kappa)).unwrap();
            pairs.push(json!({ "a": a, "b": b, "shared": first.len(), "raw": raw, "kappa": kappa }));
        }
    }
    if !pairs.is_empty() {
        writeln!(md, "| annotators | shared decisions | same decision | Cohen's κ |\n|---|---:|---:|---:|\n{rows}")
            .unwrap();
    }
    json!({ "shared_decisions": shared_units, "krippendorff_alpha": alpha, "pairs": pairs })
}

fn gold(
    files: &Files,
    decisions: &Decisions,
    annotators: &[&str],
    options: ResultsOptions,
    md: &mut String,
) -> Result<serde_json::Value> {
    let judge = rlhf_task::judge_by_name("gold", 0).expect("the gold judge is built in");
    let keys: Vec<&(usize, usize, usize)> = decisions.keys().collect();
    let items: Vec<(&str, &str, &str)> = keys
        .iter()
        .map(|&&(item, i, j)| {
            let item = &files.items[item];
            (item.prompt.as_str(), item.responses[i].as_str(), item.responses[j].as_str())
        })
        .collect();
    let verdicts = judge.compare(&items)?;
    writeln!(md, "## Agreement with the gold judge\n\n{}\n", judge.description()).unwrap();
    writeln!(md, "On the pairs both the annotator and the gold judge decided (no ties).\n").unwrap();
    writeln!(md, "| annotator | decided pairs | agreement with gold [95% CI] |\n|---|---:|---|").unwrap();
    let mut rows = Vec::new();
    for name in annotators {
        let agreed: Vec<f64> = keys
            .iter()
            .zip(&verdicts)
            .filter_map(|(key, verdict)| {
                let gold = match verdict.preferred {
                    Preferred::First => FIRST,
                    Preferred::Second => SECOND,
                    Preferred::Neither => return None,
                };
                let theirs = *decisions[*key].get(*name)?;
                (theirs == FIRST || theirs == SECOND).then_some(f64::from(u8::from(theirs == gold)))
            })
            .collect();
        if agreed.is_empty() {
            continue;
        }
        let rate = mean(agreed.iter().copied());
        let (low, high) = bootstrap_interval(&agreed, options.resamples, options.seed);
        writeln!(md, "| {name} | {} | {:.1}% [{:.1}, {:.1}] |", agreed.len(), 100.0 * rate, 100.0 * low, 100.0 * high)
            .unwrap();
        rows.push(json!({ "annotator": name, "decided": agreed.len(), "agreement": rate, "low": low, "high": high }));
    }
    writeln!(md).unwrap();
    Ok(json!({ "judge": judge.name(), "annotators": rows }))
}
