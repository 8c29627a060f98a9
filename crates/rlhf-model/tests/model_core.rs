//! Model-core behaviour on tiny random models (CPU, fixed seeds): caching, padding, generation,
//! log-probs, checkpoints, heads and LoRA.

use anyhow::Result;
use rlhf_model::{
    build_batch, checkpoint, generate, generate_from_tokens, generate_streaming, sequence_logprobs, CausalLm, Error,
    GenerationConfig, Gpt2Config, LlamaConfig, LogprobOptions, LoraConfig, ModelConfig, PaddingSide,
    SequenceClassifier, TokenIds, ValueHead,
};
use tch::{Device, Kind, Tensor};

const CPU: Device = Device::Cpu;

fn gpt2_cfg() -> ModelConfig {
    let mut g = Gpt2Config::new(96, 64, 32, 2, 4);
    g.resid_pdrop = 0.0;
    let mut c = ModelConfig::gpt2(g);
    c.eos_token_id = Some(TokenIds::One(1));
    c.bos_token_id = Some(TokenIds::One(1));
    c
}

fn llama_cfg() -> ModelConfig {
    let mut c = ModelConfig::llama(LlamaConfig::new(80, 32, 48, 2, 4, 2));
    c.eos_token_id = Some(TokenIds::One(2));
    c.pad_token_id = Some(0);
    c
}

fn qwen2_cfg() -> ModelConfig {
    let mut l = LlamaConfig::new(72, 32, 40, 2, 4, 1);
    l.tie_word_embeddings = true;
    let mut c = ModelConfig::qwen2(l);
    c.eos_token_id = Some(TokenIds::Many(vec![3, 4]));
    c
}

fn all_cfgs() -> Vec<ModelConfig> {
    vec![gpt2_cfg(), llama_cfg(), qwen2_cfg()]
}

fn model(cfg: ModelConfig, seed: i64) -> CausalLm {
    tch::manual_seed(seed);
    CausalLm::new(cfg, CPU, Kind::Float).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn ids(rows: &[&[i64]]) -> Tensor {
    let t = rows[0].len() as i64;
    let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, t])
}

#[test]
fn forward_shapes_and_hidden_states() -> Result<()> {
    for cfg in all_cfgs() {
        let v = cfg.vocab_size();
        let m = model(cfg, 0);
        let x = ids(&[&[5, 6, 7, 8], &[9, 10, 11, 12]]);
        let out = m.forward_with(&x, None, None, None)?;
        assert_eq!(out.logits.size(), [2, 4, v]);
        assert_eq!(out.hidden.size(), [2, 4, 32]);
        assert!(out.logits.isfinite().all().int64_value(&[]) == 1);
    }
    Ok(())
}

#[test]
fn padding_left_or_right_does_not_change_real_positions() -> Result<()> {
    for cfg in all_cfgs() {
        let m = model(cfg, 1);
        let row = [5i64, 17, 9, 23, 4];
        let alone = m.forward(&ids(&[&row]), None)?;
        // Left padding by 3, batched with a full row.
        let left = ids(&[&[0, 0, 0, 5, 17, 9, 23, 4], &[1, 2, 3, 4, 5, 6, 7, 8]]);
        let lmask = ids(&[&[0, 0, 0, 1, 1, 1, 1, 1], &[1; 8]]);
        let l = m.forward(&left, Some(&lmask))?;
        assert!(max_diff(&l.get(0).narrow(0, 3, 5), &alone.get(0)) < 1e-5);
        assert!(l.isfinite().all().int64_value(&[]) == 1, "padding rows must stay finite");
        // Right padding.
        let right = ids(&[&[5, 17, 9, 23, 4, 0, 0, 0], &[1, 2, 3, 4, 5, 6, 7, 8]]);
        let rmask = ids(&[&[1, 1, 1, 1, 1, 0, 0, 0], &[1; 8]]);
        let r = m.forward(&right, Some(&rmask))?;
        assert!(max_diff(&r.get(0).narrow(0, 0, 5), &alone.get(0)) < 1e-5);
    }
    Ok(())
}

