//! Parity with transformers on the tiny checkpoints of `tests/fixtures/<name>/` (made by
//! `tests/fixtures/make_fixtures.py`): logits at every real position, summed response log-probs
//! (plus 1e-6 relative), reward scores (left and right padding) within 1e-4 in f32, and identical
//! greedy generations.
//! Each model is also saved by rlhf-model, reloaded and compared; with `RLHF_PARITY_EXPORT=DIR` the
//! saved checkpoints are kept under `DIR/<name>` for `make_fixtures.py --check DIR`.

use anyhow::{Context, Result};
use rlhf_model::{
    build_batch, checkpoint, generate_from_tokens, sequence_logprobs, CausalLm, GenerationConfig, LogprobOptions,
    PaddingSide, SequenceClassifier,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-4;
/// The relative part of the bound on summed log-probs (f32 accumulation over a sequence).
const SUM_RELATIVE_TOL: f64 = 1e-6;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

struct Fixture {
    dir: PathBuf,
    expected: BTreeMap<String, Tensor>,
    inputs: serde_json::Value,
}

fn load(name: &str) -> Result<Fixture> {
    let dir = fixture(name);
    let expected = checkpoint::read_safetensors(&dir.join("expected.safetensors"))?;
    let inputs = serde_json::from_str(&std::fs::read_to_string(dir.join("inputs.json"))?)?;
    Ok(Fixture { dir, expected, inputs })
}

fn tokens(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

fn export_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os("RLHF_PARITY_EXPORT").map(|d| PathBuf::from(d).join(name))
}

/// Max |diff| over real (mask = 1) positions of `[B, T, V]` logits.
fn masked_logit_diff(got: &Tensor, want: &Tensor, mask: &Tensor) -> f64 {
    ((got - want).abs() * mask.unsqueeze(-1).to_kind(Kind::Float)).max().double_value(&[])
}

fn check_causal_lm(model: &CausalLm, fx: &Fixture, label: &str) -> Result<f64> {
    let mut worst: f64 = 0.0;
    let pad = fx.inputs["pad_token_id"].as_i64().unwrap();
    let eos = fx.inputs["eos_token_id"].as_i64().unwrap();
    for side in ["left", "right"] {
        let ids = &fx.expected[&format!("{side}.input_ids")];
        let mask = &fx.expected[&format!("{side}.attention_mask")];
        // Position ids are derived from the mask by rlhf-model itself.
        let logits = tch::no_grad(|| model.forward(ids, Some(mask)))?;
        let d = masked_logit_diff(&logits, &fx.expected[&format!("{side}.logits")], mask);
        println!("{label} {side} logits max|diff| {d:.2e}");
        assert!(d <= TOL, "{label} {side} logits differ by {d}");
        worst = worst.max(d);

        let pairs: Vec<(Vec<i64>, Vec<i64>)> =
            fx.inputs["pairs"].as_array().unwrap().iter().map(|p| (tokens(&p[0]), tokens(&p[1]))).collect();
        let side_enum = if side == "left" { PaddingSide::Left } else { PaddingSide::Right };
        let batch = build_batch(&pairs, Some(eos), pad, side_enum, Device::Cpu)?;
        let lp = tch::no_grad(|| sequence_logprobs(model, &batch, LogprobOptions::default()))?;
        let want = &fx.expected[&format!("{side}.logprob_sum")];
        // A sum of many f32 log-probs carries rounding in proportion to its size (a few ulps of a
        // value in the hundreds is ~1e-4), so the bound is TOL plus a relative part per row.
        let d = (&lp.sum - want).abs().max().double_value(&[]);
        let excess = ((&lp.sum - want).abs() - (want.abs() * SUM_RELATIVE_TOL + TOL)).max().double_value(&[]);
        println!("{label} {side} summed log-probs max|diff| {d:.2e}");
        assert!(excess <= 0.0, "{label} {side} log-probs differ by {d}");
        worst = worst.max(d);
    }
    let prompts: Vec<Vec<i64>> = fx.inputs["prompts"].as_array().unwrap().iter().map(tokens).collect();
    let gen_eos = fx.inputs["generation_eos_token_id"].as_i64();
    let cfg = GenerationConfig {
        max_new_tokens: fx.inputs["max_new_tokens"].as_i64().unwrap(),
        do_sample: false,
        eos_token_ids: gen_eos.into_iter().collect(),
        pad_token_id: pad,
        ..Default::default()
    };
    let want = &fx.expected["greedy.tokens"];
    for use_cache in [true, false] {
        let got = generate_from_tokens(model, &prompts, &GenerationConfig { use_cache, ..cfg.clone() })?;
        assert_eq!(got.tokens.size(), want.size(), "{label} greedy shape (cache {use_cache})");
        assert!(
            got.tokens.equal(want),
            "{label} greedy tokens differ (cache {use_cache}):\n{}\nvs\n{}",
            got.tokens,
            want
        );
    }
    println!("{label} greedy tokens identical ({:?})", want.size());
    Ok(worst)
}

fn causal_lm_parity(name: &str) -> Result<()> {
    let fx = load(name)?;
    let model = CausalLm::from_pretrained(&fx.dir, Device::Cpu, Kind::Float).context(name.to_string())?;
    check_causal_lm(&model, &fx, name)?;
    // Save with rlhf-model, reload, compare again (and bitwise with the original load).
    let tmp = tempfile::tempdir()?;
    let out = export_dir(name).unwrap_or_else(|| tmp.path().join(name));
    model.save_pretrained(&out)?;
    let back = CausalLm::from_pretrained(&out, Device::Cpu, Kind::Float)?;
    let ids = &fx.expected["right.input_ids"];
    let mask = &fx.expected["right.attention_mask"];
    let (a, b) = tch::no_grad(|| (model.forward(ids, Some(mask)), back.forward(ids, Some(mask))));
    assert!(a?.equal(&b?), "{name}: reloaded model differs");
    check_causal_lm(&back, &fx, &format!("{name} (saved+reloaded)"))?;
    // The saved weights have exactly the names and shapes of the HF file.
    let orig = checkpoint::read_safetensors(&fx.dir.join("model.safetensors"))?;
    let saved = checkpoint::read_safetensors(&out.join("model.safetensors"))?;
    assert_eq!(orig.keys().collect::<Vec<_>>(), saved.keys().collect::<Vec<_>>());
    for (k, v) in &orig {
        assert!(v.equal(&saved[k]), "{name}: tensor {k} changed on save");
    }
    Ok(())
}

fn seqcls_parity(name: &str) -> Result<()> {
    let fx = load(name)?;
    let rm = SequenceClassifier::from_pretrained(&fx.dir, Device::Cpu, Kind::Float).context(name.to_string())?;
    let tmp = tempfile::tempdir()?;
    let out = export_dir(name).unwrap_or_else(|| tmp.path().join(name));
    rm.save_pretrained(&out)?;
    let back = SequenceClassifier::from_pretrained(&out, Device::Cpu, Kind::Float)?;
    for (label, m) in [(name.to_string(), &rm), (format!("{name} (saved+reloaded)"), &back)] {
        for side in ["left", "right"] {
            let ids = &fx.expected[&format!("{side}.input_ids")];
            let mask = &fx.expected[&format!("{side}.attention_mask")];
            let scores = tch::no_grad(|| m.forward(ids, Some(mask)))?;
            let d = (&scores - &fx.expected[&format!("{side}.scores")]).abs().max().double_value(&[]);
            println!("{label} {side} scores max|diff| {d:.2e}");
            assert!(d <= TOL, "{label} {side} scores differ by {d}");
        }
    }
    let saved = checkpoint::read_safetensors(&out.join("model.safetensors"))?;
    let orig = checkpoint::read_safetensors(&fx.dir.join("model.safetensors"))?;
    assert_eq!(orig.keys().collect::<Vec<_>>(), saved.keys().collect::<Vec<_>>());
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json"))?)?;
    let orig_cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fx.dir.join("config.json"))?)?;
    assert_eq!(cfg, orig_cfg, "{name}: config.json does not round-trip");
    Ok(())
}

