//! `rlhf-eval report`: every policy found in a run directory answers the same held-out prompts (one
//! seeded sample each, same settings), then per policy: proxy reward of each reward model, KL to the
//! reference (mean over responses of the summed sampled-token `log π − log π_ref`), held-out
//! perplexity, length, EOS rate, distinct-1/2 and, with a gold judge, its mean score and the gold win
//! rate over the reference with a bootstrap CI; with `[[objectives]]`, each objective's gold and
//! proxy score and its constraint's satisfaction rate. [`write_report`] turns the result into
//! `<run>/eval/`'s files.

use std::path::{Path, PathBuf};

use rlhf_data::{read_records, Demonstration, Judge, Metric, Prompt, PromptText};
use rlhf_model::Placement;

use crate::config::EvalConfig;
use crate::generate::{sample_tokens, write_samples, Sample, SampleConfig, TokenSample};
use crate::score::{encode_pairs, load_policy, proxy_rewards, response_logprobs};
use crate::stats::{distinct_n, mean, paired_mean_diff, win_rate, MeanDiff, WinRate};
use crate::{Error, Result};
use rlhf_train::judges::scores;
use rlhf_train::stage::{StageDir, StageLock};

/// One policy's results.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyResult {
    pub name: String,
    /// Mean gold-judge score; `None` without a gold judge.
    pub gold: Option<f64>,
    /// Mean proxy reward per reward model (in [`Evaluation::reward_models`] order).
    pub proxy: Vec<f64>,
    /// KL to the reference (nats per response); `None` without a reference.
    pub kl: Option<f64>,
    pub perplexity: Option<f64>,
    /// Mean response length in tokens (eos excluded).
    pub length: f64,
    pub eos_rate: f64,
    pub distinct1: f64,
    pub distinct2: f64,
    /// Gold win rate over the reference; `None` for the reference itself, without one or without a
    /// gold judge.
    pub win: Option<WinRate>,
    /// Gold win rate over each of [`Evaluation::baselines`] (`None` for the baseline itself).
    pub wins_over_baselines: Vec<Option<WinRate>>,
    /// Paired-bootstrap mean gold difference to the reference (`None` where `win` is).
    pub gold_vs_reference: Option<MeanDiff>,
    /// For a policy of the sweep further from the reference (higher KL) than the sweep's policy of
    /// highest gold, the peak: its name and the paired-bootstrap mean gold difference to it.
    pub gold_vs_peak: Option<(String, MeanDiff)>,
    /// Scores per objective (in [`Evaluation::objectives`] order).
    pub objectives: Vec<ObjectiveScore>,
}

impl PolicyResult {
    /// A policy with these scores and plain defaults elsewhere (for tests of what reads results).
    #[cfg(test)]
    pub(crate) fn scored(name: &str, kl: f64, gold: f64, proxy: f64) -> Self {
        PolicyResult {
            name: name.into(),
            gold: Some(gold),
            proxy: vec![proxy],
            kl: Some(kl),
            perplexity: None,
            length: 20.0,
            eos_rate: 1.0,
            distinct1: 0.1,
            distinct2: 0.3,
            win: None,
            wins_over_baselines: Vec::new(),
            gold_vs_reference: None,
            gold_vs_peak: None,
            objectives: Vec::new(),
        }
    }
}

/// A policy's scores by one objective.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ObjectiveScore {
    /// Mean of the objective's gold judge; `None` without one.
    pub gold: Option<f64>,
    /// Mean of the objective's reward model; `None` without one.
    pub proxy: Option<f64>,
    /// Share of prompts whose response's gold cost (the gold score negated) is at most the
    /// objective's `cost_max`; `None` without a constraint or a gold judge.
    pub satisfied: Option<f64>,
}

/// An objective as the report shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Objective {
    pub name: String,
    pub gold_judge: Option<NamedJudge>,
    /// The reward-model directory found (relative to the run directory).
    pub reward_model: Option<String>,
    pub cost_max: Option<f64>,
}

/// A judge as the report names it.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedJudge {
    /// Its tag (`gold`, `sim:<name>`, `rm:<dir>` ...).
    pub name: String,
    /// One line saying what it is.
    pub description: String,
}

