//! Writing an [`Evaluation`] out: `<run>/eval/report.md`, `headline.md` (the table the pipeline
//! prints), a self-contained `report.html` (plots inlined as base64 PNGs), `metrics.parquet` and the
//! PNG plots: the stages' training curves, proxy vs gold reward per policy, and the reward–KL frontier.
//! Reward hacking is flagged when proxy reward rises while gold falls, or length or KL explode.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rlhf_data::{read_records, write_records, Metric};

use crate::config::FlagConfig;
use crate::error::{Error, Result};
use crate::plots::{self, Series};
use crate::report::Evaluation;

/// Stages whose `metrics.parquet` the report plots.
pub const STAGES: &[&str] = &["base", "sft", "rm", "ppo", "dpo"];
/// Training metrics plotted: names containing one of these.
const CURVE_KEYS: &[&str] = &["reward", "score", "gold", "kl", "beta", "loss", "len"];
/// A stage's proxy-reward series: the first of these names found (then any name containing "reward").
const PROXY_KEYS: &[&str] = &["objective/score", "objective/rm_score", "reward"];
const MAX_PANELS: usize = 9;

/// What [`write_report`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    pub report: PathBuf,
    pub html: PathBuf,
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
            if let (Some(pp), Some(rp)) = (eval.proxy(p), eval.proxy(r)) {
                if pp > rp && p.gold < r.gold {
                    out.push(format!(
                        "**{}**: proxy reward rose ({rp:.3} → {pp:.3}) while gold fell ({:.3} → {:.3}) relative to {}: reward hacking.",
                        p.name, r.gold, p.gold, r.name
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
                out.push(format!("**{}**: mean length {:.1} tokens is over {}× the reference's {:.1}.", p.name, p.length, limits.length_ratio, r.length));
            }
        }
        if p.kl.is_some_and(|kl| kl > limits.max_kl) {
            out.push(format!("**{}**: KL to the reference {} nats exceeds {}.", p.name, fmt(p.kl), limits.max_kl));
        }
        if p.eos_rate < limits.min_eos_rate {
            out.push(format!("**{}**: only {:.0}% of responses end with eos (rambling or cut off).", p.name, 100.0 * p.eos_rate));
        }
    }
    let trend = |keys: &[&str]| find(ppo, keys).and_then(|(name, s)| Some((name.clone(), s.first()?.1, s.last()?.1)));
    if let (Some((rn, r0, r1)), Some((gn, g0, g1))) = (trend(PROXY_KEYS), trend(&["gold"])) {
        if r1 > r0 && g1 < g0 {
            out.push(format!("**ppo training**: `{rn}` rose ({r0:.3} → {r1:.3}) while `{gn}` fell ({g0:.3} → {g1:.3}): reward hacking."));
        }
    }
    if let Some((name, _, k1)) = trend(&["objective/kl", "kl"]).filter(|(_, _, k1)| *k1 > limits.max_kl) {
        out.push(format!("**ppo training**: `{name}` ended at {k1:.2}, above {}.", limits.max_kl));
    }
    out
}

/// The headline table: policy, gold, proxy, KL, win rate vs the reference, length.
pub fn headline(eval: &Evaluation) -> String {
    let reference = eval.reference.as_deref().unwrap_or("reference");
    let mut s = format!("| policy | gold | proxy | KL | win rate vs {reference} (95% CI) | length |\n|---|---|---|---|---|---|\n");
    for p in &eval.policies {
        let win = p.win.map_or("–".into(), |w| format!("{:.1}% [{:.1}, {:.1}]", 100.0 * w.rate, 100.0 * w.low, 100.0 * w.high));
        let _ = writeln!(s, "| {} | {:.3} | {} | {} | {win} | {:.1} |", p.name, p.gold, fmt(eval.proxy(p)), fmt(p.kl), p.length);
    }
    s
}