#[test]
fn kv_cache_matches_full_forward_with_left_padding() -> Result<()> {
    for cfg in all_cfgs() {
        let m = model(cfg, 2);
        let seq = ids(&[&[0, 0, 5, 6, 7, 8, 9, 10], &[11, 12, 13, 14, 15, 16, 17, 18]]);
        let mask = ids(&[&[0, 0, 1, 1, 1, 1, 1, 1], &[1; 8]]);
        let full = m.forward(&seq, Some(&mask))?;
        let mut cache = m.new_cache(2, 4); // small: forces growth
        let pre = m.forward_with(&seq.narrow(1, 0, 5), Some(&mask.narrow(1, 0, 5)), None, Some(&mut cache))?;
        assert!(max_diff(&pre.logits.narrow(1, 2, 3), &full.narrow(1, 2, 3)) < 1e-5);
        for j in 5..8 {
            let step = m.forward_with(&seq.narrow(1, j, 1), Some(&mask.narrow(1, 0, j + 1)), None, Some(&mut cache))?;
            assert!(max_diff(&step.logits.squeeze_dim(1), &full.select(1, j)) < 1e-5, "step {j}");
        }
        assert_eq!(cache.len(), 8);
    }
    Ok(())
}

#[test]
fn greedy_generation_same_with_and_without_cache_and_stops_at_eos() -> Result<()> {
    for cfg in all_cfgs() {
        let m = model(cfg, 3);
        let prompts = vec![vec![5, 6, 7], vec![8, 9, 10, 11, 12], vec![13]];
        let mut g = GenerationConfig::greedy_for(&m, 12);
        g.eos_token_ids = vec![];
        let a = generate_from_tokens(&m, &prompts, &g)?;
        g.use_cache = false;
        let b = generate_from_tokens(&m, &prompts, &g)?;
        assert_eq!(a.rows()?, b.rows()?);
        assert!(max_diff(&a.logprobs, &b.logprobs) < 1e-5);
        assert_eq!(a.lengths, vec![12, 12, 12]);
        // Make the 4th greedy token of row 0 an eos: the row stops there and is padded after.
        let eos = a.rows()?[0][3];
        let first_hit = a.rows()?[0].iter().position(|&t| t == eos).unwrap();
        g.use_cache = true;
        g.eos_token_ids = vec![eos];
        g.pad_token_id = 77 % m.config().vocab_size();
        let c = generate_from_tokens(&m, &prompts, &g)?;
        assert_eq!(c.lengths[0] as usize, first_hit + 1);
        let row0 = Vec::<i64>::try_from(c.tokens.get(0))?;
        assert_eq!(row0[first_hit], eos);
        assert!(row0[first_hit + 1..].iter().all(|&t| t == g.pad_token_id));
        let lp0 = Vec::<f32>::try_from(c.logprobs.get(0))?;
        assert!(lp0[first_hit + 1..].iter().all(|&x| x == 0.0));
        assert!(lp0[..=first_hit].iter().all(|&x| x <= 0.0));
    }
    Ok(())
}

