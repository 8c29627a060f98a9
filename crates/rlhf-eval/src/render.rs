//! Writing an [`Evaluation`] out: `<run>/eval/report.md`, `headline.md` (the table the pipeline
//! prints, with the judges), a self-contained `report.html` (plots inlined as base64 PNGs),
//! `metrics.parquet` and the PNG plots: the stages' training curves, proxy vs gold reward per policy,
//! and the reward–KL frontier; with objectives, their table, the Pareto front of the first two
//! ([`pareto`], `pareto.png`) and the Lagrange multiplier of each constrained PPO policy
//! (`constraint_<policy>.png`); with policies at several KLs, the over-optimisation analysis
//! ([`crate::overopt`], `overoptimization.png`). Every page names its [`judges`]; without a gold
//! judge the gold and win-rate columns, the proxy-vs-gold plot and the frontier's gold points are left
//! out. Reward hacking is flagged when proxy reward rises while gold falls significantly (a paired
//! bootstrap over the prompts: against the reference, and past the gold peak), or length or KL
//! explode.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rlhf_data::{read_records, write_records, Metric};

use crate::config::FlagConfig;
use crate::overopt;
use crate::plots::{self, Series};
use crate::report::{Evaluation, PolicyResult};
use crate::stats::WinRate;
use crate::{Error, Result};

/// Stages whose `metrics.parquet` the report plots.
pub const STAGES: &[&str] = &["base", "sft", "rm", "ppo", "dpo"];
/// Training metrics plotted: names containing one of these.
const CURVE_KEYS: &[&str] = &["reward", "score", "gold", "kl", "beta", "loss", "len"];
/// A stage's proxy-reward series: the first of these names found (then any name containing "reward").
/// PPO's raw reward-model score comes first: its shaped `objective/score` may be normalised.
const PROXY_KEYS: &[&str] = &["objective/rm_score", "objective/score", "reward"];
const MAX_PANELS: usize = 9;

/// What [`write_report`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    pub report: PathBuf,
    pub html: PathBuf,
    /// The headline table and the judges (`headline.md`).
    pub headline: String,
    pub flags: Vec<String>,
}

/// One stage's metrics as series by name (x = step), in name order.
fn stage_series(run_dir: &Path, stage: &str) -> Result<BTreeMap<String, Vec<(f64, f64)>>> {
    let path = run_dir.join(stage).join("metrics.parquet");
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    if path.exists() {
        for m in read_records::<Metric>(&path)? {
            series.entry(m.name).or_default().push((m.step as f64, m.value));
        }
    }
    Ok(series)
}