/// Everything the report shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub run_dir: PathBuf,
    pub reference: Option<String>,
    /// The extra win-rate baselines that were evaluated (`baselines` of the config, minus the
    /// reference and those not found); empty without a gold judge.
    pub baselines: Vec<String>,
    /// The judge whose scores are gold; `None` without one (no gold scores or win rates).
    pub gold_judge: Option<NamedJudge>,
    /// Reward-model directories found (relative to the run directory).
    pub reward_models: Vec<String>,
    /// The policies of [`EvalConfig::sweep`] that were evaluated, in its order.
    pub sweep: Vec<String>,
    pub prompts: usize,
    pub policies: Vec<PolicyResult>,
    pub objectives: Vec<Objective>,
    /// The AI-feedback reports found ([`EvalConfig::ai_feedback`]): path and content.
    pub ai_feedback: Vec<(String, serde_json::Value)>,
}

impl Evaluation {
    pub fn policy(&self, name: &str) -> Option<&PolicyResult> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The first reward model's proxy reward of a policy.
    pub fn proxy(&self, policy: &PolicyResult) -> Option<f64> {
        policy.proxy.first().copied()
    }

    /// Long-format metrics (stage `eval`, step 0, `<policy>/<metric>`).
    pub fn metrics(&self, wall_time: f64) -> Vec<Metric> {
        let mut out = Vec::new();
        for p in &self.policies {
            let mut push = |name: &str, value: f64| {
                out.push(Metric { stage: "eval".into(), step: 0, name: format!("{}/{name}", p.name), value, wall_time })
            };
            p.gold.into_iter().for_each(|v| push("gold", v));
            for (rm, v) in self.reward_models.iter().zip(&p.proxy) {
                push(&format!("proxy/{rm}"), *v);
            }
            p.kl.into_iter().for_each(|v| push("kl", v));
            p.perplexity.into_iter().for_each(|v| push("perplexity", v));
            push("length", p.length);
            push("eos_rate", p.eos_rate);
            push("distinct1", p.distinct1);
            push("distinct2", p.distinct2);
            if let Some(w) = p.win {
                push("win_rate", w.rate);
                push("win_rate_low", w.low);
                push("win_rate_high", w.high);
            }
            for (objective, score) in self.objectives.iter().zip(&p.objectives) {
                let name = |what: &str| format!("objective/{}/{what}", objective.name);
                score.gold.into_iter().for_each(|v| push(&name("gold"), v));
                score.proxy.into_iter().for_each(|v| push(&name("proxy"), v));
                score.satisfied.into_iter().for_each(|v| push(&name("satisfied"), v));
            }
            for (baseline, w) in self.baselines.iter().zip(&p.wins_over_baselines) {
                if let Some(w) = w {
                    push(&format!("win_rate_vs/{baseline}"), w.rate);
                    push(&format!("win_rate_vs/{baseline}_low"), w.low);
                    push(&format!("win_rate_vs/{baseline}_high"), w.high);
                }
            }
        }
        out
    }
}

/// A policy's samples, kept until every model has scored them.
struct Sampled {
    name: String,
    dir: PathBuf,
    rows: Vec<TokenSample>,
    logprobs: Vec<f64>,
    perplexity: Option<f64>,
}

fn first_n<T>(mut rows: Vec<T>, n: usize) -> Vec<T> {
    if n > 0 {
        rows.truncate(n);
    }
    rows
}

/// The checkpoint directory of a policy, when the run has one.
pub fn policy_dir(run_dir: &Path, name: &str) -> Option<PathBuf> {
    let dir = run_dir.join(name).join("final");
    dir.join("config.json").is_file().then_some(dir)
}

/// `names` with each pattern whose first path component holds one `*` (e.g. `round-*/ppo`, the
/// rounds of iterative RLHF) replaced by the run directory's matches, in numeric order of the part
/// the `*` stands for.
pub fn expand_policy_names(run_dir: &Path, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        let (first, rest) = name.split_once('/').map_or((name.as_str(), None), |(f, r)| (f, Some(r)));
        let Some((prefix, suffix)) = first.split_once('*') else {
            out.push(name.clone());
            continue;
        };
        let mut matches: Vec<(String, String)> = std::fs::read_dir(run_dir)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter_map(|dir| {
                let star = dir.strip_prefix(prefix)?.strip_suffix(suffix)?.to_string();
                Some((star, dir))
            })
            .collect();
        matches.sort_by_key(|(star, _)| (star.parse::<u64>().unwrap_or(u64::MAX), star.clone()));
        out.extend(matches.into_iter().map(|(_, dir)| rest.map_or(dir.clone(), |rest| format!("{dir}/{rest}"))));
    }
    out
}

