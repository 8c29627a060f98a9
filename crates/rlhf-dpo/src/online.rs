//! Online / iterative DPO: each round samples two responses per prompt from the current policy and
//! has them labelled, by the embedded task's simulated annotators or by a reward model.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rlhf_data::{ChatMessage, Comparison, Judge, Prompt};
use rlhf_model::{generate_from_tokens, CausalLm, ChatMode, GenerationConfig, Placement, RewardModel, Tokenizer};
use rlhf_task::{Objective, Panel};
use rlhf_train::TrainRng;

use crate::config::{Labeler, OnlineConfig};
use crate::{Error, Result};

/// `(id, prompt, response a, response b)`: what annotators are shown.
pub type SampledPair = (String, String, String, String);

/// What labelling a round gave, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RoundStats {
    /// Labelled pairs.
    pub pairs: usize,
    /// Pairs dropped: both responses the same text (or, for a reward model, the same score).
    pub dropped: usize,
    /// Mean score of the sampled responses under the configured `gold_judge` (none without one).
    pub gold_score: Option<f64>,
    /// Share of labels that agree with the gold judge (simulated annotators only).
    pub gold_agreement: Option<f64>,
    /// Mean reward-model score of the sampled responses (reward-model labelling only; an ensemble's
    /// members normalised and combined as `rlhf-reward` wrote them).
    pub reward: Option<f64>,
}

/// The prompts of `round` (1-based): a seeded permutation, `per_round` at a time, cycling.
pub fn round_prompts(prompts: &[Prompt], per_round: usize, round: usize, seed: u64) -> Vec<&Prompt> {
    let mut order: Vec<&Prompt> = prompts.iter().collect();
    order.shuffle(&mut TrainRng::seed_from_u64(seed));
    let start = (round - 1) * per_round;
    (start..start + per_round).map(|i| order[i % order.len()]).collect()
}

