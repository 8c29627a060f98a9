//! AdamW, gradient clipping and the learning-rate schedule.
//!
//! `tests/fixtures/optim/adamw.safetensors` is a trajectory of `torch.optim.AdamW` with
//! `clip_grad_norm_` (`make_fixtures.py`). The Rust optimizer must reproduce it bit for bit on the CPU
//! that made it (its metadata records the CPU); torch's own trajectory moves in the last bit from one
//! CPU to another, so elsewhere the test allows a relative error of [`TOLERANCE_ACROSS_CPUS`].

use anyhow::Result;
use rlhf_model::{AdamW, AdamWConfig, LrSchedule, ScheduleKind};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const PARAM_NAMES: [&str; 3] = ["h.0.mlp.c_fc.bias", "h.0.mlp.c_fc.weight", "ln_f.weight"];

fn torch_config() -> AdamWConfig {
    AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, ..AdamWConfig::default() }
}

/// How far, relative to torch's value, a parameter may sit from it when the fixture came from another
/// CPU: torch's own trajectory differed by up to 4e-7 (four f32 ulps, from one ulp at step 2 carried
/// on) between the two CPUs the fixture has been made on.
const TOLERANCE_ACROSS_CPUS: f64 = 1e-6;

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/optim/adamw.safetensors")
}

fn reference() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture_path()).unwrap().into_iter().collect()
}

/// `model name | flags` of the first processor in /proc/cpuinfo, as `make_fixtures.py` records it.
fn cpu_fingerprint() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let field = |key: &str| {
        cpuinfo.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == key).then(|| value.trim().to_string())
        })
    };
    Some(format!("{} | {}", field("model name")?, field("flags")?))
}

/// Whether the fixture was made on a CPU like this one, where torch and the Rust optimizer agree bit
/// for bit.
fn fixture_made_on_this_cpu() -> bool {
    let bytes = std::fs::read(fixture_path()).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let recorded = header.metadata().as_ref().and_then(|metadata| metadata.get("cpu").cloned());
    let same = recorded.is_some() && recorded == cpu_fingerprint();
    if !same {
        eprintln!("the optimizer fixture comes from another CPU: comparing within {TOLERANCE_ACROSS_CPUS:e}");
    }
    same
}

/// Asserts that `actual` is torch's `expected`: the same bits on the fixture's CPU, within
/// [`TOLERANCE_ACROSS_CPUS`] elsewhere.
fn assert_matches_torch(actual: &Tensor, expected: &Tensor, exact: bool, what: &str) {
    let diff = (actual - expected).abs();
    let max_diff = diff.max().double_value(&[]);
    if exact {
        assert!(actual.equal(expected), "{what}: max |diff| {max_diff:e}");
    } else {
        let allowed = expected.abs().clamp_min(f64::from(f32::MIN_POSITIVE)) * TOLERANCE_ACROSS_CPUS;
        let within = diff.le_tensor(&allowed).all().int64_value(&[]) == 1;
        assert!(within, "{what}: max |diff| {max_diff:e} is more than {TOLERANCE_ACROSS_CPUS:e} relative");
    }
}

/// A var store holding `values` under their dotted names.
fn var_store(values: &[(&str, &Tensor)]) -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    for (name, value) in values {
        let (parents, leaf) = name.rsplit_once('.').unwrap();
        let path = parents.split('.').fold(vs.root(), |path, part| path / part);
        let _ = path.var_copy(leaf, value);
    }
    vs
}

/// A var store with the reference's initial parameter values.
fn initial_var_store(reference: &HashMap<String, Tensor>) -> VarStore {
    var_store(&PARAM_NAMES.map(|name| (name, &reference[&format!("init.{name}")])))
}

/// The reference gradients of one step, by parameter name.
fn reference_grads(reference: &HashMap<String, Tensor>, step: usize) -> HashMap<&'static str, Tensor> {
    PARAM_NAMES.iter().map(|name| (*name, reference[&format!("grad.{step}.{name}")].shallow_clone())).collect()
}