#[test]
fn sampling_is_seeded_and_top_k_one_is_greedy() -> Result<()> {
    let m = model(llama_cfg(), 4);
    let prompts = vec![vec![5, 6, 7], vec![8, 9]];
    let g = GenerationConfig { max_new_tokens: 16, do_sample: true, seed: 7, pad_token_id: 0, ..Default::default() };
    let a = generate_from_tokens(&m, &prompts, &g)?;
    let b = generate_from_tokens(&m, &prompts, &g)?;
    assert_eq!(a.rows()?, b.rows()?);
    let c = generate_from_tokens(&m, &prompts, &GenerationConfig { seed: 8, ..g.clone() })?;
    assert_ne!(a.rows()?, c.rows()?);
    let nc = generate_from_tokens(&m, &prompts, &GenerationConfig { use_cache: false, ..g.clone() })?;
    assert_eq!(a.rows()?, nc.rows()?);
    let k1 = generate_from_tokens(&m, &prompts, &GenerationConfig { top_k: 1, temperature: 0.7, ..g.clone() })?;
    let greedy = generate_from_tokens(&m, &prompts, &GenerationConfig::greedy_for(&m, 16))?;
    assert_eq!(k1.rows()?, greedy.rows()?);
    // Sampled log-probs equal a teacher-forced recomputation at the same temperature.
    let t = GenerationConfig { temperature: 0.8, top_p: 0.9, ..g };
    let s = generate_from_tokens(&m, &prompts, &t)?;
    let pairs: Vec<(Vec<i64>, Vec<i64>)> = prompts.iter().cloned().zip(s.rows()?).collect();
    let batch = build_batch(&pairs, None, 0, PaddingSide::Left, CPU)?;
    let lp = tch::no_grad(|| sequence_logprobs(&m, &batch, LogprobOptions { temperature: 0.8, entropy: false }))?;
    let per_row = lp.per_row(&batch)?;
    for (r, want) in per_row.iter().zip(s.logprob_rows()?) {
        for (x, y) in r.iter().zip(want) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }
    Ok(())
}