/// The series named by the first of `keys` that matches: exactly, or else contained in the name.
fn find<'a>(series: &'a BTreeMap<String, Vec<(f64, f64)>>, keys: &[&str]) -> Option<(&'a String, &'a Vec<(f64, f64)>)> {
    keys.iter().find_map(|key| {
        series.get_key_value(*key).or_else(|| series.iter().find(|(name, s)| name.contains(key) && s.len() > 1))
    })
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

/// Reward-hacking and blow-up flags (markdown bullet texts).
pub fn flags(eval: &Evaluation, ppo: &BTreeMap<String, Vec<(f64, f64)>>, limits: &FlagConfig) -> Vec<String> {
    let mut out = Vec::new();
    let reference = eval.reference.as_deref().and_then(|r| eval.policy(r));
    for p in &eval.policies {
        if let Some(r) = reference.filter(|r| r.name != p.name) {
            if let (Some(pp), Some(rp), Some(pg), Some(rg), Some(diff)) =
                (eval.proxy(p), eval.proxy(r), p.gold, r.gold, p.gold_vs_reference)
            {
                if pp > rp && diff.significantly_lower() {
                    out.push(format!(
                        "**{}**: proxy reward rose ({rp:.3} → {pp:.3}) while gold fell ({rg:.3} → {pg:.3}; paired bootstrap 95% CI of the change [{:.3}, {:.3}]) relative to {}: reward hacking.",
                        p.name, diff.low, diff.high, r.name
                    ));
                }
            }
            if p.distinct2 < limits.min_distinct2_ratio * r.distinct2 {
                out.push(format!(
                    "**{}**: distinct-2 {:.3} is under {}× the reference's {:.3}: the responses repeat each other (mode collapse).",
                    p.name, p.distinct2, limits.min_distinct2_ratio, r.distinct2
                ));
            }
            if r.length > 0.0 && p.length > limits.length_ratio * r.length {
                out.push(format!(
                    "**{}**: mean length {:.1} tokens is over {}× the reference's {:.1}.",
                    p.name, p.length, limits.length_ratio, r.length
                ));
            }
        }
        if p.kl.is_some_and(|kl| kl > limits.max_kl) {
            out.push(format!("**{}**: KL to the reference {} nats exceeds {}.", p.name, fmt(p.kl), limits.max_kl));
        }
        if p.eos_rate < limits.min_eos_rate {
            out.push(format!(
                "**{}**: only {:.0}% of responses end with eos (rambling or cut off).",
                p.name,
                100.0 * p.eos_rate
            ));
        }
    }
    let trend = |keys: &[&str]| find(ppo, keys).and_then(|(name, s)| Some((name.clone(), s.first()?.1, s.last()?.1)));
    let gold_trend = eval.gold_judge.as_ref().and_then(|_| trend(&["gold"]));
    if let (Some((rn, r0, r1)), Some((gn, g0, g1))) = (trend(PROXY_KEYS), gold_trend) {
        if r1 > r0 && g1 < g0 {
            out.push(format!("**ppo training**: `{rn}` rose ({r0:.3} → {r1:.3}) while `{gn}` fell ({g0:.3} → {g1:.3}): reward hacking."));
        }
    }
    if let Some((name, _, k1)) = trend(&["objective/kl", "kl"]).filter(|(_, _, k1)| *k1 > limits.max_kl) {
        out.push(format!("**ppo training**: `{name}` ended at {k1:.2}, above {}.", limits.max_kl));
    }
    out.extend(overopt::flags(eval));
    out
}

/// The judges the report used, as markdown list items: the gold judge (or that there is none) and
/// the reward models giving the proxy rewards, by directory (`rm:<dir>`).
pub fn judges(eval: &Evaluation) -> Vec<String> {
    let gold = eval.gold_judge.as_ref().map_or_else(
        || "gold: no gold judge configured: gold scores and win rates are not shown".to_string(),
        |judge| format!("gold: `{}` — {}", judge.name, judge.description),
    );
    let proxy = match eval.reward_models.split_first() {
        None => "none (no reward model found)".to_string(),
        Some((first, rest)) => std::iter::once(format!("`rm:{first}` (the headline's proxy)"))
            .chain(rest.iter().map(|rm| format!("`rm:{rm}`")))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut out = vec![gold, format!("proxy: {proxy}")];
    for objective in &eval.objectives {
        let gold = objective
            .gold_judge
            .as_ref()
            .map_or("no gold judge".to_string(), |j| format!("gold `{}` — {}", j.name, j.description));
        let proxy =
            objective.reward_model.as_ref().map_or("no reward model".to_string(), |rm| format!("proxy `rm:{rm}`"));
        out.push(format!("objective {}: {gold}; {proxy}", objective.name));
    }
    out
}

/// The "AI feedback" section's lines: per `rlhf-judge` report and judge it was measured against,
/// its figures (`None` without reports).
pub fn ai_feedback(eval: &Evaluation) -> Option<String> {
    fn figure(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
            serde_json::Value::Number(n) => format!("{:.3}", n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::Array(items) => format!("[{}]", items.iter().map(figure).collect::<Vec<_>>().join(", ")),
            serde_json::Value::Null => "n/a".into(),
            other => other.to_string(),
        }
    }
    let mut md = String::new();
    for (path, report) in &eval.ai_feedback {
        let table = path.strip_suffix(".against.json").unwrap_or(path);
        for (judge, figures) in report.as_object().into_iter().flatten() {
            let figures: Vec<String> = figures
                .as_object()
                .into_iter()
                .flatten()
                .map(|(key, value)| format!("{} {}", key.replace('_', " "), figure(value)))
                .collect();
            let _ = writeln!(md, "- `{table}` against `{judge}`: {}", figures.join(", "));
        }
    }
    (!md.is_empty()).then_some(md)
}

/// A table column: its header and each policy's cell.
type Column<'a> = (String, Box<dyn Fn(&PolicyResult) -> String + 'a>);

fn column<'a>(header: impl Into<String>, cell: impl Fn(&PolicyResult) -> String + 'a) -> Column<'a> {
    (header.into(), Box::new(cell))
}