/// Gives every variable of `vs` the gradient `grads[name]` (through a linear loss).
fn set_grads(vs: &VarStore, grads: &HashMap<&str, Tensor>) {
    let variables = vs.variables();
    let loss =
        grads.iter().map(|(name, grad)| (&variables[*name] * grad).sum(Kind::Float)).reduce(|a, b| a + b).unwrap();
    loss.backward();
}

#[test]
fn matches_torch_adamw_with_clipping() -> Result<()> {
    let reference = reference();
    let exact = fixture_made_on_this_cpu();
    let vs = initial_var_store(&reference);
    let mut optimizer = AdamW::new(&vs, torch_config());
    assert_eq!(optimizer.param_names().collect::<Vec<_>>(), PARAM_NAMES);
    let lrs = Vec::<f64>::try_from(&reference["lrs"])?;
    let norms = Vec::<f64>::try_from(&reference["norms"])?;
    for (step, (&lr, &torch_norm)) in lrs.iter().zip(&norms).enumerate() {
        optimizer.zero_grad();
        set_grads(&vs, &reference_grads(&reference, step));
        let norm = optimizer.clip_grad_norm(1.0)?;
        assert_eq!(norm as f32, torch_norm as f32, "step {step}: pre-clip norm");
        optimizer.step(lr)?;
        let variables = vs.variables();
        for name in PARAM_NAMES {
            let expected = &reference[&format!("after.{step}.{name}")];
            assert_matches_torch(&variables[name], expected, exact, &format!("step {step}, {name}"));
        }
    }
    Ok(())
}

#[test]
fn saved_state_matches_torch_and_resumes_bit_exactly() -> Result<()> {
    let reference = reference();
    let exact = fixture_made_on_this_cpu();
    let lrs = Vec::<f64>::try_from(&reference["lrs"])?;
    let step_with = |vs: &VarStore, optimizer: &mut AdamW, step: usize| -> Result<()> {
        optimizer.zero_grad();
        set_grads(vs, &reference_grads(&reference, step));
        optimizer.clip_grad_norm(1.0)?;
        Ok(optimizer.step(lrs[step])?)
    };

    let vs = initial_var_store(&reference);
    let mut optimizer = AdamW::new(&vs, torch_config());
    for step in 0..3 {
        step_with(&vs, &mut optimizer, step)?;
    }
    let dir = tempfile::tempdir()?;
    let state_path = dir.path().join("optimizer.safetensors");
    optimizer.save(&state_path)?;

    let trained = vs.variables();
    let resumed_vs = var_store(&trained.iter().map(|(name, value)| (name.as_str(), value)).collect::<Vec<_>>());
    let mut resumed = AdamW::new(&resumed_vs, torch_config());
    resumed.load(&state_path)?;
    for step in 3..lrs.len() {
        step_with(&vs, &mut optimizer, step)?;
        step_with(&resumed_vs, &mut resumed, step)?;
    }
    let (original, continued) = (vs.variables(), resumed_vs.variables());
    for name in PARAM_NAMES {
        assert!(original[name].equal(&continued[name]), "{name} diverged after resume");
        assert_matches_torch(&original[name], &reference[&format!("after.5.{name}")], exact, name);
    }
    let final_state = dir.path().join("final.safetensors");
    resumed.save(&final_state)?;
    let saved: HashMap<String, Tensor> = Tensor::read_safetensors(&final_state)?.into_iter().collect();
    for name in PARAM_NAMES {
        for moment in ["exp_avg", "exp_avg_sq"] {
            let torch_moment = &reference[&format!("{moment}.{name}")];
            assert_matches_torch(&saved[&format!("{name}.{moment}")], torch_moment, exact, &format!("{name}.{moment}"));
        }
        assert_eq!(saved[&format!("{name}.step")].int64_value(&[]), lrs.len() as i64);
    }
    Ok(())
}