/// Evaluates the policies of `run_dir`, with `gold_judge` (normally [`EvalConfig::gold_judge()`]'s)
/// scoring gold. Once its inputs are checked it takes the writer's lock on `<run>/eval/` (returned:
/// hold it while the report is written) and writes `config.toml` and each policy's responses
/// (`responses_<policy>.parquet`) there.
pub fn evaluate(
    run_dir: &Path,
    config: &EvalConfig,
    gold_judge: Option<&dyn Judge>,
    placement: Placement,
) -> Result<(Evaluation, StageLock)> {
    if config.generation.temperature.is_nan() || config.generation.temperature <= 0.0 {
        return Err(Error::Invalid(format!(
            "generation.temperature = {}: the report needs a sampling temperature > 0 (its KL is of the sampling distribution)",
            config.generation.temperature
        )));
    }
    let objective_judges = config.objective_judges()?;
    let ai_feedback = ai_feedback_reports(run_dir, &config.ai_feedback)?;
    let prompts_path = run_dir.join(&config.data.prompts);
    let prompts: Vec<Prompt> = first_n(read_records(&prompts_path)?, config.data.num_prompts);
    if prompts.is_empty() {
        return Err(Error::Invalid(format!("{}: has no prompts", prompts_path.display())));
    }
    let demos_path = run_dir.join(&config.data.demonstrations);
    let demos: Vec<Demonstration> = if config.data.demonstrations.is_empty() || !demos_path.is_file() {
        Vec::new()
    } else {
        first_n(read_records(&demos_path)?, config.data.num_demonstrations)
    };
    let found: Vec<(String, PathBuf)> = expand_policy_names(run_dir, &config.policies)
        .into_iter()
        .filter_map(|name| policy_dir(run_dir, &name).map(|d| (name, d)))
        .collect();
    if found.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no policy to evaluate (looked for {}/final)",
            run_dir.display(),
            config.policies.join("|")
        )));
    }
    let sample_config = SampleConfig {
        samples_per_prompt: 1,
        temperature: config.generation.temperature,
        top_p: config.generation.top_p,
        max_new_tokens: config.generation.max_new_tokens,
        seed: config.seed,
        batch_size: config.generation.batch_size,
        ..SampleConfig::default()
    };
    let stage = StageDir::new(run_dir, "eval");
    let writer = stage.begin(config)?;
    let eval_dir = stage.root;
    let temperature = config.generation.temperature;
    let mut sampled = Vec::new();
    for (name, dir) in found {
        let _span = tracing::info_span!("policy", name = name.as_str()).entered();
        let (model, tokenizer) = load_policy(&dir, placement, config.generation.chat_template)?;
        // Every policy samples with the report's settings; only its end tokens are its own.
        let ends = rlhf_model::GenerationDefaults::from_dir(&dir)?.eos_token_ids();
        let rows = sample_tokens(
            &model,
            &tokenizer,
            &prompts,
            &SampleConfig { extra_eos_token_ids: ends, ..sample_config.clone() },
        )?;
        let pairs: Vec<(Vec<i64>, Vec<i64>)> =
            rows.iter().map(|r| (r.prompt_tokens.clone(), r.tokens.clone())).collect();
        let logprobs = response_logprobs(&model, tokenizer.pad_id(), &pairs, config.batch_size, temperature)?;
        let perplexity = if demos.is_empty() {
            None
        } else {
            let texts: Vec<(&Demonstration, &str)> = demos.iter().map(|d| (d, d.response.as_str())).collect();
            let scored = response_logprobs(
                &model,
                tokenizer.pad_id(),
                &encode_pairs(&tokenizer, &texts)?,
                config.batch_size,
                1.0,
            )?;
            let (nll, count) = scored.iter().fold((0.0, 0u64), |(s, c), (lp, n)| (s - lp, c + u64::from(*n)));
            Some((nll / count.max(1) as f64).exp())
        };
        let samples: Vec<Sample> = rows
            .iter()
            .map(|r| {
                let p = &prompts[r.prompt_index];
                Sample { id: p.id.clone(), prompt: PromptText::of(p), response: r.text.clone(), sample: r.sample }
            })
            .collect();
        write_samples(&eval_dir.join(format!("responses_{}.parquet", name.replace('/', "_"))), &samples)?;
        tracing::info!(policy = name.as_str(), rows = rows.len(), "sampled");
        sampled.push(Sampled { name, dir, rows, logprobs: logprobs.into_iter().map(|l| l.0).collect(), perplexity });
    }

    // KL: the reference scores every other policy's samples.
    let reference = sampled.iter().position(|s| s.name == config.reference);
    let mut kls: Vec<Option<f64>> = vec![None; sampled.len()];
    if let Some(r) = reference {
        let (model, tokenizer) = load_policy(&sampled[r].dir, placement, config.generation.chat_template)?;
        for (i, s) in sampled.iter().enumerate() {
            kls[i] = Some(if i == r {
                0.0
            } else {
                let pairs: Vec<(Vec<i64>, Vec<i64>)> =
                    s.rows.iter().map(|r| (r.prompt_tokens.clone(), r.tokens.clone())).collect();
                let ref_lp = response_logprobs(&model, tokenizer.pad_id(), &pairs, config.batch_size, temperature)?;
                mean(s.logprobs.iter().zip(&ref_lp).map(|(lp, (rl, _))| lp - rl))
            });
        }
    }

    // Gold and proxy rewards.
    let text_pairs: Vec<Vec<(&str, &str)>> = sampled
        .iter()
        .map(|s| s.rows.iter().map(|r| (prompts[r.prompt_index].prompt.as_str(), r.text.as_str())).collect())
        .collect();
    let gold: Option<Vec<Vec<f64>>> =
        gold_judge.map(|judge| text_pairs.iter().map(|pairs| scores(judge, pairs)).collect()).transpose()?;
    let reward_models: Vec<String> =
        config.reward_models.iter().filter(|rm| run_dir.join(rm).is_dir()).cloned().collect();
    let all: Vec<(&Prompt, &str)> =
        sampled.iter().flat_map(|s| s.rows.iter().map(|r| (&prompts[r.prompt_index], r.text.as_str()))).collect();
    // A reward model's mean score of each policy's responses.
    let policy_means = |rm: &str| -> Result<Vec<f64>> {
        let scores =
            proxy_rewards(&run_dir.join(rm), &all, config.batch_size, config.generation.chat_template, placement)?;
        let mut offset = 0;
        Ok(text_pairs
            .iter()
            .map(|pairs| {
                offset += pairs.len();
                mean(scores[offset - pairs.len()..offset].iter().copied())
            })
            .collect())
    };
    let mut proxy: Vec<Vec<f64>> = vec![Vec::new(); sampled.len()];
    for rm in &reward_models {
        for (i, m) in policy_means(rm)?.into_iter().enumerate() {
            proxy[i].push(m);
        }
    }
    let mut objectives = Vec::new();
    let mut objective_scores: Vec<Vec<ObjectiveScore>> = vec![Vec::new(); sampled.len()];
    for (objective, judge) in config.objectives.iter().zip(&objective_judges) {
        let reward_model = Some(&objective.reward_model).filter(|rm| !rm.is_empty() && run_dir.join(rm).is_dir());
        // A reward model the report already scored is not scored again.
        let proxies = match reward_model {
            None => None,
            Some(rm) => Some(match reward_models.iter().position(|r| r == rm) {
                Some(k) => proxy.iter().map(|p| p[k]).collect(),
                None => policy_means(rm)?,
            }),
        };
        for (i, pairs) in text_pairs.iter().enumerate() {
            let gold = judge.as_deref().map(|judge| scores(judge, pairs)).transpose()?;
            let satisfied = gold
                .as_ref()
                .zip(objective.cost_max)
                .map(|(gold, cost_max)| mean(gold.iter().map(|&g| f64::from(u8::from(-g <= cost_max)))));
            objective_scores[i].push(ObjectiveScore {
                gold: gold.map(mean),
                proxy: proxies.as_ref().map(|p| p[i]),
                satisfied,
            });
        }
        objectives.push(Objective {
            name: objective.name.clone(),
            gold_judge: judge.as_deref().map(|j| NamedJudge { name: j.name(), description: j.description() }),
            reward_model: reward_model.cloned(),
            cost_max: objective.cost_max,
        });
    }

    let baselines: Vec<usize> = match gold {
        None => Vec::new(),
        Some(_) => config
            .baselines
            .iter()
            .filter(|name| **name != config.reference)
            .filter_map(|name| sampled.iter().position(|s| &s.name == name))
            .collect(),
    };
    // The gold peak: the sweep's policy of highest mean gold.
    let mean_gold = |i: usize| gold.as_ref().map(|gold| mean(gold[i].iter().copied()));
    let sweep: Vec<usize> =
        config.sweep.iter().filter_map(|name| sampled.iter().position(|s| &s.name == name)).collect();
    let peak = sweep
        .iter()
        .copied()
        .filter(|&i| Some(i) != reference && kls[i].is_some())
        .filter_map(|i| Some((i, mean_gold(i)?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i);
    let policies = sampled
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let texts: Vec<&str> = s.rows.iter().map(|r| r.text.as_str()).collect();
            let win = gold
                .as_ref()
                .zip(reference.filter(|&r| r != i))
                .and_then(|(gold, r)| win_rate(&gold[i], &gold[r], config.bootstrap, config.seed));
            let wins_over_baselines = baselines
                .iter()
                .map(|&b| {
                    let gold = gold.as_ref().filter(|_| b != i)?;
                    win_rate(&gold[i], &gold[b], config.bootstrap, config.seed)
                })
                .collect();
            let gold_vs_reference = gold
                .as_ref()
                .zip(reference.filter(|&r| r != i))
                .and_then(|(gold, r)| paired_mean_diff(&gold[i], &gold[r], config.bootstrap, config.seed));
            let gold_vs_peak =
                gold.as_ref()
                    .zip(peak.filter(|&k| {
                        sweep.contains(&i) && kls[i].zip(kls[k]).is_some_and(|(own, at_peak)| own > at_peak)
                    }))
                    .and_then(|(gold, k)| {
                        let diff = paired_mean_diff(&gold[i], &gold[k], config.bootstrap, config.seed)?;
                        Some((sampled[k].name.clone(), diff))
                    });
            PolicyResult {
                name: s.name.clone(),
                gold: mean_gold(i),
                proxy: proxy[i].clone(),
                kl: kls[i],
                perplexity: s.perplexity,
                length: mean(s.rows.iter().map(|r| (r.tokens.len() - usize::from(r.eos)) as f64)),
                eos_rate: mean(s.rows.iter().map(|r| f64::from(u8::from(r.eos)))),
                distinct1: distinct_n(&texts, 1),
                distinct2: distinct_n(&texts, 2),
                win,
                wins_over_baselines,
                gold_vs_reference,
                gold_vs_peak,
                objectives: objective_scores[i].clone(),
            }
        })
        .collect();
    let evaluation = Evaluation {
        run_dir: run_dir.to_path_buf(),
        reference: reference.map(|r| sampled[r].name.clone()),
        baselines: baselines.iter().map(|&b| sampled[b].name.clone()).collect(),
        gold_judge: gold_judge.map(|judge| NamedJudge { name: judge.name(), description: judge.description() }),
        reward_models,
        sweep: sweep.iter().map(|&i| sampled[i].name.clone()).collect(),
        prompts: prompts.len(),
        policies,
        objectives,
        ai_feedback,
    };
    Ok((evaluation, writer))
}

/// The AI-feedback reports of `paths` (relative to `run_dir`) that exist, parsed.
fn ai_feedback_reports(run_dir: &Path, paths: &[String]) -> Result<Vec<(String, serde_json::Value)>> {
    let mut reports = Vec::new();
    for path in paths {
        let file = run_dir.join(path);
        if !file.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
        let report = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: not an rlhf-judge report: {e}", file.display())))?;
        reports.push((path.clone(), report));
    }
    Ok(reports)
}