/// A markdown table of `columns` (`None`: left out), one row per policy.
fn table<'a>(eval: &Evaluation, columns: impl IntoIterator<Item = Option<Column<'a>>>) -> String {
    let columns: Vec<Column> = columns.into_iter().flatten().collect();
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let mut s = line(columns.iter().map(|(header, _)| header.clone()).collect());
    let _ = writeln!(s, "|{}", "---|".repeat(columns.len()));
    for p in &eval.policies {
        s.push_str(&line(columns.iter().map(|(_, cell)| cell(p)).collect()));
    }
    s
}

/// The headline table: policy, gold, proxy, KL, win rate vs the reference (and vs each extra
/// baseline), length (gold and win rates only with a gold judge).
pub fn headline(eval: &Evaluation) -> String {
    let reference = eval.reference.as_deref().unwrap_or("reference");
    let gold = eval.gold_judge.is_some();
    let cell = |w: Option<WinRate>| {
        w.map_or("–".into(), |w| format!("{:.1}% [{:.1}, {:.1}]", 100.0 * w.rate, 100.0 * w.low, 100.0 * w.high))
    };
    let extra = eval.baselines.iter().enumerate().map(|(b, name)| {
        Some(column(format!("win rate vs {name}"), move |p| cell(p.wins_over_baselines.get(b).copied().flatten())))
    });
    let head = [
        Some(column("policy", |p| p.name.clone())),
        gold.then(|| column("gold", |p| fmt(p.gold))),
        Some(column("proxy", |p| fmt(eval.proxy(p)))),
        Some(column("KL", |p| fmt(p.kl))),
        gold.then(|| column(format!("win rate vs {reference} (95% CI)"), move |p| cell(p.win))),
    ];
    let tail = [Some(column("length", |p| format!("{:.1}", p.length)))];
    table(eval, head.into_iter().chain(extra).chain(tail))
}

/// The objectives table: each policy's gold and proxy score per objective and the share of prompts
/// within each constraint; `None` without objectives.
pub fn objectives_table(eval: &Evaluation) -> Option<String> {
    if eval.objectives.is_empty() {
        return None;
    }
    let mut columns = vec![Some(column("policy", |p| p.name.clone()))];
    for (i, objective) in eval.objectives.iter().enumerate() {
        let score = move |p: &PolicyResult| p.objectives.get(i).copied().unwrap_or_default();
        let name = &objective.name;
        columns
            .push(objective.gold_judge.as_ref().map(|_| column(format!("{name} gold"), move |p| fmt(score(p).gold))));
        columns.push(
            objective.reward_model.as_ref().map(|_| column(format!("{name} proxy"), move |p| fmt(score(p).proxy))),
        );
        columns.push(objective.cost_max.filter(|_| objective.gold_judge.is_some()).map(|cost_max| {
            column(format!("{name}: cost ≤ {cost_max}"), move |p| {
                score(p).satisfied.map_or("–".into(), |s| format!("{:.1}%", 100.0 * s))
            })
        }));
    }
    Some(table(eval, columns))
}

/// The Pareto analysis of the first two objectives' gold scores.
#[derive(Clone, Debug, PartialEq)]
pub struct Pareto {
    /// The two objectives (x, y).
    pub axes: (String, String),
    /// Each policy's (x, y) gold, in policy order.
    pub points: Vec<(String, f64, f64)>,
    /// Policies no other policy beats in one objective without losing in the other.
    pub front: Vec<String>,
    /// Policies better than the reference in both objectives.
    pub dominate_reference: Vec<String>,
}

/// The Pareto front of the first two objectives with gold scores; `None` with fewer.
pub fn pareto(eval: &Evaluation) -> Option<Pareto> {
    let with_gold: Vec<usize> =
        eval.objectives.iter().enumerate().filter(|(_, o)| o.gold_judge.is_some()).map(|(i, _)| i).take(2).collect();
    let &[x, y] = with_gold.as_slice() else { return None };
    let points: Vec<(String, f64, f64)> = eval
        .policies
        .iter()
        .filter_map(|p| Some((p.name.clone(), p.objectives.get(x)?.gold?, p.objectives.get(y)?.gold?)))
        .collect();
    let beats = |a: &(String, f64, f64), b: &(String, f64, f64)| a.1 >= b.1 && a.2 >= b.2 && (a.1 > b.1 || a.2 > b.2);
    let front = points.iter().filter(|p| !points.iter().any(|q| beats(q, p))).map(|p| p.0.clone()).collect();
    let reference = eval.reference.as_ref().and_then(|r| points.iter().find(|p| &p.0 == r));
    let dominate_reference = reference
        .map(|r| points.iter().filter(|p| p.1 > r.1 && p.2 > r.2).map(|p| p.0.clone()).collect())
        .unwrap_or_default();
    let axes = (eval.objectives[x].name.clone(), eval.objectives[y].name.clone());
    Some(Pareto { axes, points, front, dominate_reference })
}

