//! AdamW, gradient clipping and the learning-rate schedule shared by every trainer.
//!
//! [`AdamW`] follows `torch.optim.AdamW` (single-tensor path, the CPU default) operation for
//! operation, so the same gradients give the same parameters. Its state is keyed by parameter name
//! and saved to safetensors, so a resumed run continues bit-exactly.
//!
//! Mixed precision: a bf16 parameter is updated through an fp32 master copy with fp32 moments (the
//! gradient is upcast, the updated master is rounded back into the parameter), so small updates
//! are not lost to bf16 rounding. f16 parameters are refused: they need loss scaling.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// AdamW hyper-parameters (the learning rate comes from [`LrSchedule`] at each step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay: each step multiplies parameters by `1 - lr * weight_decay`.
    pub weight_decay: f64,
    /// Parameters whose name contains any of these strings get no weight decay.
    pub no_decay: Vec<String>,
}

impl Default for AdamWConfig {
    /// `torch.optim.AdamW`'s defaults; biases and norm weights (GPT-2 and Llama names) skip decay.
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            no_decay: ["bias", "ln_", "norm"].map(String::from).to_vec(),
        }
    }
}

/// A parameter's running moments, created at its first update like PyTorch's lazy state.
struct Moments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: i64,
    /// The fp32 master copy of a bf16 parameter (`None` for an f32 one, updated in place).
    master: Option<Tensor>,
}

/// Whether a parameter of `kind` trains through an fp32 master copy.
fn needs_master(kind: Kind) -> bool {
    kind == Kind::BFloat16
}

struct Param {
    name: String,
    tensor: Tensor,
    decay: bool,
    moments: Option<Moments>,
}

/// AdamW over named parameters, with PyTorch's numerics.
pub struct AdamW {
    config: AdamWConfig,
    /// Sorted by name, so iteration (and the clipping norm's summation order) is deterministic.
    params: Vec<Param>,
}

impl AdamW {
    /// Optimizes the trainable (`requires_grad`) variables of `vs`.
    pub fn new(vs: &tch::nn::VarStore, config: AdamWConfig) -> Self {
        let trainable = vs.variables().into_iter().filter(|(_, tensor)| tensor.requires_grad());
        Self::from_named(trainable, config)
    }

    /// Optimizes the given named tensors (e.g. LoRA adapters gathered from several stores).
    pub fn from_named(named: impl IntoIterator<Item = (String, Tensor)>, config: AdamWConfig) -> Self {
        let mut params: Vec<Param> = named
            .into_iter()
            .map(|(name, tensor)| {
                let decay = !config.no_decay.iter().any(|pattern| name.contains(pattern.as_str()));
                Param { name, tensor, decay, moments: None }
            })
            .collect();
        params.sort_by(|a, b| a.name.cmp(&b.name));
        AdamW { config, params }
    }