#[test]
fn streaming_sees_every_step_the_batch_generates_and_can_stop_it() -> Result<()> {
    let m = model(llama_cfg(), 4);
    let prompts = vec![vec![5, 6, 7], vec![8, 9]];
    let g = GenerationConfig { max_new_tokens: 12, do_sample: true, seed: 3, temperature: 0.9, ..Default::default() };
    let whole = generate_from_tokens(&m, &prompts, &g)?;
    let mut seen: Vec<Vec<i64>> = Vec::new();
    let streamed = generate_streaming(&m, &prompts, &g, |tokens, logits| {
        assert_eq!(logits.size(), [2, m.config().vocab_size()]);
        seen.push(Vec::try_from(tokens).unwrap());
        true
    })?;
    assert_eq!(streamed.rows()?, whole.rows()?);
    let columns: Vec<Vec<i64>> = (0..2).map(|row| seen.iter().map(|step| step[row]).collect()).collect();
    assert_eq!(columns, whole.rows()?);
    let mut steps = 0;
    let stopped = generate_streaming(&m, &prompts, &g, |_, _| {
        steps += 1;
        steps < 4
    })?;
    assert_eq!((steps, stopped.tokens.size()[1]), (4, 4));
    assert_eq!(
        stopped.rows()?.iter().map(|row| row[..4].to_vec()).collect::<Vec<_>>(),
        columns.iter().map(|c| c[..4].to_vec()).collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn logprobs_match_log_softmax_for_both_padding_sides() -> Result<()> {
    let m = model(gpt2_cfg(), 5);
    let pairs = vec![(vec![5i64, 6, 7], vec![8i64, 9]), (vec![10], vec![11, 12, 13, 14])];
    let eos = 1;
    let r = build_batch(&pairs, Some(eos), 0, PaddingSide::Right, CPU)?;
    let l = build_batch(&pairs, Some(eos), 0, PaddingSide::Left, CPU)?;
    assert_eq!(r.response_lens, vec![3, 5]);
    let lr = sequence_logprobs(&m, &r, LogprobOptions { temperature: 1.0, entropy: true })?;
    let ll = sequence_logprobs(&m, &l, LogprobOptions::default())?;
    assert!(max_diff(&lr.sum, &ll.sum) < 1e-5);
    assert_eq!(Vec::<f32>::try_from(&lr.count)?, vec![3.0, 5.0]);
    // Reference: each row alone, full log_softmax.
    for (i, (p, resp)) in pairs.iter().enumerate() {
        let mut row = p.clone();
        row.extend(resp);
        row.push(eos);
        let logits = m.forward(&ids(&[&row]), None)?;
        let logp = logits.log_softmax(-1, Kind::Float);
        let mut want = 0.0;
        let mut ent = 0.0;
        for (j, &tok) in row.iter().enumerate().skip(p.len()) {
            want += logp.double_value(&[0, j as i64 - 1, tok]);
            let pj = logp.get(0).get(j as i64 - 1);
            ent += -(pj.exp() * &pj).sum(Kind::Float).double_value(&[]);
        }
        assert!((lr.sum.double_value(&[i as i64]) - want).abs() < 1e-4);
        let e = lr.entropy.as_ref().unwrap().get(i as i64).sum(Kind::Float).double_value(&[]);
        assert!((e - ent).abs() < 1e-3, "{e} vs {ent}");
    }
    // Gradients flow to the weights.
    let loss = -lr.sum.sum(Kind::Float);
    loss.backward();
    let grads: f64 =
        m.var_store().trainable_variables().iter().map(|v| v.grad().abs().sum(Kind::Float).double_value(&[])).sum();
    assert!(grads > 0.0);
    Ok(())
}

#[test]
fn save_and_reload_round_trips_tied_and_untied() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (i, cfg) in all_cfgs().into_iter().enumerate() {
        let tied = cfg.tie_word_embeddings();
        let m = model(cfg, 6);
        let path = dir.path().join(format!("m{i}"));
        m.save_pretrained(&path)?;
        m.save_pretrained(&path)?; // overwrite is atomic too
        let names = checkpoint::read_safetensors(&path.join("model.safetensors"))?;
        assert_eq!(names.contains_key("lm_head.weight"), !tied);
        assert!(path.join("generation_config.json").is_file());
        let back = CausalLm::from_pretrained(&path, CPU, Kind::Float)?;
        let x = ids(&[&[5, 6, 7, 8]]);
        assert!(max_diff(&m.forward(&x, None)?, &back.forward(&x, None)?) == 0.0);
        assert_eq!(back.config().to_value()["model_type"], m.config().to_value()["model_type"]);
        // bf16 load works and stays close.
        let half = CausalLm::from_pretrained(&path, CPU, Kind::BFloat16)?;
        let d = max_diff(&m.forward(&x, None)?, &half.forward(&x, None)?.to_kind(Kind::Float));
        assert!(d < 0.1, "bf16 diff {d}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
    Ok(())
}

#[test]
fn tokenizer_files_travel_with_the_model() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    model(gpt2_cfg(), 14).save_pretrained(&src)?;
    std::fs::write(src.join("tokenizer.json"), "{\"fake\": true}")?;
    std::fs::write(src.join("tokenizer_config.json"), "{}")?;
    std::fs::write(src.join("generation_config.json"), "{\"do_sample\": true}")?;
    let m = CausalLm::from_pretrained(&src, CPU, Kind::Float)?;
    let dst = dir.path().join("dst");
    m.save_pretrained(&dst)?;
    assert_eq!(std::fs::read_to_string(dst.join("tokenizer.json"))?, "{\"fake\": true}");
    assert!(dst.join("tokenizer_config.json").is_file());
    assert_eq!(std::fs::read_to_string(dst.join("generation_config.json"))?, "{\"do_sample\": true}");
    Ok(())
}

#[test]
fn sharded_checkpoints_load() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let m = model(llama_cfg(), 7);
    let src = dir.path().join("single");
    m.save_pretrained(&src)?;
    let all = checkpoint::read_safetensors(&src.join("model.safetensors"))?;
    let shard = dir.path().join("sharded");
    std::fs::create_dir(&shard)?;
    std::fs::copy(src.join("config.json"), shard.join("config.json"))?;
    let (mut a, mut b) = (std::collections::BTreeMap::new(), std::collections::BTreeMap::new());
    let mut map = serde_json::Map::new();
    for (i, (k, v)) in all.into_iter().enumerate() {
        let f = if i % 2 == 0 { "model-00001-of-00002.safetensors" } else { "model-00002-of-00002.safetensors" };
        map.insert(k.clone(), f.into());
        if i % 2 == 0 {
            a.insert(k, v)
        } else {
            b.insert(k, v)
        };
    }
    checkpoint::write_safetensors(&shard.join("model-00001-of-00002.safetensors"), &a)?;
    checkpoint::write_safetensors(&shard.join("model-00002-of-00002.safetensors"), &b)?;
    std::fs::write(
        shard.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )?;
    let back = CausalLm::from_pretrained(&shard, CPU, Kind::Float)?;
    let x = ids(&[&[5, 6, 7]]);
    assert!(max_diff(&m.forward(&x, None)?, &back.forward(&x, None)?) == 0.0);
    Ok(())
}

#[test]
fn bad_checkpoints_give_one_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let m = model(gpt2_cfg(), 8);
    let good = dir.path().join("good");
    m.save_pretrained(&good)?;
    let file = good.join("model.safetensors");
    let state = checkpoint::read_safetensors(&file)?;
    let variant = |name: &str,
                   edit: &dyn Fn(&mut std::collections::BTreeMap<String, Tensor>)|
     -> Result<Result<CausalLm, Error>> {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d)?;
        std::fs::copy(good.join("config.json"), d.join("config.json"))?;
        let mut s: std::collections::BTreeMap<String, Tensor> =
            state.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
        edit(&mut s);
        checkpoint::write_safetensors(&d.join("model.safetensors"), &s)?;
        Ok(CausalLm::from_pretrained(&d, CPU, Kind::Float))
    };
    let err = |r: Result<CausalLm, Error>| r.map(|_| ()).unwrap_err().to_string();
    let e = err(variant("missing", &|s| {
        s.remove("transformer.h.1.mlp.c_fc.weight");
    })?);
    assert!(
        e.contains("missing tensor `transformer.h.1.mlp.c_fc.weight`")
            && e.contains("[32, 128]")
            && e.contains("model.safetensors"),
        "{e}"
    );
    let e = err(variant("unexpected", &|s| {
        s.insert("transformer.h.9.foo".into(), Tensor::zeros([2], (Kind::Float, CPU)));
    })?);
    assert!(e.contains("unexpected tensor `transformer.h.9.foo`"), "{e}");
    let e = err(variant("shape", &|s| {
        s.insert("transformer.wpe.weight".into(), Tensor::zeros([10, 32], (Kind::Float, CPU)));
    })?);
    assert!(
        e.contains("`transformer.wpe.weight` has shape [10, 32], expected [64, 32]")
            && e.contains("shape/model.safetensors"),
        "{e}"
    );
    // A bare GPT2Model save (no `transformer.` prefix, old attention buffers) still loads.
    let bare = variant("bare", &|s| {
        let old = std::mem::take(s);
        for (k, v) in old {
            s.insert(k.trim_start_matches("transformer.").to_string(), v);
        }
        s.insert("h.0.attn.bias".into(), Tensor::ones([1, 1, 64, 64], (Kind::Float, CPU)));
    })??;
    let x = ids(&[&[5, 6, 7]]);
    assert!(max_diff(&bare.forward(&x, None)?, &m.forward(&x, None)?) == 0.0);
    let err = CausalLm::from_pretrained(dir.path().join("nope"), CPU, Kind::Float).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    // The wrong class for a checkpoint is named as such.
    let e = SequenceClassifier::from_pretrained(&good, CPU, Kind::Float).unwrap_err().to_string();
    assert!(e.contains("from_causal_lm"), "{e}");
    let mut cfg = gpt2_cfg();
    cfg.pad_token_id = Some(0);
    SequenceClassifier::new(cfg, CPU, Kind::Float)?.save_pretrained(dir.path().join("rm"))?;
    let e = CausalLm::from_pretrained(dir.path().join("rm"), CPU, Kind::Float).unwrap_err().to_string();
    assert!(e.contains("SequenceClassifier"), "{e}");
    Ok(())
}