#[test]
fn weight_decay_skips_biases_and_norms() -> Result<()> {
    let ones = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let names = ["attn.c_proj.weight", "attn.c_proj.bias", "ln_1.weight", "input_layernorm.weight"];
    let vs = var_store(&names.map(|name| (name, &ones)));
    let mut optimizer = AdamW::new(&vs, AdamWConfig { weight_decay: 0.5, ..AdamWConfig::default() });
    // A zero gradient leaves only the decoupled decay: p *= 1 - lr * weight_decay.
    set_grads(&vs, &names.iter().map(|name| (*name, Tensor::zeros([4], (Kind::Float, Device::Cpu)))).collect());
    optimizer.step(0.1)?;
    let values = vs.variables();
    assert_eq!(Vec::<f32>::try_from(&values["attn.c_proj.weight"])?, vec![0.95; 4]);
    for name in &names[1..] {
        assert_eq!(Vec::<f32>::try_from(&values[*name])?, vec![1.0; 4], "{name}");
    }
    Ok(())
}

#[test]
fn parameters_without_gradients_are_untouched() -> Result<()> {
    let value = Tensor::from_slice(&[1.0f32, -2.0]);
    let vs = var_store(&[("a.weight", &value), ("b.weight", &value)]);
    let mut optimizer = AdamW::new(&vs, AdamWConfig::default());
    assert_eq!(optimizer.clip_grad_norm(1.0)?, 0.0, "no gradients yet");
    set_grads(&vs, &HashMap::from([("a.weight", Tensor::from_slice(&[0.5f32, 0.5]))]));
    optimizer.step(0.01)?;
    let values = vs.variables();
    assert!(!values["a.weight"].equal(&value));
    assert!(values["b.weight"].equal(&value));
    Ok(())
}

#[test]
fn frozen_variables_are_not_optimized() {
    let vs = var_store(&[("trainable.weight", &Tensor::ones([2], (Kind::Float, Device::Cpu)))]);
    let frozen = vs.root().sub("frozen").var("weight", &[2], tch::nn::Init::Const(1.0));
    let _ = frozen.set_requires_grad(false);
    let optimizer = AdamW::new(&vs, AdamWConfig::default());
    assert_eq!(optimizer.param_names().collect::<Vec<_>>(), ["trainable.weight"]);
}

#[test]
fn loading_state_of_another_model_fails_with_the_file_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("optimizer.safetensors");
    let vs = var_store(&[("a.weight", &Tensor::ones([3], (Kind::Float, Device::Cpu)))]);
    let mut optimizer = AdamW::new(&vs, AdamWConfig::default());
    set_grads(&vs, &HashMap::from([("a.weight", Tensor::ones([3], (Kind::Float, Device::Cpu)))]));
    optimizer.step(0.1)?;
    optimizer.save(&path)?;

    let other_shape = var_store(&[("a.weight", &Tensor::ones([4], (Kind::Float, Device::Cpu)))]);
    let error = AdamW::new(&other_shape, AdamWConfig::default()).load(&path).unwrap_err().to_string();
    assert!(error.contains("optimizer.safetensors") && error.contains("shape [3]"), "{error}");

    let other_name = var_store(&[("b.weight", &Tensor::ones([3], (Kind::Float, Device::Cpu)))]);
    let error = AdamW::new(&other_name, AdamWConfig::default()).load(&path).unwrap_err().to_string();
    assert!(error.contains("`a.weight.exp_avg` belongs to no parameter"), "{error}");
    Ok(())
}