/// What [`pareto`] found, as markdown lines.
fn pareto_lines(pareto: &Pareto, reference: Option<&str>) -> String {
    let list = |names: &[String]| if names.is_empty() { "none".to_string() } else { names.join(", ") };
    let mut s = format!(
        "Pareto front of {} gold and {} gold (no other policy is better in one without being worse in the other): {}.
",
        pareto.axes.0,
        pareto.axes.1,
        list(&pareto.front)
    );
    if let Some(reference) = reference {
        let _ = writeln!(
            s,
            "
Better than {reference} in both: {}.",
            list(&pareto.dominate_reference)
        );
    }
    s
}

fn details(eval: &Evaluation) -> String {
    let gold = eval.gold_judge.is_some();
    let head = [Some(column("policy", |p| p.name.clone())), gold.then(|| column("gold", |p| fmt(p.gold)))];
    let proxies = eval
        .reward_models
        .iter()
        .enumerate()
        .map(|(i, rm)| column(format!("proxy `{rm}`"), move |p| fmt(p.proxy.get(i).copied())));
    let rest = [
        column("KL", |p| fmt(p.kl)),
        column("perplexity", |p| fmt(p.perplexity)),
        column("length", |p| format!("{:.1}", p.length)),
        column("EOS rate", |p| format!("{:.2}", p.eos_rate)),
        column("distinct-1", |p| format!("{:.3}", p.distinct1)),
        column("distinct-2", |p| format!("{:.3}", p.distinct2)),
    ];
    table(eval, head.into_iter().chain(proxies.chain(rest).map(Some)))
}

/// Each stage's metric series by name: (step, value) points.
type StageSeries<'a> = BTreeMap<&'a str, BTreeMap<String, Vec<(f64, f64)>>>;
/// A plot: (file name, what it shows, PNG bytes).
type Plot = (String, String, Vec<u8>);

