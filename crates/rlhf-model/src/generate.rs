//! Batched autoregressive generation with a KV cache.
//!
//! Prompts are left-padded; greedy decoding or sampling with temperature, top-k and top-p (applied
//! in transformers' order and with its rules); each row stops at its first eos and is filled with
//! `pad_token_id` afterwards; the whole batch stops when every row is done or after
//! `max_new_tokens`. Sampling is reproducible: one uniform per row and step comes from a SplitMix64
//! stream seeded by [`GenerationConfig::seed`] and picks the token by inverse-CDF search, so the
//! result does not depend on libtorch's global RNG. Runs under `tch::no_grad`.
//!
//! Returned log-probs are those of the sampling distribution after temperature and before
//! top-k/top-p filtering, i.e. `log_softmax(logits / temperature)[token]` — what PPO recomputes
//! from a forward pass (greedy: temperature 1).

use crate::error::{Error, Result};
use crate::layers::position_ids_from_mask;
use crate::logprobs::gather_logprobs;
use crate::model::CausalLm;
use crate::ArchConfig;
use tch::{Device, Kind, Tensor};

/// Decoding options.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
    /// Upper bound on generated tokens per row.
    pub max_new_tokens: i64,
    /// Sample (true) or take the argmax (false).
    pub do_sample: bool,
    /// Logits are divided by this before sampling (> 0).
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens (0 = off).
    pub top_k: i64,
    /// Nucleus sampling mass (1.0 = off).
    pub top_p: f64,
    /// Tokens that end a row (empty: rows never stop early).
    pub eos_token_ids: Vec<i64>,
    /// Filler for finished rows and for prompt padding.
    pub pad_token_id: i64,
    /// Seed of the sampling stream.
    pub seed: u64,
    /// Use the KV cache (false recomputes the whole prefix every step; for benchmarks).
    pub use_cache: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_new_tokens: 32,
            do_sample: true,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            eos_token_ids: Vec::new(),
            pad_token_id: 0,
            seed: 0,
            use_cache: true,
        }
    }
}

impl GenerationConfig {
    /// This configuration sampling at `temperature`, or decoding greedily when it is 0 (the
    /// convention of OpenAI's API and of the project's configs).
    pub fn at_temperature(self, temperature: f64) -> Self {
        let greedy = temperature == 0.0;
        GenerationConfig { do_sample: !greedy, temperature: if greedy { 1.0 } else { temperature }, ..self }
    }

    /// Greedy decoding with the eos/pad ids of `model`'s config.
    pub fn greedy_for(model: &CausalLm, max_new_tokens: i64) -> Self {
        let cfg = model.config();
        GenerationConfig {
            max_new_tokens,
            do_sample: false,
            eos_token_ids: cfg.eos_token_ids(),
            pad_token_id: cfg.pad_or_eos().unwrap_or(0),
            ..Default::default()
        }
    }
}

/// Generated continuation of a batch.
#[derive(Debug)]
pub struct Generation {
    /// `[B, N]` int64 new tokens (`N <= max_new_tokens`), `pad_token_id` after a row's eos.
    pub tokens: Tensor,
    /// `[B, N]` f32 log-probs of the chosen tokens (0 after a row finished).
    pub logprobs: Tensor,
    /// Tokens generated per row, the eos included.
    pub lengths: Vec<i64>,
}

impl Generation {
    /// Each row's tokens, cut at its length (eos kept).
    pub fn rows(&self) -> Result<Vec<Vec<i64>>> {
        let t = self.tokens.to_device(Device::Cpu);
        let n = t.size()[1] as usize;
        let flat = Vec::<i64>::try_from(t.contiguous().view([-1]))?;
        Ok(self.lengths.iter().enumerate().map(|(i, &l)| flat[i * n..i * n + l as usize].to_vec()).collect())
    }
    /// Each row's log-probs, cut at its length.
    pub fn logprob_rows(&self) -> Result<Vec<Vec<f32>>> {
        let t = self.logprobs.to_device(Device::Cpu);
        let n = t.size()[1] as usize;
        let flat = Vec::<f32>::try_from(t.contiguous().view([-1]))?;
        Ok(self.lengths.iter().enumerate().map(|(i, &l)| flat[i * n..i * n + l as usize].to_vec()).collect())
    }
}