#[test]
fn sequence_classifier_reads_last_non_pad_token() -> Result<()> {
    for cfg in [gpt2_cfg(), llama_cfg()] {
        let mut cfg = cfg;
        cfg.pad_token_id = Some(0);
        tch::manual_seed(9);
        let rm = SequenceClassifier::new(cfg, CPU, Kind::Float)?;
        let row = [5i64, 6, 7, 8];
        let alone = rm.forward(&ids(&[&row]), None)?;
        let right = ids(&[&[5, 6, 7, 8, 0, 0], &[9, 9, 9, 9, 9, 9]]);
        let rmask = ids(&[&[1, 1, 1, 1, 0, 0], &[1; 6]]);
        let left = ids(&[&[0, 0, 5, 6, 7, 8], &[9, 9, 9, 9, 9, 9]]);
        let lmask = ids(&[&[0, 0, 1, 1, 1, 1], &[1; 6]]);
        let r = rm.forward(&right, Some(&rmask))?;
        let l = rm.forward(&left, Some(&lmask))?;
        assert!((r.double_value(&[0]) - alone.double_value(&[0])).abs() < 1e-5);
        assert!((l.double_value(&[0]) - alone.double_value(&[0])).abs() < 1e-5);
        let per_token = rm.token_scores(&right, Some(&rmask))?;
        assert!((per_token.double_value(&[0, 3]) - r.double_value(&[0])).abs() < 1e-6);
        // Round trip as *ForSequenceClassification.
        let dir = tempfile::tempdir()?;
        rm.save_pretrained(dir.path().join("rm"))?;
        let cfgj: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("rm/config.json"))?)?;
        assert!(cfgj["architectures"][0].as_str().unwrap().ends_with("ForSequenceClassification"));
        assert_eq!(cfgj["id2label"].as_object().unwrap().len(), 1);
        let back = SequenceClassifier::from_pretrained(dir.path().join("rm"), CPU, Kind::Float)?;
        assert!(max_diff(&back.forward(&right, Some(&rmask))?, &r) == 0.0);
    }
    // HF's rule with pad == eos: the score is read before a trailing eos.
    let idx = rlhf_model::heads::last_non_pad_index(&ids(&[&[5, 6, 1, 1], &[1, 1, 1, 1], &[1, 5, 6, 7]]), Some(1));
    assert_eq!(Vec::<i64>::try_from(idx)?, vec![1, 0, 3]);
    Ok(())
}