/// The plots.
fn draw_plots(
    eval: &Evaluation,
    stages: &StageSeries<'_>,
    overoptimisation: Option<&overopt::Overoptimisation>,
) -> Result<Vec<Plot>> {
    let mut out = Vec::new();
    for (stage, series) in stages {
        let panels: Vec<(String, Vec<Series>)> = series
            .iter()
            .filter(|(name, s)| s.len() > 1 && CURVE_KEYS.iter().any(|k| name.contains(k)))
            .take(MAX_PANELS)
            .map(|(name, s)| (name.clone(), vec![(name.clone(), s.clone())]))
            .collect();
        if !panels.is_empty() {
            let names: Vec<&str> = panels.iter().map(|p| p.0.as_str()).collect();
            let what = format!("{stage} training curves, one panel per metric against the step: {}", names.join(", "));
            out.push((format!("training_{stage}.png"), what, plots::curves(&panels)?));
        }
    }
    let gold = eval.gold_judge.is_some();
    let names: Vec<&str> = eval.policies.iter().map(|p| p.name.as_str()).collect();
    if gold {
        let by_index = |f: &dyn Fn(&PolicyResult) -> Option<f64>| -> Vec<(f64, f64)> {
            eval.policies.iter().enumerate().filter_map(|(i, p)| f(p).map(|v| (i as f64, v))).collect()
        };
        let gap = vec![(
            "proxy vs gold".to_string(),
            vec![("gold".to_string(), by_index(&|p| p.gold)), ("proxy".to_string(), by_index(&|p| eval.proxy(p)))],
        )];
        let what = format!("mean gold score (blue) and proxy reward (red) per policy, x = policy in the order {}; a widening gap is over-optimisation", names.join(", "));
        out.push(("proxy_vs_gold.png".into(), what, plots::points(&gap, "policy")?));
    }
    let at_kl = |f: &dyn Fn(&PolicyResult) -> Option<f64>| -> Vec<(f64, f64, String)> {
        eval.policies.iter().filter_map(|p| Some((p.kl?, f(p)?, p.name.clone()))).collect()
    };
    let policies: Vec<_> = gold
        .then(|| ("gold (policies)".to_string(), at_kl(&|p| p.gold)))
        .into_iter()
        .chain([("proxy (policies)".to_string(), at_kl(&|p| eval.proxy(p)))])
        .collect();
    let rewards = if gold { "gold score and proxy reward" } else { "proxy reward" };
    let mut what = format!(
        "reward against KL to the reference: each policy's {rewards} (large labelled markers: {})",
        names.join(", ")
    );
    let mut clouds = Vec::new();
    if let Some((_, kl)) = stages.get("ppo").and_then(|ppo| find(ppo, &["objective/kl", "kl"])) {
        let ppo = &stages["ppo"];
        // The proxy on the policies' scale: the raw reward-model score (the shaped score may be normalised).
        let proxy_key = if ppo.contains_key("objective/rm_score") { "objective/rm_score" } else { "objective/score" };
        for (key, label) in
            [("objective/gold", "gold"), (proxy_key, "proxy")].into_iter().filter(|&(_, label)| gold || label != "gold")
        {
            if let Some(series) = ppo.get(key) {
                let by_step: BTreeMap<u64, f64> = series.iter().map(|&(step, v)| (step as u64, v)).collect();
                let cloud: Vec<(f64, f64)> =
                    kl.iter().filter_map(|&(step, k)| Some((k, *by_step.get(&(step as u64))?))).collect();
                clouds.push((format!("PPO iterations: {label}"), cloud));
                what.push_str(&format!(
                    "; small markers: PPO's rollouts per iteration, `{key}` against `objective/kl`"
                ));
            }
        }
    }
    if policies.iter().any(|(_, s)| !s.is_empty()) {
        out.push((
            "frontier.png".into(),
            what,
            plots::scatter("reward vs KL", "KL to the reference (nats)", &clouds, &policies)?,
        ));
    }
    if let Some(analysis) = overoptimisation {
        let (what, png) = analysis.plot()?;
        out.push(("overoptimization.png".into(), what, png));
    }
    if let Some(pareto) = pareto(eval) {
        let (x, y) = &pareto.axes;
        let (front, rest): (Vec<_>, Vec<_>) = pareto.points.iter().partition(|p| pareto.front.contains(&p.0));
        let labelled =
            |points: Vec<&(String, f64, f64)>| points.into_iter().map(|(n, a, b)| (*a, *b, n.clone())).collect();
        let series =
            vec![("on the Pareto front".to_string(), labelled(front)), ("dominated".to_string(), labelled(rest))];
        let title = format!("{y} gold (y) vs {x} gold (x)");
        let what = format!(
            "each policy's mean {x} gold score (x) against its mean {y} gold score (y); blue: on the Pareto front ({}), red: dominated",
            pareto.front.join(", ")
        );
        out.push(("pareto.png".into(), what, plots::scatter(&title, &format!("{x} gold"), &[], &series)?));
    }
    for p in &eval.policies {
        let series = stage_series(&eval.run_dir, &p.name)?;
        let panels: Vec<(String, Vec<Series>)> = ["constraint/lambda", "constraint/cost", "constraint/satisfied"]
            .iter()
            .filter_map(|name| Some((name.to_string(), vec![(name.to_string(), series.get(*name)?.clone())])))
            .collect();
        if panels.len() == 3 {
            let what = format!(
                "{}'s constraint per PPO iteration: the Lagrange multiplier λ, the mean cost and the share of rollouts within the threshold",
                p.name
            );
            out.push((format!("constraint_{}.png", p.name.replace('/', "_")), what, plots::curves(&panels)?));
        }
    }
    Ok(out)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(rlhf_data::atomic::write_atomically(path, bytes)?)
}

/// A titled list of `items` (`empty` when there are none).
fn html_list(s: &mut String, title: &str, items: Vec<String>, empty: &str) {
    let _ = write!(s, "<h2>{title}</h2><ul>");
    if items.is_empty() {
        let _ = write!(s, "<li>{empty}</li>");
    }
    for item in items {
        let _ = write!(s, "<li>{item}</li>");
    }
    s.push_str("</ul>");
}