/// SplitMix64: a tiny, well-mixed, seedable stream for the per-step uniforms.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn next_unit(&mut self) -> f32 {
        (((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64) as f32
    }
}

/// The tokens generation stops at: the model config's, then `extra` (a `generation_config.json`'s),
/// then the tokenizer's eos, each once.
pub fn end_token_ids(model: &CausalLm, tokenizer: &crate::Tokenizer, extra: &[i64]) -> Vec<i64> {
    let mut ids = model.config().eos_token_ids();
    for id in extra.iter().copied().chain([tokenizer.eos_id()]) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Left-pads token lists into `(input_ids, attention_mask)` `[B, P]` on `device`.
pub fn left_pad(prompts: &[Vec<i64>], pad_token_id: i64, device: Device) -> Result<(Tensor, Tensor)> {
    let p = prompts.iter().map(Vec::len).max().unwrap_or(0);
    if prompts.is_empty() || p == 0 {
        return Err(Error::invalid("generation needs at least one non-empty prompt"));
    }
    let b = prompts.len();
    let mut ids = vec![pad_token_id; b * p];
    let mut mask = vec![0i64; b * p];
    for (i, row) in prompts.iter().enumerate() {
        if row.is_empty() {
            return Err(Error::invalid(format!("prompt {i} is empty")));
        }
        let off = p - row.len();
        ids[i * p + off..(i + 1) * p].copy_from_slice(row);
        mask[i * p + off..(i + 1) * p].iter_mut().for_each(|m| *m = 1);
    }
    let shape = [b as i64, p as i64];
    Ok((
        Tensor::from_slice(&ids).view(shape).to_device(device),
        Tensor::from_slice(&mask).view(shape).to_device(device),
    ))
}

/// Generates from token-list prompts (left-padded here).
pub fn generate_from_tokens(model: &CausalLm, prompts: &[Vec<i64>], cfg: &GenerationConfig) -> Result<Generation> {
    let (ids, mask) = left_pad(prompts, cfg.pad_token_id, model.device())?;
    generate(model, &ids, Some(&mask), cfg)
}

/// Picks one token per row of `scaled [B, V]` (f32 logits after temperature) with transformers'
/// top-k then top-p rules, by inverse-CDF search with the row's uniform `u [B]` in (0, 1].
///
/// With top-k the candidates are the `k` best logits only (everything else has probability 0
/// after the filter), so sorting and the softmax run over `k` entries instead of the vocabulary.
fn sample(scaled: &Tensor, u: &Tensor, top_k: i64, top_p: f64) -> Tensor {
    let v = scaled.size()[1];
    // Candidates in ascending logit order (transformers' top-p convention), with their vocab ids.
    let (cand, ids) = if top_k > 0 && top_k < v {
        let (vals, idx) = scaled.topk(top_k, -1, true, true);
        (vals.flip([-1]), Some(idx.flip([-1])))
    } else if top_p < 1.0 {
        let (vals, idx) = scaled.sort(-1, false);
        (vals, Some(idx))
    } else {
        (scaled.shallow_clone(), None)
    };
    let cand = if top_p < 1.0 {
        let n = cand.size()[1];
        let cum = cand.softmax(-1, Kind::Float).cumsum(-1, Kind::Float);
        let remove = cum.le(1.0 - top_p);
        let _ = remove.narrow(1, n - 1, 1).fill_(0);
        cand.masked_fill(&remove, f64::NEG_INFINITY)
    } else {
        cand
    };
    let cdf = cand.softmax(-1, Kind::Float).cumsum(-1, Kind::Float);
    let n = cdf.size()[1];
    let target = u.unsqueeze(1) * cdf.narrow(1, n - 1, 1);
    let pos = target.searchsorted::<Tensor>(&cdf, false, false, "left", None).clamp_max(n - 1);
    match ids {
        Some(ids) => ids.gather(1, &pos, false).squeeze_dim(1),
        None => pos.squeeze_dim(1),
    }
}

/// Generates up to `cfg.max_new_tokens` tokens after left-padded `input_ids [B, P]`
/// (`attention_mask` 1 on real tokens; `None` = no padding).
pub fn generate(
    model: &CausalLm,
    input_ids: &Tensor,
    attention_mask: Option<&Tensor>,
    cfg: &GenerationConfig,
) -> Result<Generation> {
    check_request(model, input_ids, attention_mask, cfg)?;
    let s = input_ids.size();
    let (b, p, n) = (s[0], s[1], cfg.max_new_tokens);
    let _span = tracing::debug_span!("generate", batch = b, prompt = p, max_new = n).entered();
    tch::no_grad(|| generate_inner(model, input_ids, attention_mask, cfg, None))
}

/// The shapes and settings [`generate`] refuses.
fn check_request(
    model: &CausalLm,
    input_ids: &Tensor,
    attention_mask: Option<&Tensor>,
    cfg: &GenerationConfig,
) -> Result<()> {
    let s = input_ids.size();
    if s.len() != 2 || s[1] == 0 || s[0] == 0 {
        return Err(Error::invalid(format!("input_ids must be [batch>0, seq>0], got {s:?}")));
    }
    if cfg.max_new_tokens < 0 {
        return Err(Error::invalid("max_new_tokens must be >= 0"));
    }
    if cfg.do_sample && (cfg.temperature.is_nan() || cfg.temperature <= 0.0) {
        return Err(Error::invalid(format!("temperature must be > 0, got {}", cfg.temperature)));
    }
    if cfg.top_p.is_nan() || cfg.top_p <= 0.0 || cfg.top_p > 1.0 {
        return Err(Error::invalid(format!("top_p must be in (0, 1], got {}", cfg.top_p)));
    }
    let (p, n) = (s[1], cfg.max_new_tokens);
    if let ArchConfig::Gpt2(c) = &model.config().arch {
        if p + n > c.n_positions {
            return Err(Error::invalid(format!(
                "prompt ({p}) + max_new_tokens ({n}) exceeds GPT-2's n_positions = {}",
                c.n_positions
            )));
        }
    }
    if let Some(m) = attention_mask {
        if m.size() != s {
            return Err(Error::invalid(format!("attention_mask {:?} must match input_ids {s:?}", m.size())));
        }
    }
    Ok(())
}

/// [`generate`] from token-list prompts, calling `on_step(tokens, logits)` after every step with
/// the step's tokens `[B]` (`pad_token_id` for finished rows) and the model's raw logits `[B, V]`
/// (f32, before temperature) they were chosen from: what a server streams and reports log-probs
/// from. Generation stops early when `on_step` returns `false`. The tokens are those
/// [`generate_from_tokens`] picks with the same configuration.
pub fn generate_streaming(
    model: &CausalLm,
    prompts: &[Vec<i64>],
    cfg: &GenerationConfig,
    mut on_step: impl FnMut(&Tensor, &Tensor) -> bool,
) -> Result<Generation> {
    let (ids, mask) = left_pad(prompts, cfg.pad_token_id, model.device())?;
    check_request(model, &ids, Some(&mask), cfg)?;
    tch::no_grad(|| generate_inner(model, &ids, Some(&mask), cfg, Some(&mut on_step)))
}

/// What one step's tokens and raw logits are handed to.
type StepObserver<'a> = &'a mut dyn FnMut(&Tensor, &Tensor) -> bool;

fn generate_inner(
    model: &CausalLm,
    input_ids: &Tensor,
    attention_mask: Option<&Tensor>,
    cfg: &GenerationConfig,
    mut on_step: Option<StepObserver<'_>>,
) -> Result<Generation> {
    let s = input_ids.size();
    let (b, p, n) = (s[0], s[1], cfg.max_new_tokens);
    let device = model.device();
    let ids = input_ids.to_device(device);
    if n == 0 {
        let empty = Tensor::zeros([b, 0], (Kind::Int64, device));
        return Ok(Generation { logprobs: empty.to_kind(Kind::Float), tokens: empty, lengths: vec![0; b as usize] });
    }
    // Padding mask over prompt + new tokens; `None` when nothing is padded (checked once).
    let prompt_mask = attention_mask.map(|m| m.to_device(device).to_kind(Kind::Int64));
    let padded = match &prompt_mask {
        Some(m) => m.f_all()?.f_int64_value(&[])? == 0,
        None => false,
    };
    let full_mask = match (&prompt_mask, padded) {
        (Some(m), true) => Some(Tensor::cat(&[m.shallow_clone(), Tensor::ones([b, n], (Kind::Int64, device))], 1)),
        _ => None,
    };
    let full_pos = match &full_mask {
        Some(m) => position_ids_from_mask(m),
        None => Tensor::arange(p + n, (Kind::Int64, device)).unsqueeze(0).expand([b, p + n], false),
    };
    let mask_upto = |len: i64| full_mask.as_ref().map(|m| m.narrow(1, 0, len));

    let uniforms = if cfg.do_sample {
        let mut rng = SplitMix64(cfg.seed);
        let u: Vec<f32> = (0..n * b).map(|_| rng.next_unit()).collect();
        Some(Tensor::from_slice(&u).view([n, b]).to_device(device))
    } else {
        None
    };
    let eos = cfg.eos_token_ids.clone();
    let mut cache = cfg.use_cache.then(|| model.new_cache(b, p + n));
    let mut finished = Tensor::zeros([b], (Kind::Bool, device));
    let mut lengths = Tensor::zeros([b], (Kind::Int64, device));
    let (mut tokens, mut logprobs) = (Vec::with_capacity(n as usize), Vec::with_capacity(n as usize));
    let mut seq = ids.shallow_clone();
    // Host syncs (all rows finished?) are cheap on the CPU; on accelerators check less often.
    let check_every = if device == Device::Cpu { 1 } else { 8 };
    let pad_fill = Tensor::full([b], cfg.pad_token_id, (Kind::Int64, device));
    let zero_lp = Tensor::zeros([b], (Kind::Float, device));

    let mut logits = model.step_logits(&ids, mask_upto(p).as_ref(), &full_pos.narrow(1, 0, p), cache.as_mut(), true);
    for i in 0..n {
        let logits32 = logits.to_kind(Kind::Float);
        let (next, lp) = match &uniforms {
            None => {
                let next = logits32.argmax(-1, false);
                let lp = gather_logprobs(&logits32, &next);
                (next, lp)
            }
            Some(u) => {
                let scaled =
                    if cfg.temperature != 1.0 { &logits32 / cfg.temperature } else { logits32.shallow_clone() };
                let next = sample(&scaled, &u.get(i), cfg.top_k, cfg.top_p);
                let lp = gather_logprobs(&scaled, &next);
                (next, lp)
            }
        };
        let alive = finished.logical_not();
        let next = next.where_self(&alive, &pad_fill);
        let lp = lp.where_self(&alive, &zero_lp);
        lengths += alive.to_kind(Kind::Int64);
        for &e in &eos {
            finished = finished.logical_or(&next.eq(e));
        }
        let go_on = on_step.as_mut().is_none_or(|observe| observe(&next, &logits32));
        tokens.push(next.shallow_clone());
        logprobs.push(lp);
        if i + 1 == n || !go_on {
            break;
        }
        if !eos.is_empty() && (i + 1) % check_every == 0 && finished.all().int64_value(&[]) != 0 {
            break;
        }
        let len = p + i + 1;
        let step_in = next.unsqueeze(1);
        logits = if let Some(c) = cache.as_mut() {
            model.step_logits(&step_in, mask_upto(len).as_ref(), &full_pos.narrow(1, len - 1, 1), Some(c), true)
        } else {
            seq = Tensor::cat(&[&seq, &step_in], 1);
            model.step_logits(&seq, mask_upto(len).as_ref(), &full_pos.narrow(1, 0, len), None, true)
        };
    }
    let lengths = Vec::<i64>::try_from(lengths.to_device(Device::Cpu))?;
    Ok(Generation { tokens: Tensor::stack(&tokens, 1), logprobs: Tensor::stack(&logprobs, 1), lengths })
}

/// Cuts each prompt to its last `max_len` tokens (what the answer follows is the prompt's end) and
/// returns how many prompts were cut, for the caller to report: a prompt is never dropped, and
/// never cut silently.
pub fn keep_last_tokens(prompts: &mut [Vec<i64>], max_len: usize) -> usize {
    let mut cut = 0;
    for prompt in prompts.iter_mut().filter(|p| p.len() > max_len) {
        prompt.drain(..prompt.len() - max_len);
        cut += 1;
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' filtered distribution, computed the slow way (full vocabulary).
    fn reference_probs(logits: &[f32], top_k: usize, top_p: f64) -> Vec<f64> {
        let mut s: Vec<f64> = logits.iter().map(|&x| x as f64).collect();
        if top_k > 0 && top_k < s.len() {
            let mut sorted = s.clone();
            sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
            let kth = sorted[top_k - 1];
            s.iter_mut().filter(|x| **x < kth).for_each(|x| *x = f64::NEG_INFINITY);
        }
        let softmax = |s: &[f64]| {
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            e.into_iter().map(|x| x / z).collect::<Vec<f64>>()
        };
        if top_p < 1.0 {
            let p = softmax(&s);
            let mut order: Vec<usize> = (0..s.len()).collect();
            order.sort_by(|&a, &b| s[a].partial_cmp(&s[b]).unwrap());
            let mut cum = 0.0;
            let last = *order.last().unwrap();
            for &i in &order {
                cum += p[i];
                if cum <= 1.0 - top_p && i != last {
                    s[i] = f64::NEG_INFINITY;
                }
            }
        }
        softmax(&s)
    }

    #[test]
    fn sampler_follows_transformers_filtered_distribution() {
        let logits = [1.0f32, 2.5, 0.3, 2.0, -1.0, 1.7, 0.9, 2.2];
        let n = 40_000;
        for (top_k, top_p) in [(0, 1.0), (3, 1.0), (0, 0.8), (5, 0.7), (1, 1.0)] {
            let want = reference_probs(&logits, top_k, top_p);
            let scaled = Tensor::from_slice(&logits).unsqueeze(0).expand([n, 8], false).contiguous();
            let mut rng = SplitMix64(42);
            let u: Vec<f32> = (0..n).map(|_| rng.next_unit()).collect();
            let picks = Vec::<i64>::try_from(sample(&scaled, &Tensor::from_slice(&u), top_k as i64, top_p)).unwrap();
            for (tok, &p) in want.iter().enumerate() {
                let freq = picks.iter().filter(|&&t| t == tok as i64).count() as f64 / n as f64;
                assert!((freq - p).abs() < 0.01, "k={top_k} p={top_p} token {tok}: {freq} vs {p}");
                if p == 0.0 {
                    assert_eq!(freq, 0.0, "filtered token {tok} was sampled");
                }
            }
        }
    }

    #[test]
    fn splitmix_uniforms_are_in_unit_interval() {
        let mut rng = SplitMix64(0);
        let u: Vec<f32> = (0..10_000).map(|_| rng.next_unit()).collect();
        assert!(u.iter().all(|&x| x > 0.0 && x <= 1.0));
        let mean = u.iter().map(|&x| x as f64).sum::<f64>() / u.len() as f64;
        assert!((mean - 0.5).abs() < 0.01);
    }
}