#[test]
fn gpt2_matches_transformers() -> Result<()> {
    causal_lm_parity("gpt2")
}

#[test]
fn llama_gqa_untied_matches_transformers() -> Result<()> {
    causal_lm_parity("llama")
}

#[test]
fn qwen2_bias_tied_matches_transformers() -> Result<()> {
    causal_lm_parity("qwen2")
}

#[test]
fn gpt2_reward_model_matches_transformers() -> Result<()> {
    seqcls_parity("gpt2_seqcls")
}

#[test]
fn llama_reward_model_matches_transformers() -> Result<()> {
    seqcls_parity("llama_seqcls")
}

#[test]
fn qwen2_reward_model_matches_transformers() -> Result<()> {
    seqcls_parity("qwen2_seqcls")
}

/// A LoRA-adapted model saved with the adapters merged is a plain HF checkpoint: reloading it
/// reproduces the adapted outputs. With `RLHF_PARITY_EXPORT` the merged checkpoint is exported
/// with rlhf-model's own outputs as `expected.safetensors`, so `make_fixtures.py --check` verifies
/// transformers computes the same (this covers GPT-2's transposed Conv1D merge).
fn lora_merged(name: &str, targets: &[&str]) -> Result<()> {
    let fx = load(name)?;
    let mut model = CausalLm::from_pretrained(&fx.dir, Device::Cpu, Kind::Float)?;
    let lc = rlhf_model::LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: targets.iter().map(|s| s.to_string()).collect(),
    };
    model.add_lora(&lc)?;
    tch::manual_seed(5);
    tch::no_grad(|| {
        for (n, v) in model.trainable_variables() {
            if n.contains("lora_B") {
                v.shallow_clone().copy_(&(Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.2));
            }
        }
    });
    let mut expected: BTreeMap<String, Tensor> = BTreeMap::new();
    let pad = fx.inputs["pad_token_id"].as_i64().unwrap();
    let eos = fx.inputs["eos_token_id"].as_i64().unwrap();
    let pairs: Vec<(Vec<i64>, Vec<i64>)> =
        fx.inputs["pairs"].as_array().unwrap().iter().map(|p| (tokens(&p[0]), tokens(&p[1]))).collect();
    for side in ["left", "right"] {
        for k in ["input_ids", "attention_mask", "position_ids"] {
            let key = format!("{side}.{k}");
            expected.insert(key.clone(), fx.expected[&key].shallow_clone());
        }
        let ids = &fx.expected[&format!("{side}.input_ids")];
        let mask = &fx.expected[&format!("{side}.attention_mask")];
        let logits = tch::no_grad(|| model.forward(ids, Some(mask)))?;
        let base = &fx.expected[&format!("{side}.logits")];
        assert!(masked_logit_diff(&logits, base, mask) > 1e-3, "adapters must change the outputs");
        expected.insert(format!("{side}.logits"), logits);
        let side_enum = if side == "left" { PaddingSide::Left } else { PaddingSide::Right };
        let batch = build_batch(&pairs, Some(eos), pad, side_enum, Device::Cpu)?;
        let lp = tch::no_grad(|| sequence_logprobs(&model, &batch, LogprobOptions::default()))?;
        expected.insert(format!("{side}.logprob_sum"), lp.sum);
    }
    let prompts: Vec<Vec<i64>> = fx.inputs["prompts"].as_array().unwrap().iter().map(tokens).collect();
    let gcfg = GenerationConfig {
        max_new_tokens: fx.inputs["max_new_tokens"].as_i64().unwrap(),
        do_sample: false,
        pad_token_id: pad,
        ..Default::default()
    };
    expected.insert("greedy.tokens".into(), generate_from_tokens(&model, &prompts, &gcfg)?.tokens);

    let tmp = tempfile::tempdir()?;
    let label = format!("{name}_lora_merged");
    let out = export_dir(&label).unwrap_or_else(|| tmp.path().join(&label));
    model.save_pretrained(&out)?;
    checkpoint::write_safetensors(&out.join("expected.safetensors"), &expected)?;
    let mut inputs = fx.inputs.clone();
    inputs["generation_eos_token_id"] = serde_json::Value::Null;
    std::fs::write(out.join("inputs.json"), serde_json::to_string_pretty(&inputs)?)?;

    let merged = CausalLm::from_pretrained(&out, Device::Cpu, Kind::Float)?;
    assert!(merged.lora().is_none());
    let fx_merged = Fixture { dir: out.clone(), expected, inputs };
    let worst = check_causal_lm(&merged, &fx_merged, &label)?;
    println!("{label}: merged checkpoint reproduces the adapted model, max|diff| {worst:.2e}");
    Ok(())
}

#[test]
fn gpt2_lora_merged_save_is_a_plain_checkpoint() -> Result<()> {
    lora_merged("gpt2", &["c_attn", "c_fc", "mlp.c_proj"])
}

#[test]
fn llama_lora_merged_save_is_a_plain_checkpoint() -> Result<()> {
    lora_merged("llama", &["q_proj", "v_proj", "gate_proj", "down_proj"])
}