fn html(
    judges: &[String],
    markdown_tables: &[(&str, &str)],
    lists: Vec<(&str, Vec<String>)>,
    flags: &[String],
    plots: &[(String, String, Vec<u8>)],
) -> String {
    let mut s = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>rlhf-rs evaluation</title><style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px;text-align:right}td:first-child{text-align:left}</style></head><body><h1>rlhf-rs evaluation</h1>");
    html_list(&mut s, "Judges", judges.iter().map(|j| j.replace('`', "")).collect(), "none");
    for (title, table) in markdown_tables {
        let _ = write!(s, "<h2>{title}</h2><table>");
        for (i, line) in table.lines().enumerate().filter(|(i, _)| *i != 1) {
            let tag = if i == 0 { "th" } else { "td" };
            let cells: String = line
                .trim_matches('|')
                .split('|')
                .map(|c| format!("<{tag}>{}</{tag}>", c.trim().replace('`', "")))
                .collect();
            let _ = write!(s, "<tr>{cells}</tr>");
        }
        s.push_str("</table>");
    }
    for (title, items) in lists {
        html_list(&mut s, title, items, "none");
    }
    html_list(&mut s, "Flags", flags.iter().map(|f| f.replace("**", "")).collect(), "none");
    s.push_str("<h2>Plots</h2>");
    for (name, what, png) in plots {
        let data = base64::engine::general_purpose::STANDARD.encode(png);
        let _ = write!(s, "<h3>{name}</h3><p>{what}</p><img alt=\"{name}\" src=\"data:image/png;base64,{data}\">");
    }
    s.push_str("</body></html>\n");
    s
}