fn details(eval: &Evaluation) -> String {
    let rms: String = eval.reward_models.iter().map(|rm| format!(" proxy `{rm}` |")).collect();
    let mut s = format!(
        "| policy | gold |{rms} KL | perplexity | length | EOS rate | distinct-1 | distinct-2 |\n|---|---|{}---|---|---|---|---|---|\n",
        "---|".repeat(eval.reward_models.len())
    );
    for p in &eval.policies {
        let proxies: String = p.proxy.iter().map(|v| format!(" {v:.3} |")).collect();
        let _ = writeln!(
            s,
            "| {} | {:.3} |{proxies} {} | {} | {:.1} | {:.2} | {:.3} | {:.3} |",
            p.name, p.gold, fmt(p.kl), fmt(p.perplexity), p.length, p.eos_rate, p.distinct1, p.distinct2
        );
    }
    s
}

/// The plots: (file name, what it shows, PNG bytes).
fn draw_plots(eval: &Evaluation, stages: &BTreeMap<&str, BTreeMap<String, Vec<(f64, f64)>>>) -> Result<Vec<(String, String, Vec<u8>)>> {
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
    let by_index = |f: &dyn Fn(&crate::report::PolicyResult) -> Option<f64>| -> Vec<(f64, f64)> {
        eval.policies.iter().enumerate().filter_map(|(i, p)| f(p).map(|v| (i as f64, v))).collect()
    };
    let names: Vec<&str> = eval.policies.iter().map(|p| p.name.as_str()).collect();
    let gap = vec![(
        "proxy vs gold".to_string(),
        vec![("gold".to_string(), by_index(&|p| Some(p.gold))), ("proxy".to_string(), by_index(&|p| eval.proxy(p)))],
    )];
    let what = format!("mean gold score (blue) and proxy reward (red) per policy, x = policy in the order {}; a widening gap is over-optimisation", names.join(", "));
    out.push(("proxy_vs_gold.png".into(), what, plots::points(&gap, "policy")?));
    let at_kl = |f: &dyn Fn(&crate::report::PolicyResult) -> Option<f64>| -> Vec<(f64, f64, String)> {
        eval.policies.iter().filter_map(|p| Some((p.kl?, f(p)?, p.name.clone()))).collect()
    };
    let policies =
        vec![("gold (policies)".to_string(), at_kl(&|p| Some(p.gold))), ("proxy (policies)".to_string(), at_kl(&|p| eval.proxy(p)))];
    let mut what = format!("reward against KL to the reference: each policy's gold score and proxy reward (large labelled markers: {})", names.join(", "));
    let mut clouds = Vec::new();
    if let Some((_, kl)) = stages.get("ppo").and_then(|ppo| find(ppo, &["objective/kl", "kl"])) {
        let ppo = &stages["ppo"];
        for (key, label) in [("objective/gold", "gold"), ("objective/score", "proxy")] {
            if let Some(series) = ppo.get(key) {
                let by_step: BTreeMap<u64, f64> = series.iter().map(|&(step, v)| (step as u64, v)).collect();
                let cloud: Vec<(f64, f64)> = kl.iter().filter_map(|&(step, k)| Some((k, *by_step.get(&(step as u64))?))).collect();
                clouds.push((format!("PPO iterations: {label}"), cloud));
                what.push_str(&format!("; small markers: PPO's rollouts per iteration, `{key}` against `objective/kl`"));
            }
        }
    }
    if policies.iter().any(|(_, s)| !s.is_empty()) {
        out.push(("frontier.png".into(), what, plots::scatter("reward vs KL", "KL to the reference (nats)", &clouds, &policies)?));
    }
    Ok(out)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::Invalid(format!("{}: cannot write: {e}", path.display())))
}