/// Two sampled responses per prompt (prompts keep their last `max_prompt_len` tokens).
pub fn sample_pairs(
    policy: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[&Prompt],
    config: &OnlineConfig,
    max_prompt_len: usize,
    seed: u64,
) -> Result<Vec<SampledPair>> {
    let mut out = Vec::with_capacity(prompts.len());
    let mut cut = 0;
    for (i, chunk) in prompts.chunks(config.batch_size).enumerate() {
        let mut prompt_ids = tokenizer.encode_generation_prompts(chunk)?;
        cut += rlhf_model::keep_last_tokens(&mut prompt_ids, max_prompt_len);
        let ids: Vec<Vec<i64>> = prompt_ids.into_iter().flat_map(|tokens| [tokens.clone(), tokens]).collect();
        let generation = GenerationConfig {
            max_new_tokens: config.max_new_tokens,
            do_sample: true,
            temperature: config.temperature,
            top_k: config.top_k,
            top_p: config.top_p,
            eos_token_ids: vec![tokenizer.eos_id()],
            pad_token_id: tokenizer.pad_id(),
            seed: seed.wrapping_add(i as u64),
            use_cache: true,
        };
        let rows = generate_from_tokens(policy, &ids, &generation)?.rows()?;
        for (prompt, two) in chunk.iter().zip(rows.chunks(2)) {
            let a = tokenizer.decode(&two[0], true)?;
            let b = tokenizer.decode(&two[1], true)?;
            out.push((prompt.id.clone(), prompt.prompt.clone(), a, b));
        }
    }
    if cut > 0 {
        tracing::warn!(cut, max_prompt_len, "prompts longer than data.max_prompt_len keep their last tokens");
    }
    Ok(out)
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

/// Labels sampled pairs of `prompts` (one pair per prompt, in order) with the configured labeller;
/// `source` tags the comparisons, which keep their prompt's conversation; `gold` (the configured
/// gold judge) scores the samples for the round's metrics; a reward-model labeller reads them in
/// chat mode `chat`.
#[allow(clippy::too_many_arguments)]
pub fn label(
    config: &OnlineConfig,
    prompts: &[&Prompt],
    samples: &[SampledPair],
    chat: ChatMode,
    placement: Placement,
    seed: u64,
    source: &str,
    gold: Option<&dyn Judge>,
) -> Result<(Vec<Comparison>, RoundStats)> {
    let gold_score = match gold {
        Some(judge) => {
            let items: Vec<(&str, &str)> =
                samples.iter().flat_map(|(_, p, a, b)| [(p.as_str(), a.as_str()), (p.as_str(), b.as_str())]).collect();
            judge.score(&items)?.map(|scores| mean(scores.into_iter()))
        }
        None => None,
    };
    let (mut comparisons, mut stats) = match config.labeler {
        Labeler::Panel => {
            let (comparisons, label) = Panel::default().label_pairs(Objective::OVERALL, seed, samples);
            let stats = RoundStats {
                dropped: label.identical,
                gold_agreement: Some(label.gold_agreement),
                ..RoundStats::default()
            };
            (comparisons, stats)
        }
        Labeler::RewardModel => {
            label_with_reward_model(&config.reward_model, prompts, samples, chat, placement, config.batch_size)?
        }
        Labeler::AiJudge => label_with_ai_judge(&config.ai_judge, samples, placement, gold)?,
    };
    let conversations: std::collections::HashMap<&str, &Option<Vec<ChatMessage>>> =
        prompts.iter().map(|prompt| (prompt.id.as_str(), &prompt.prompt_messages)).collect();
    for comparison in &mut comparisons {
        comparison.source = Some(source.to_string());
        comparison.prompt_messages = conversations.get(comparison.id.as_str()).and_then(|turns| (*turns).clone());
    }
    stats.pairs = comparisons.len();
    stats.gold_score = gold_score;
    Ok((comparisons, stats))
}

/// The AI judge's comparisons of `samples` (undecided and identical pairs dropped) and, with a gold
/// judge, how often gold agrees with its choices.
fn label_with_ai_judge(
    spec: &rlhf_judge::JudgeSpec,
    samples: &[SampledPair],
    placement: Placement,
    gold: Option<&dyn Judge>,
) -> Result<(Vec<Comparison>, RoundStats)> {
    let judge = spec.build(placement).map_err(|e| Error::Invalid(format!("online.ai_judge: {e}")))?;
    let distinct: Vec<SampledPair> = samples.iter().filter(|(_, _, a, b)| a != b).cloned().collect();
    let items: Vec<(&str, &str, &str)> =
        distinct.iter().map(|(_, p, a, b)| (p.as_str(), a.as_str(), b.as_str())).collect();
    let verdicts = judge.verdicts(&items).map_err(|e| Error::Invalid(format!("online.ai_judge: {e}")))?;
    let (comparisons, _) = rlhf_judge::comparisons(&distinct, &verdicts, &judge.name());
    let gold_agreement = match gold {
        Some(gold) if !comparisons.is_empty() => {
            let pairs: Vec<(&str, &str)> = comparisons
                .iter()
                .flat_map(|c| [(c.prompt.as_str(), c.chosen.as_str()), (c.prompt.as_str(), c.rejected.as_str())])
                .collect();
            gold.score(&pairs)?.map(|scores| {
                let agreed = scores.chunks(2).filter(|s| s[0] > s[1]).count();
                agreed as f64 / comparisons.len() as f64
            })
        }
        _ => None,
    };
    let stats = RoundStats { dropped: samples.len() - comparisons.len(), gold_agreement, ..RoundStats::default() };
    Ok((comparisons, stats))
}

fn label_with_reward_model(
    dir: &Path,
    prompts: &[&Prompt],
    samples: &[SampledPair],
    chat: ChatMode,
    placement: Placement,
    batch_size: usize,
) -> Result<(Vec<Comparison>, RoundStats)> {
    let mut model = RewardModel::load_as(dir, placement.device, placement.kind)?.with_chat_mode(chat);
    model.batch_size = 2 * batch_size;
    let texts: Vec<(&Prompt, &str)> =
        prompts.iter().zip(samples).flat_map(|(&p, (_, _, a, b))| [(p, a.as_str()), (p, b.as_str())]).collect();
    let scores: Vec<f64> = model.score(&texts)?.into_iter().map(f64::from).collect();
    let mut comparisons = Vec::with_capacity(samples.len());
    for ((id, prompt, a, b), score) in samples.iter().zip(scores.chunks(2)) {
        if a == b || score[0] == score[1] {
            continue;
        }
        let (chosen, rejected, margin) =
            if score[0] > score[1] { (a, b, score[0] - score[1]) } else { (b, a, score[1] - score[0]) };
        comparisons.push(Comparison {
            id: id.clone(),
            prompt: prompt.clone(),
            chosen: chosen.clone(),
            rejected: rejected.clone(),
            margin: Some(margin as f32),
            annotator: Some("reward-model".into()),
            source: None,
            prompt_messages: None,
            objective: None,
        });
    }
    let stats = RoundStats {
        dropped: samples.len() - comparisons.len(),
        reward: Some(mean(scores.iter().copied())),
        ..RoundStats::default()
    };
    Ok((comparisons, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_walk_through_a_fixed_permutation() {
        let prompts: Vec<Prompt> =
            (0..5).map(|i| Prompt { id: format!("p{i}"), prompt: format!("q{i}"), prompt_messages: None }).collect();
        let ids = |round| round_prompts(&prompts, 3, round, 7).iter().map(|p| p.id.clone()).collect::<Vec<_>>();
        let (first, second) = (ids(1), ids(2));
        let mut seen: Vec<String> = first.iter().chain(&second[..2]).cloned().collect();
        seen.sort();
        assert_eq!(seen, ["p0", "p1", "p2", "p3", "p4"], "rounds 1 and 2 cover every prompt before repeating");
        assert_eq!(second[2], first[0]);
        assert_eq!(ids(1), first);
    }
}