/// Writes the report files into `<run>/eval/`.
pub fn write_report(eval: &Evaluation, limits: &FlagConfig) -> Result<Written> {
    let dir = eval.run_dir.join("eval");
    std::fs::create_dir_all(&dir).map_err(|e| Error::Invalid(format!("{}: {e}", dir.display())))?;
    let mut stages = BTreeMap::new();
    for stage in STAGES {
        let series = stage_series(&eval.run_dir, stage)?;
        if !series.is_empty() {
            stages.insert(*stage, series);
        }
    }
    let flags = flags(eval, stages.get("ppo").unwrap_or(&BTreeMap::new()), limits);
    let overoptimisation = overopt::analyse(eval);
    let plots = draw_plots(eval, &stages, overoptimisation.as_ref())?;
    for (name, _, png) in &plots {
        write_file(&dir.join(name), png)?;
    }
    let table = headline(eval);
    let details = details(eval);
    let judges = judges(eval);
    let judge_list: String = judges.iter().map(|j| format!("- {j}\n")).collect();
    let win = if eval.gold_judge.is_some() {
        " Win rate: gold-judge wins over the reference (and over each extra baseline) on the same prompt (ties \
         count half), 95% bootstrap CI."
    } else {
        ""
    };
    let mut md = format!(
        "# Evaluation of {}\n\n{} held-out prompts, one sampled response per prompt and policy (same seed and settings). \
         KL: mean over responses of the summed log π(y|x) − log π_ref(y|x) over sampled tokens, reference `{}`.{win}\n\n\
         ## Judges\n\n{judge_list}\n## Headline\n\n{table}\n## All metrics\n\n{details}\n",
        eval.run_dir.display(),
        eval.prompts,
        eval.reference.as_deref().unwrap_or("none"),
    );
    let objectives = objectives_table(eval);
    if let Some(objectives) = &objectives {
        let _ = write!(md, "## Objectives\n\n{objectives}\n");
        if let Some(pareto) = pareto(eval) {
            let _ = writeln!(md, "{}", pareto_lines(&pareto, eval.reference.as_deref()));
        }
    }
    if let Some(analysis) = &overoptimisation {
        let _ = write!(md, "## Over-optimisation\n\n{}\n", analysis.markdown());
    }
    if let Some(feedback) = ai_feedback(eval) {
        let _ = write!(
            md,
            "## AI feedback\n\nThe AI judge measured against other judges on the pairs it labelled (agreement on the \
             pairs the other judge decides, 95% bootstrap CI; both orders consistent: the same verdict with A and B \
             swapped; mean p a: the mean P(first) over both orders, 0.5 without position bias), and Constitutional AI's \
             revisions against their initial answers.\n\n{feedback}\n"
        );
    }
    md.push_str("## Flags\n\n");
    if flags.is_empty() {
        md.push_str("No reward hacking or blow-up detected.\n");
    }
    for f in &flags {
        let _ = writeln!(md, "- {f}");
    }
    md.push_str("\n## Plots\n\n");
    if !plots::has_font() {
        md.push_str(
            "(No TrueType font was found, so the plots carry no text; the descriptions say what they show.)\n\n",
        );
    }
    for (name, what, _) in &plots {
        let _ = writeln!(md, "- [`{name}`]({name}): {what}.");
    }
    let wall_time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    write_records(dir.join("metrics.parquet"), &eval.metrics(wall_time))?;
    let html_path = dir.join("report.html");
    let overopt_table = overoptimisation.as_ref().map(overopt::Overoptimisation::table);
    let fits = overoptimisation.as_ref().map(|a| ("Over-optimisation fits", a.fit_lines()));
    write_file(
        &html_path,
        html(
            &judges,
            &[("Headline", table.as_str()), ("All metrics", details.as_str())]
                .into_iter()
                .chain(objectives.as_deref().map(|o| ("Objectives", o)))
                .chain(overopt_table.as_deref().map(|t| ("Over-optimisation", t)))
                .collect::<Vec<_>>(),
            fits.into_iter().collect(),
            &flags,
            &plots,
        )
        .as_bytes(),
    )?;
    let headline = format!("{table}\nJudges:\n{judge_list}");
    write_file(&dir.join("headline.md"), headline.as_bytes())?;
    let report = dir.join("report.md");
    write_file(&report, md.as_bytes())?;
    Ok(Written { report, html: html_path, headline, flags })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::NamedJudge;
    use crate::stats::MeanDiff;

    fn policy(name: &str, gold: f64, proxy: f64, distinct2: f64) -> PolicyResult {
        PolicyResult { distinct2, ..PolicyResult::scored(name, 1.0, gold, proxy) }
    }

    fn evaluation() -> Evaluation {
        Evaluation {
            run_dir: PathBuf::from("run"),
            reference: Some("sft".into()),
            baselines: Vec::new(),
            gold_judge: Some(NamedJudge { name: "gold".into(), description: "the rule".into() }),
            reward_models: vec!["rm/final".into()],
            sweep: Vec::new(),
            prompts: 10,
            policies: vec![
                policy("sft", 2.0, 0.0, 0.3),
                PolicyResult {
                    gold_vs_reference: Some(MeanDiff { diff: -0.5, low: -0.8, high: -0.2 }),
                    ..policy("ppo", 1.5, 1.0, 0.1)
                },
                policy("dpo", 3.0, 0.5, 0.25),
            ],
            objectives: Vec::new(),
            ai_feedback: Vec::new(),
        }
    }

    #[test]
    fn ai_feedback_reports_are_listed_per_judge() {
        let mut eval = evaluation();
        assert_eq!(ai_feedback(&eval), None);
        let report = serde_json::json!({
            "gold": { "pairs": 384, "agreement": 0.4614, "agreement_ci95": [0.41, 0.512], "mean_p_a": null },
        });
        eval.ai_feedback = vec![("data/comparisons.parquet.against.json".into(), report)];
        assert_eq!(
            ai_feedback(&eval).unwrap(),
            "- `data/comparisons.parquet` against `gold`: agreement 0.461, agreement ci95 [0.410, 0.512], mean p a n/a, pairs 384\n"
        );
    }

    /// PPO training in which the proxy score rose while the gold score fell.
    fn hacked_ppo() -> BTreeMap<String, Vec<(f64, f64)>> {
        BTreeMap::from([
            ("objective/score".into(), vec![(0.0, 0.0), (1.0, 1.0)]),
            ("objective/gold".into(), vec![(0.0, 1.0), (1.0, 0.5)]),
        ])
    }

    #[test]
    fn hacking_and_collapse_are_flagged_against_the_reference() {
        let flags = flags(&evaluation(), &hacked_ppo(), &FlagConfig::default());
        assert_eq!(flags.len(), 3, "{flags:?}");
        assert!(flags[0].starts_with("**ppo**: proxy reward rose") && flags[0].ends_with("reward hacking."));
        assert!(flags[1].starts_with("**ppo**: distinct-2 0.100 is under 0.5× the reference's 0.300"));
        assert!(
            flags[2].starts_with("**ppo training**: `objective/score` rose") && flags[2].ends_with("reward hacking.")
        );
    }

    #[test]
    fn a_gold_drop_within_the_noise_is_not_hacking() {
        let mut eval = evaluation();
        eval.policies[1].gold_vs_reference = Some(MeanDiff { diff: -0.5, low: -1.1, high: 0.1 });
        let flags = flags(&eval, &BTreeMap::new(), &FlagConfig::default());
        assert!(flags.iter().all(|f| !f.contains("reward hacking")), "{flags:?}");
    }

    #[test]
    fn the_tables_show_gold_only_with_a_gold_judge_and_the_judges_are_named() {
        let mut eval = evaluation();
        let with_gold = "| policy | gold | proxy | KL | win rate vs sft (95% CI) | length |\n|---|---|---|---|---|---|\n| sft | 2.000 | 0.000 | 1.000 | – | 20.0 |\n";
        assert!(headline(&eval).starts_with(with_gold), "{}", headline(&eval));
        assert_eq!(judges(&eval), ["gold: `gold` — the rule", "proxy: `rm:rm/final` (the headline's proxy)"]);

        let mut with_base = evaluation();
        with_base.baselines = vec!["base".into()];
        with_base.policies[1].wins_over_baselines = vec![Some(WinRate { rate: 0.75, low: 0.5, high: 0.875, n: 8 })];
        let table = headline(&with_base);
        assert!(table
            .starts_with("| policy | gold | proxy | KL | win rate vs sft (95% CI) | win rate vs base | length |\n"));
        assert!(table.contains("| ppo | 1.500 | 1.000 | 1.000 | – | 75.0% [50.0, 87.5] | 20.0 |"), "{table}");

        eval.gold_judge = None;
        eval.policies.iter_mut().for_each(|p| p.gold = None);
        let without = "| policy | proxy | KL | length |\n|---|---|---|---|\n| sft | 0.000 | 1.000 | 20.0 |\n| ppo | 1.000 | 1.000 | 20.0 |\n";
        assert!(headline(&eval).starts_with(without), "{}", headline(&eval));
        assert!(details(&eval).starts_with(
            "| policy | proxy `rm/final` | KL | perplexity | length | EOS rate | distinct-1 | distinct-2 |\n"
        ));
        assert_eq!(judges(&eval)[0], "gold: no gold judge configured: gold scores and win rates are not shown");
        let flags = flags(&eval, &hacked_ppo(), &FlagConfig::default());
        assert_eq!(flags.len(), 1, "no gold, so no gold-based hacking flag: {flags:?}");
        assert!(flags[0].starts_with("**ppo**: distinct-2"));
    }

    #[test]
    fn objectives_get_their_table_and_a_pareto_front() {
        use crate::report::{Objective, ObjectiveScore};
        let mut eval = evaluation();
        let judge = |name: &str| Some(NamedJudge { name: name.into(), description: "part".into() });
        eval.objectives = vec![
            Objective {
                name: "helpful".into(),
                gold_judge: judge("gold:helpful"),
                reward_model: Some("h/rm".into()),
                cost_max: None,
            },
            Objective {
                name: "harmless".into(),
                gold_judge: judge("gold:harmless"),
                reward_model: None,
                cost_max: Some(0.0),
            },
        ];
        let score = |gold, proxy, satisfied| ObjectiveScore { gold: Some(gold), proxy, satisfied };
        // sft (2, −1); ppo (3, −1.5) trades harm for help; dpo (2.5, −0.5) beats sft in both.
        let scores = [(2.0, -1.0, 0.4), (3.0, -1.5, 0.3), (2.5, -0.5, 0.9)];
        for (p, (h, r, s)) in eval.policies.iter_mut().zip(scores) {
            p.objectives = vec![score(h, Some(h / 2.0), None), score(r, None, Some(s))];
        }
        let table = objectives_table(&eval).unwrap();
        assert!(
            table.starts_with("| policy | helpful gold | helpful proxy | harmless gold | harmless: cost ≤ 0 |\n"),
            "{table}"
        );
        assert!(table.contains("| dpo | 2.500 | 1.250 | -0.500 | 90.0% |"), "{table}");
        let found = pareto(&eval).unwrap();
        assert_eq!(found.front, ["ppo", "dpo"]);
        assert_eq!(found.dominate_reference, ["dpo"]);
        assert!(pareto_lines(&found, Some("sft")).contains("Better than sft in both: dpo."));
        assert_eq!(judges(&eval)[3], "objective harmless: gold `gold:harmless` — part; no reward model");
        let mut metrics = eval.metrics(0.0).into_iter().map(|m| m.name);
        assert!(metrics.any(|m| m == "dpo/objective/harmless/satisfied"));
        eval.objectives.truncate(1);
        assert!(pareto(&eval).is_none(), "one objective has no front");
    }
}
