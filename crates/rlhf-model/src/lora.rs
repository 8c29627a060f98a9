//! LoRA adapters (Hu et al. 2021, PEFT conventions) on the transformer's linear layers.
//!
//! `y = W x + b + (alpha / r) * B(A(dropout(x)))` with `A [r, in]` (Kaiming-uniform, as PEFT) and
//! `B [out, r]` (zeros, so a fresh adapter changes nothing). Adapters live in their own `VarStore`
//! (names `<module>.lora_A.weight`, `<module>.lora_B.weight`) so an optimizer sees only them; the
//! base weights are frozen. They can be switched off per forward pass (the reference model is the
//! base with adapters off) and are merged into the base weights when the model is saved, so the
//! checkpoint stays a plain HF checkpoint.

use crate::error::{Error, Result};
use crate::layers::Linear;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// Which linear layers get adapters, and their shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r` of the update.
    pub r: i64,
    /// Scaling numerator: the update is multiplied by `alpha / r`.
    pub alpha: f64,
    /// Dropout on the adapter input (training mode only).
    #[serde(default)]
    pub dropout: f64,
    /// Module names (last path component like `q_proj`, `c_attn`, or a dotted suffix like
    /// `attn.c_proj`) that receive adapters.
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig { r: 8, alpha: 16.0, dropout: 0.0, target_modules: vec!["q_proj".into(), "v_proj".into()] }
    }
}

impl LoraConfig {
    /// `alpha / r`.
    pub fn scaling(&self) -> f64 {
        self.alpha / self.r as f64
    }
    /// Whether the module at `name` (full dotted path) is targeted.
    pub fn targets(&self, name: &str) -> bool {
        self.target_modules.iter().any(|t| name == t || name.ends_with(&format!(".{t}")))
    }
}

/// One adapter pair attached to a [`Linear`].
#[derive(Debug)]
pub(crate) struct LoraAdapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: f64,
}

impl LoraAdapter {
    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let x = if train && self.dropout > 0.0 { x.dropout(self.dropout, true) } else { x.shallow_clone() };
        x.linear::<Tensor>(&self.a, None).linear::<Tensor>(&self.b, None) * self.scale
    }
    /// `scale * B A`, `[out, in]`.
    pub(crate) fn delta_weight(&self) -> Tensor {
        self.b.matmul(&self.a) * self.scale
    }
}

/// The adapters of a model: their config and the `VarStore` holding `lora_A`/`lora_B`.
#[derive(Debug)]
pub struct Lora {
    /// The config the adapters were built with.
    pub config: LoraConfig,
    /// Trainable adapter weights only (hand this to the optimizer).
    pub var_store: VarStore,
}

impl Lora {
    /// Names of the adapted modules.
    pub fn modules(&self) -> Vec<String> {
        let mut m: Vec<String> = self
            .var_store
            .variables()
            .keys()
            .filter_map(|k| k.strip_suffix(".lora_A.weight").map(str::to_string))
            .collect();
        m.sort();
        m
    }

    /// Number of trainable adapter parameters.
    pub fn num_parameters(&self) -> i64 {
        self.var_store.variables().values().map(|t| t.numel() as i64).sum()
    }

    /// Writes the adapters in PEFT layout (`adapter_model.safetensors` with names
    /// `base_model.model.<module>.lora_{A,B}.weight`, plus `adapter_config.json`).
    pub fn save_adapter(&self, dir: &Path) -> Result<()> {
        crate::checkpoint::save_dir_atomically(dir, |tmp| {
            let tensors: BTreeMap<String, Tensor> =
                self.var_store.variables().into_iter().map(|(k, v)| (format!("base_model.model.{k}"), v)).collect();
            crate::checkpoint::write_safetensors(&tmp.join("adapter_model.safetensors"), &tensors)?;
            let cfg = serde_json::json!({
                "peft_type": "LORA",
                "r": self.config.r,
                "lora_alpha": self.config.alpha,
                "lora_dropout": self.config.dropout,
                "target_modules": self.config.target_modules,
                "bias": "none",
                "fan_in_fan_out": false,
            });
            crate::checkpoint::write_json(&tmp.join("adapter_config.json"), &cfg)
        })
    }

    /// Loads adapter weights saved by [`Self::save_adapter`] into these adapters (same config).
    pub fn load_adapter(&self, dir: &Path) -> Result<()> {
        let file = dir.join("adapter_model.safetensors");
        let tensors = crate::checkpoint::read_safetensors(&file)?;
        let vars = self.var_store.variables();
        for (name, var) in &vars {
            let key = format!("base_model.model.{name}");
            let src = tensors.get(&key).ok_or_else(|| Error::MissingTensor {
                name: key.clone(),
                expected: var.size(),
                file: file.clone(),
            })?;
            if src.size() != var.size() {
                return Err(Error::ShapeMismatch { name: key, expected: var.size(), found: src.size(), file });
            }
            tch::no_grad(|| var.shallow_clone().f_copy_(src))?;
        }
        if let Some(extra) = tensors.keys().find(|k| !vars.contains_key(k.trim_start_matches("base_model.model."))) {
            return Err(Error::UnexpectedTensor { name: extra.clone(), found: tensors[extra].size(), file });
        }
        Ok(())
    }
}

/// Attaches fresh adapters to every targeted linear; returns the adapters' store.
pub(crate) fn attach(linears: Vec<&mut Linear>, cfg: &LoraConfig, device: Device, kind: Kind) -> Result<Lora> {
    if cfg.r <= 0 {
        return Err(Error::invalid(format!("LoRA rank must be positive, got {}", cfg.r)));
    }
    if !(0.0..1.0).contains(&cfg.dropout) {
        return Err(Error::invalid(format!("LoRA dropout must be in [0, 1), got {}", cfg.dropout)));
    }
    let mut vs = VarStore::new(device);
    vs.set_kind(kind);
    let mut matched = 0;
    for lin in linears {
        if !cfg.targets(&lin.name) {
            continue;
        }
        if lin.lora.is_some() {
            return Err(Error::invalid(format!("module `{}` already has a LoRA adapter", lin.name)));
        }
        let p = lin.name.split('.').fold(vs.root(), |p, c| p / c);
        let (in_f, out_f) = (lin.in_features(), lin.out_features());
        let bound = 1.0 / (in_f as f64).sqrt();
        let a = (Tensor::rand([cfg.r, in_f], (Kind::Float, device)) * (2.0 * bound) - bound).to_kind(kind);
        let a = (&p / "lora_A").add("weight", a, true);
        let b = (&p / "lora_B").add("weight", Tensor::zeros([out_f, cfg.r], (kind, device)), true);
        lin.lora = Some(LoraAdapter { a, b, scale: cfg.scaling(), dropout: cfg.dropout });
        matched += 1;
    }
    if matched == 0 {
        return Err(Error::invalid(format!(
            "LoRA target_modules {:?} match no linear layer of the model",
            cfg.target_modules
        )));
    }
    Ok(Lora { config: cfg.clone(), var_store: vs })
}
