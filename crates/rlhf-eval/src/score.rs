//! Scoring text with models: summed response log-probs under a policy (KL, perplexity, the
//! `logprobs` tool), proxy rewards from reward-model directories, and the `compare` tool (a judge's
//! win rate of one responses table over another).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Array, UInt32Array};
use arrow::datatypes::{DataType, Field};
use rlhf_data::{append_column, read_records, AsPrompt, Demonstration, Judge};
use rlhf_model::{
    build_batch, sequence_logprobs, CausalLm, ChatMode, LogprobOptions, PaddingSide, Placement, RewardModel, Tokenizer,
};

use crate::stats::{win_rate, WinRate};
use crate::{Error, Result};
use rlhf_train::judges::scores;

/// Summed log-prob and token count of each row's response tokens (`prompt ++ response`, nothing
/// appended), in batches of `batch_size`, without gradients.
pub fn response_logprobs(
    model: &CausalLm,
    pad_token_id: i64,
    rows: &[(Vec<i64>, Vec<i64>)],
    batch_size: usize,
    temperature: f64,
) -> Result<Vec<(f64, u32)>> {
    let mut out = Vec::with_capacity(rows.len());
    let opts = LogprobOptions { temperature, entropy: false };
    tch::no_grad(|| -> Result<()> {
        for chunk in rows.chunks(batch_size.max(1)) {
            let batch = build_batch(chunk, None, pad_token_id, PaddingSide::Right, model.device())?;
            let lp = sequence_logprobs(model, &batch, opts)?;
            let sums = Vec::<f32>::try_from(lp.sum.to_device(tch::Device::Cpu)).map_err(rlhf_model::Error::from)?;
            let counts = Vec::<f32>::try_from(lp.count.to_device(tch::Device::Cpu)).map_err(rlhf_model::Error::from)?;
            out.extend(sums.into_iter().zip(counts).map(|(s, c)| (s as f64, c as u32)));
        }
        Ok(())
    })?;
    Ok(out)
}

/// `tokens(prompt)`, `tokens(response) ++ [eos]` of each (prompt, response) pair.
pub fn encode_pairs<P: AsPrompt + Sync>(
    tokenizer: &Tokenizer,
    pairs: &[(P, &str)],
) -> Result<Vec<(Vec<i64>, Vec<i64>)>> {
    Ok(tokenizer.encode_prompt_response_batch(pairs)?.into_iter().map(|ids| (ids.prompt, ids.response)).collect())
}

/// Loads a policy checkpoint and its tokenizer (in chat mode `chat`), checking they fit.
pub fn load_policy(dir: &Path, placement: Placement, chat: ChatMode) -> Result<(CausalLm, Tokenizer)> {
    let tokenizer = Tokenizer::from_dir(dir)?.with_chat_mode(chat);
    let model = CausalLm::from_pretrained(dir, placement.device, placement.kind)?;
    tokenizer.check_fits_embedding(model.config().vocab_size())?;
    Ok((model, tokenizer))
}

/// Proxy rewards of (prompt, response) pairs under the reward-model directory `dir`.
pub fn proxy_rewards<P: AsPrompt + Sync>(
    dir: &Path,
    pairs: &[(P, &str)],
    batch_size: usize,
    chat: ChatMode,
    placement: Placement,
) -> Result<Vec<f64>> {
    let mut model = RewardModel::load_as(dir, placement.device, placement.kind)?.with_chat_mode(chat);
    model.batch_size = batch_size;
    Ok(model.score(pairs)?.into_iter().map(f64::from).collect())
}

/// `rlhf-eval logprobs`: writes `input` plus `logprob: f64` (summed log-prob of the response,
/// eos included, given the prompt) and `num_tokens: u32`; returns the row count.
pub fn logprobs_file(
    model_dir: &Path,
    input: &Path,
    out: &Path,
    batch_size: usize,
    chat: ChatMode,
    placement: Placement,
) -> Result<u64> {
    let rows: Vec<Demonstration> = read_records(input)?;
    let (model, tokenizer) = load_policy(model_dir, placement, chat)?;
    let pairs: Vec<(&Demonstration, &str)> = rows.iter().map(|r| (r, r.response.as_str())).collect();
    let scored = response_logprobs(&model, tokenizer.pad_id(), &encode_pairs(&tokenizer, &pairs)?, batch_size, 1.0)?;
    let tmp = out.with_extension("partial.parquet");
    let logprob = Arc::new(Float64Array::from_iter_values(scored.iter().map(|s| s.0)));
    append_column(input, &tmp, Field::new("logprob", DataType::Float64, false), logprob)?;
    let counts = Arc::new(UInt32Array::from_iter_values(scored.iter().map(|s| s.1)));
    let rows = append_column(&tmp, out, Field::new("num_tokens", DataType::UInt32, false), counts);
    std::fs::remove_file(&tmp).map_err(|e| Error::Invalid(format!("{}: {e}", tmp.display())))?;
    Ok(rows?)
}

/// `rlhf-eval compare`: the win rate of `a`'s responses over `b`'s by `judge`'s scores, rows matched
/// by prompt (the first response to each prompt on either side).
pub fn compare_files(a: &Path, b: &Path, judge: &dyn Judge, resamples: usize, seed: u64) -> Result<WinRate> {
    let (a_rows, b_rows): (Vec<Demonstration>, Vec<Demonstration>) = (read_records(a)?, read_records(b)?);
    let mut by_prompt: HashMap<&str, &str> = HashMap::new();
    for row in &b_rows {
        by_prompt.entry(row.prompt.as_str()).or_insert(row.response.as_str());
    }
    let mut seen = std::collections::HashSet::new();
    type Pairs<'a> = Vec<(&'a str, &'a str)>;
    let (pairs_a, pairs_b): (Pairs<'_>, Pairs<'_>) = a_rows
        .iter()
        .filter(|r| seen.insert(r.prompt.as_str()))
        .filter_map(|r| {
            by_prompt
                .get(r.prompt.as_str())
                .map(|other| ((r.prompt.as_str(), r.response.as_str()), (r.prompt.as_str(), *other)))
        })
        .unzip();
    win_rate(&scores(judge, &pairs_a)?, &scores(judge, &pairs_b)?, resamples, seed)
        .ok_or_else(|| Error::Invalid(format!("{} and {} share no prompt", a.display(), b.display())))
}