#[test]
fn reward_model_from_causal_lm_and_value_head() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lm = model(llama_cfg(), 10);
    lm.save_pretrained(dir.path().join("sft"))?;
    let rm = SequenceClassifier::from_causal_lm(dir.path().join("sft"), CPU, Kind::Float)?;
    let x = ids(&[&[5, 6, 7]]);
    let h = lm.hidden_states(&x, None, None, None)?;
    let w = rm.var_store().variables()["score.weight"].shallow_clone();
    let want = h.get(0).get(2).dot(&w.get(0));
    assert!((rm.forward(&x, None)?.double_value(&[0]) - want.double_value(&[])).abs() < 1e-5);
    let vh = ValueHead::new(32, CPU, Kind::Float);
    let v = vh.forward(&h);
    assert_eq!(v.size(), [1, 3]);
    vh.save(&dir.path().join("v.safetensors"))?;
    vh.load(&dir.path().join("v.safetensors"))?;
    Ok(())
}

#[test]
fn lora_trains_alone_switches_off_and_merges_on_save() -> Result<()> {
    for (cfg, targets) in [(gpt2_cfg(), vec!["c_attn", "mlp.c_proj"]), (llama_cfg(), vec!["q_proj", "v_proj"])] {
        let mut m = model(cfg, 11);
        let x = ids(&[&[5, 6, 7, 8]]);
        let base = m.forward(&x, None)?;
        let lc = LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.1,
            target_modules: targets.iter().map(|s| s.to_string()).collect(),
        };
        m.add_lora(&lc)?;
        assert!(max_diff(&m.forward(&x, None)?, &base) < 1e-6, "fresh adapters are a no-op");
        let trainable = m.trainable_variables();
        assert!(
            !trainable.is_empty() && trainable.iter().all(|(n, _)| n.contains(".lora_")),
            "{:?}",
            trainable.iter().map(|t| &t.0).collect::<Vec<_>>()
        );
        assert!(m.var_store().variables().values().all(|v| !v.requires_grad()));
        // A training step on the adapters only.
        let mut opt_vars: Vec<Tensor> = trainable.into_iter().map(|(_, t)| t).collect();
        let loss = m.forward(&x, None)?.pow_tensor_scalar(2).mean(Kind::Float);
        loss.backward();
        tch::no_grad(|| {
            for v in opt_vars.iter_mut() {
                let g = v.grad();
                if g.defined() {
                    let _ = v.f_sub_(&(g * 0.0)).unwrap();
                }
            }
        });
        // Make the adapters non-trivial.
        tch::no_grad(|| {
            for (n, v) in m.trainable_variables() {
                if n.contains("lora_B") {
                    v.shallow_clone().copy_(&(Tensor::randn(v.size(), (Kind::Float, CPU)) * 0.05));
                }
            }
        });
        let adapted = m.forward(&x, None)?;
        assert!(max_diff(&adapted, &base) > 1e-4);
        let off = m.with_adapters(false, |m| m.forward(&x, None))?;
        assert!(max_diff(&off, &base) < 1e-6, "adapters off = base model");
        let dir = tempfile::tempdir()?;
        m.save_pretrained(dir.path().join("merged"))?;
        let saved = checkpoint::read_safetensors(&dir.path().join("merged/model.safetensors"))?;
        assert!(saved.keys().all(|k| !k.contains("lora")));
        let merged = CausalLm::from_pretrained(dir.path().join("merged"), CPU, Kind::Float)?;
        assert!(max_diff(&merged.forward(&x, None)?, &adapted) < 1e-4);
        m.lora().unwrap().save_adapter(&dir.path().join("adapter"))?;
        m.lora().unwrap().load_adapter(&dir.path().join("adapter"))?;
        let _ = opt_vars;
    }
    let mut m = model(llama_cfg(), 12);
    let e = m.add_lora(&LoraConfig { target_modules: vec!["nope".into()], ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("match no linear layer"), "{e}");
    Ok(())
}

#[test]
fn generate_validates_input() -> Result<()> {
    let m = model(gpt2_cfg(), 13);
    let x = ids(&[&[5, 6]]);
    let e = generate(&m, &x, None, &GenerationConfig { max_new_tokens: 100, ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("n_positions"), "{e}");
    let e = generate(&m, &x, None, &GenerationConfig { temperature: 0.0, ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("temperature"), "{e}");
    let g = generate(&m, &x, None, &GenerationConfig { max_new_tokens: 0, ..Default::default() })?;
    assert_eq!(g.tokens.size(), [1, 0]);
    Ok(())
}

#[test]
fn the_benchmark_models_parse_as_the_benches_describe_them() -> Result<()> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../benches/models/llama-8k.json");
    let ModelConfig { arch: rlhf_model::config::ArchConfig::Llama(l), .. } = ModelConfig::from_file(file)? else {
        panic!("{file} is not a Llama");
    };
    let sizes = (l.vocab_size, l.hidden_size, l.intermediate_size, l.num_hidden_layers, l.num_attention_heads);
    assert_eq!((sizes, l.num_key_value_heads, l.tie_word_embeddings), ((8192, 256, 768, 8, 8), Some(4), false));
    Ok(())
}