fn html(markdown_tables: &[(&str, &str)], flags: &[String], plots: &[(String, String, Vec<u8>)]) -> String {
    let mut s = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>rlhf-rs evaluation</title><style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px;text-align:right}td:first-child{text-align:left}</style></head><body><h1>rlhf-rs evaluation</h1>");
    for (title, table) in markdown_tables {
        let _ = write!(s, "<h2>{title}</h2><table>");
        for (i, line) in table.lines().enumerate().filter(|(i, _)| *i != 1) {
            let tag = if i == 0 { "th" } else { "td" };
            let cells: String = line.trim_matches('|').split('|').map(|c| format!("<{tag}>{}</{tag}>", c.trim().replace('`', ""))).collect();
            let _ = write!(s, "<tr>{cells}</tr>");
        }
        s.push_str("</table>");
    }
    s.push_str("<h2>Flags</h2><ul>");
    for f in flags {
        let _ = write!(s, "<li>{}</li>", f.replace("**", ""));
    }
    if flags.is_empty() {
        s.push_str("<li>none</li>");
    }
    s.push_str("</ul><h2>Plots</h2>");
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
    let plots = draw_plots(eval, &stages)?;
    for (name, _, png) in &plots {
        write_file(&dir.join(name), png)?;
    }
    let headline = headline(eval);
    let details = details(eval);
    let mut md = format!(
        "# Evaluation of {}\n\n{} held-out prompts, one sampled response per prompt and policy (same seed and settings). \
         Gold: the embedded task's judge. Proxy: reward model `{}`. KL: mean over responses of the summed \
         log π(y|x) − log π_ref(y|x) over sampled tokens, reference `{}`. Win rate: gold-judge wins over the reference \
         on the same prompt (ties count half), 95% bootstrap CI.\n\n## Headline\n\n{headline}\n## All metrics\n\n{details}\n## Flags\n\n",
        eval.run_dir.display(),
        eval.prompts,
        eval.reward_models.first().map_or("none", String::as_str),
        eval.reference.as_deref().unwrap_or("none"),
    );
    if flags.is_empty() {
        md.push_str("No reward hacking or blow-up detected.\n");
    }
    for f in &flags {
        let _ = writeln!(md, "- {f}");
    }
    md.push_str("\n## Plots\n\n");
    if !plots::has_font() {
        md.push_str("(No TrueType font was found, so the plots carry no text; the descriptions say what they show.)\n\n");
    }
    for (name, what, _) in &plots {
        let _ = writeln!(md, "- [`{name}`]({name}): {what}.");
    }
    let wall_time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    write_records(dir.join("metrics.parquet"), &eval.metrics(wall_time))?;
    let html_path = dir.join("report.html");
    write_file(&html_path, html(&[("Headline", &headline), ("All metrics", &details)], &flags, &plots).as_bytes())?;
    write_file(&dir.join("headline.md"), headline.as_bytes())?;
    let report = dir.join("report.md");
    write_file(&report, md.as_bytes())?;
    Ok(Written { report, html: html_path, headline, flags })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::PolicyResult;

    fn policy(name: &str, gold: f64, proxy: f64, distinct2: f64) -> PolicyResult {
        PolicyResult {
            name: name.into(),
            gold,
            proxy: vec![proxy],
            kl: Some(1.0),
            perplexity: None,
            length: 20.0,
            eos_rate: 1.0,
            distinct1: 0.1,
            distinct2,
            win: None,
        }
    }

    #[test]
    fn hacking_and_collapse_are_flagged_against_the_reference() {
        let eval = Evaluation {
            run_dir: PathBuf::from("run"),
            reference: Some("sft".into()),
            reward_models: vec!["rm/final".into()],
            prompts: 10,
            policies: vec![policy("sft", 2.0, 0.0, 0.3), policy("ppo", 1.5, 1.0, 0.1), policy("dpo", 3.0, 0.5, 0.25)],
        };
        let flags = flags(&eval, &BTreeMap::new(), &FlagConfig::default());
        assert_eq!(flags.len(), 2, "{flags:?}");
        assert!(flags[0].starts_with("**ppo**: proxy reward rose") && flags[0].ends_with("reward hacking."));
        assert!(flags[1].starts_with("**ppo**: distinct-2 0.100 is under 0.5× the reference's 0.300"));
    }
}