    /// Names of the optimized parameters, sorted.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|param| param.name.as_str())
    }

    /// One AdamW update at learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        let AdamWConfig { beta1, beta2, eps, weight_decay, .. } = self.config;
        tch::no_grad(|| {
            for param in &mut self.params {
                let grad = param.tensor.grad();
                if !grad.defined() {
                    continue;
                }
                if param.tensor.kind() == Kind::Half {
                    return Err(Error::invalid(format!(
                        "`{}` is f16: training in f16 needs loss scaling, which rlhf-rs does not do; use bf16 (fp32 master weights) or f32",
                        param.name
                    )));
                }
                let master = needs_master(param.tensor.kind());
                let moments = match &mut param.moments {
                    Some(moments) => moments,
                    None => {
                        let master = if master { Some(param.tensor.f_to_kind(Kind::Float)?) } else { None };
                        let like = master.as_ref().unwrap_or(&param.tensor);
                        param.moments.insert(Moments {
                            exp_avg: like.f_zeros_like()?,
                            exp_avg_sq: like.f_zeros_like()?,
                            step: 0,
                            master,
                        })
                    }
                };
                let grad = if master { grad.f_to_kind(Kind::Float)? } else { grad };
                let mut target = moments.master.as_ref().unwrap_or(&param.tensor).shallow_clone();
                moments.step += 1;
                if param.decay && weight_decay != 0.0 {
                    let _ = target.f_mul_scalar_(1.0 - lr * weight_decay)?;
                }
                let _ = moments.exp_avg.f_lerp_(&grad, 1.0 - beta1)?;
                // PyTorch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2). tch's addcmul_
                // has no `value`; the kernel computes self + value * t1 * t2 left to right, so folding
                // the value into t1 first gives the same bits.
                let scaled_grad = grad.f_mul_scalar(1.0 - beta2)?;
                let _ = moments.exp_avg_sq.f_mul_scalar_(beta2)?.f_addcmul_(&scaled_grad, &grad)?;
                let step = moments.step as f64;
                let bias_correction1 = 1.0 - beta1.powf(step);
                let bias_correction2 = 1.0 - beta2.powf(step);
                let step_size = lr / bias_correction1;
                let bias_correction2_sqrt = bias_correction2.powf(0.5);
                let denom = moments.exp_avg_sq.f_sqrt()?.f_div_scalar(bias_correction2_sqrt)?.f_add_scalar(eps)?;
                // PyTorch: param.addcdiv_(exp_avg, denom, value=-step_size); same folding as above.
                let scaled_exp_avg = moments.exp_avg.f_mul_scalar(-step_size)?;
                let _ = target.f_addcdiv_(&scaled_exp_avg, &denom)?;
                if master {
                    param.tensor.f_copy_(&target)?;
                }
            }
            Ok(())
        })
    }

    /// Zeroes every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for param in &mut self.params {
            param.tensor.zero_grad();
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`, like
    /// `torch.nn.utils.clip_grad_norm_`, and returns the norm before clipping (0 without gradients).
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Result<f64> {
        tch::no_grad(|| {
            let mut grads: Vec<Tensor> =
                self.params.iter().map(|param| param.tensor.grad()).filter(Tensor::defined).collect();
            let Some(first) = grads.first() else {
                return Ok(0.0);
            };
            let device = first.device();
            let norms = grads
                .iter()
                .map(|grad| grad.f_norm()?.f_to_device(device))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let total_norm = Tensor::f_stack(&norms, 0)?.f_norm()?;
            // `norm()` is torch.norm, which PyTorch computes with linalg.vector_norm (what
            // clip_grad_norm_ calls). PyTorch: clamp(max_norm / (total_norm + 1e-6), max=1.0), where float / tensor is
            // tensor.reciprocal() * float.
            let clip_coef = total_norm.f_add_scalar(1e-6)?.f_reciprocal()?.f_mul_scalar(max_norm)?.f_clamp_max(1.0)?;
            for grad in &mut grads {
                let _ = grad.f_mul_(&clip_coef.f_to_device(grad.device())?)?;
            }
            Ok(total_norm.f_double_value(&[])?)
        })
    }

    /// Saves every parameter's moments and step count (`<name>.exp_avg`, `<name>.exp_avg_sq`,
    /// `<name>.step`, and a bf16 parameter's fp32 `<name>.master`) to a safetensors file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut named = Vec::new();
        for param in &self.params {
            if let Some(moments) = &param.moments {
                for (suffix, tensor) in [("exp_avg", &moments.exp_avg), ("exp_avg_sq", &moments.exp_avg_sq)] {
                    named.push((state_key(&param.name, suffix), tensor.f_to_device(Device::Cpu)?.f_contiguous()?));
                }
                named.push((state_key(&param.name, "step"), Tensor::from(moments.step)));
                if let Some(master) = &moments.master {
                    named.push((state_key(&param.name, "master"), master.f_to_device(Device::Cpu)?.f_contiguous()?));
                }
            }
        }
        Tensor::write_safetensors(&named, path).map_err(|err| Error::checkpoint(path, err))
    }

    /// Restores state written by [`AdamW::save`] for the same parameters (moved to each parameter's
    /// device). Parameters absent from the file start fresh, as they had not been updated yet.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut saved: HashMap<String, Tensor> =
            Tensor::read_safetensors(path).map_err(|err| Error::checkpoint(path, err))?.into_iter().collect();
        let mut restored = Vec::with_capacity(self.params.len());
        for param in &self.params {
            let mut take = |suffix: &str| saved.remove(&state_key(&param.name, suffix));
            let moments = match (take("exp_avg"), take("exp_avg_sq"), take("step")) {
                (None, None, None) => None,
                (Some(exp_avg), Some(exp_avg_sq), Some(step)) => {
                    let shape = param.tensor.size();
                    if exp_avg.size() != shape || exp_avg_sq.size() != shape {
                        return Err(Error::checkpoint(
                            path,
                            format!(
                                "optimizer state for `{}` has shape {:?}, but the parameter has shape {shape:?}",
                                param.name,
                                exp_avg.size()
                            ),
                        ));
                    }
                    let device = param.tensor.device();
                    // A bf16 parameter resumes from its saved master (the parameter is its rounding);
                    // state saved without one (f32 training) starts the master from the parameter.
                    let master = match (needs_master(param.tensor.kind()), take("master")) {
                        (true, Some(master)) if master.size() == shape => Some(master.f_to_device(device)?),
                        (true, Some(_)) => {
                            return Err(Error::checkpoint(
                                path,
                                format!("master copy of `{}` has another shape", param.name),
                            ));
                        }
                        (true, None) => Some(param.tensor.f_to_kind(Kind::Float)?),
                        (false, _) => None,
                    };
                    let kind = if master.is_some() { Kind::Float } else { param.tensor.kind() };
                    Some(Moments {
                        exp_avg: exp_avg.f_to_device(device)?.f_to_kind(kind)?,
                        exp_avg_sq: exp_avg_sq.f_to_device(device)?.f_to_kind(kind)?,
                        step: step.f_int64_value(&[])?,
                        master,
                    })
                }
                _ => {
                    return Err(Error::checkpoint(path, format!("incomplete optimizer state for `{}`", param.name)));
                }
            };
            restored.push(moments);
        }
        if let Some(unknown) = saved.keys().min() {
            return Err(Error::checkpoint(
                path,
                format!("optimizer state `{unknown}` belongs to no parameter of this model"),
            ));
        }
        for (param, moments) in self.params.iter_mut().zip(restored) {
            param.moments = moments;
        }
        Ok(())
    }
}

fn state_key(name: &str, suffix: &str) -> String {
    format!("{name}.{suffix}")
}

/// The shape of the learning-rate curve after warmup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Stay at the peak rate.
    Constant,
    /// Half a cosine from the peak rate down to `min_lr_ratio * peak` at `total_steps`.
    #[default]
    Cosine,
}

/// Linear warmup, then constant or cosine decay: a pure function of the step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub kind: ScheduleKind,
    pub peak_lr: f64,
    /// Steps `0..warmup_steps` ramp linearly up to the peak (step `warmup_steps - 1` reaches it).
    pub warmup_steps: u64,
    /// Total optimizer steps of the run; the cosine ends here and stays at its minimum after.
    pub total_steps: u64,
    /// Final learning rate as a fraction of the peak (cosine only).
    pub min_lr_ratio: f64,
}

impl LrSchedule {
    /// Learning rate for the optimizer step with 0-based index `step`.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            ScheduleKind::Constant => self.peak_lr,
            ScheduleKind::Cosine => {
                let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                self.peak_lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
            }
        }
    }
}