#[test]
fn schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor() {
    let schedule =
        LrSchedule { kind: ScheduleKind::Cosine, peak_lr: 1e-3, warmup_steps: 4, total_steps: 14, min_lr_ratio: 0.1 };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-15;
    assert!(close(schedule.lr_at(0), 2.5e-4));
    assert!(close(schedule.lr_at(3), 1e-3));
    assert!(close(schedule.lr_at(4), 1e-3));
    assert!(close(schedule.lr_at(9), 1e-3 * (0.1 + 0.9 * 0.5)), "half way down");
    assert!(close(schedule.lr_at(14), 1e-4));
    assert!(close(schedule.lr_at(1000), 1e-4), "stays at the floor");
    let lrs: Vec<f64> = (4..=14).map(|step| schedule.lr_at(step)).collect();
    assert!(lrs.windows(2).all(|pair| pair[1] < pair[0]), "strictly decreasing: {lrs:?}");

    let constant = LrSchedule { kind: ScheduleKind::Constant, ..schedule };
    assert!(close(constant.lr_at(1), 5e-4));
    assert!(close(constant.lr_at(50), 1e-3));
    let no_warmup = LrSchedule { warmup_steps: 0, total_steps: 10, ..schedule };
    assert!(close(no_warmup.lr_at(0), 1e-3), "the first step runs at the peak");
    assert!(close(no_warmup.lr_at(10), 1e-4));
}

/// One tensor `w` trained by AdamW from `init` with the same gradient each step, in `kind`.
fn train_one(init: &Tensor, grad: &Tensor, kind: Kind, steps: usize, lr: f64) -> Result<(Tensor, AdamW)> {
    let w = init.copy().to_kind(kind).set_requires_grad(true);
    let mut optimizer = AdamW::from_named([("w".to_string(), w.shallow_clone())], AdamWConfig::default());
    for _ in 0..steps {
        optimizer.zero_grad();
        (&w * grad.to_kind(kind)).sum(Kind::Float).backward();
        optimizer.step(lr)?;
    }
    Ok((w, optimizer))
}

#[test]
fn bf16_trains_through_an_fp32_master_copy_and_resumes_from_it() -> Result<()> {
    tch::manual_seed(3);
    let init = Tensor::randn([64], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16).to_kind(Kind::Float);
    let grad = Tensor::randn([64], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16).to_kind(Kind::Float);
    // Updates of 1e-4 are far below bf16's spacing near 1: without a master copy nothing would move.
    let (w32, _) = train_one(&init, &grad, Kind::Float, 30, 1e-4)?;
    let (w16, optimizer) = train_one(&init, &grad, Kind::BFloat16, 30, 1e-4)?;
    assert_eq!(w16.kind(), Kind::BFloat16);
    assert!(w16.equal(&w32.to_kind(Kind::BFloat16)), "the bf16 parameter is the rounding of the fp32 trajectory");
    assert!(!w16.equal(&init.to_kind(Kind::BFloat16)), "small updates accumulate in the master copy");

    // Resume: the saved state holds the master copy, so continuing gives the same bits.
    let dir = tempfile::tempdir()?;
    optimizer.save(dir.path().join("optimizer.safetensors"))?;
    let resumed_w = w16.detach().copy().set_requires_grad(true);
    let mut resumed = AdamW::from_named([("w".to_string(), resumed_w.shallow_clone())], AdamWConfig::default());
    resumed.load(dir.path().join("optimizer.safetensors"))?;
    let (w32_more, _) = train_one(&init, &grad, Kind::Float, 40, 1e-4)?;
    for _ in 0..10 {
        resumed.zero_grad();
        (&resumed_w * grad.to_kind(Kind::BFloat16)).sum(Kind::Float).backward();
        resumed.step(1e-4)?;
    }
    assert!(resumed_w.equal(&w32_more.to_kind(Kind::BFloat16)), "resumed from the master, not from the rounding");
    Ok(())
}

#[test]
fn f16_training_is_refused_with_a_clear_error() {
    let init = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let err = train_one(&init, &init, Kind::Half, 1, 1e-3).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("`w` is f16: training in f16 needs loss scaling") && err.contains("bf16"), "{err}");
}
