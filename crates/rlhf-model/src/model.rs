//! The architecture-independent model API: [`Transformer`] (GPT-2 or Llama trunk) and
//! [`CausalLm`] (trunk + LM head), with HF checkpoint loading/saving, LoRA and train/eval switches.
//!
//! `forward(input_ids [B,T], attention_mask [B,S], position_ids [B,T], cache)` returns logits
//! `[B,T,V]` (and the final hidden states for heads). Without explicit position ids they come from
//! the attention mask (`cumsum(mask) - 1`, 0 on padding), so left padding is handled.

use crate::cache::KvCache;
use crate::checkpoint::{self, LoadRules};
use crate::config::{ArchConfig, ModelConfig};
use crate::error::{Error, Result};
use crate::gpt2::Gpt2Model;
use crate::layers::{position_ids_from_mask, AttnMask, Ctx, Fill, Linear};
use crate::llama::LlamaModel;
use crate::lora::{self, Lora, LoraConfig};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// A transformer trunk of either family; callers need not care which.
#[derive(Debug)]
pub enum Transformer {
    Gpt2(Gpt2Model),
    Llama(LlamaModel),
}

impl Transformer {
    /// Builds the trunk under `root / <base prefix>` of a var store.
    pub fn new(root: &tch::nn::Path, config: &ModelConfig, load: bool) -> Result<Self> {
        let p = root / config.base_prefix();
        Ok(match &config.arch {
            ArchConfig::Gpt2(c) => Transformer::Gpt2(Gpt2Model::new(&p, c, load)?),
            ArchConfig::Llama(c) => Transformer::Llama(LlamaModel::new(&p, c, config.model_type == "qwen2", load)?),
        })
    }

    /// Input embedding matrix `[vocab, hidden]`.
    pub fn embeddings(&self) -> &Tensor {
        match self {
            Transformer::Gpt2(m) => m.embeddings(),
            Transformer::Llama(m) => m.embeddings(),
        }
    }

    pub(crate) fn linears_mut(&mut self) -> Vec<&mut Linear> {
        match self {
            Transformer::Gpt2(m) => m.linears_mut(),
            Transformer::Llama(m) => m.linears_mut(),
        }
    }
    pub(crate) fn linears(&self) -> Vec<&Linear> {
        match self {
            Transformer::Gpt2(m) => m.linears(),
            Transformer::Llama(m) => m.linears(),
        }
    }

    /// Final hidden states `[B, T, H]`. `key_mask` is the `[B, past + T]` padding mask or `None`
    /// when nothing is padded (no host sync happens here).
    pub(crate) fn forward(
        &self,
        input_ids: &Tensor,
        key_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        ctx: Ctx,
    ) -> Tensor {
        let (b, t) = (input_ids.size()[0], input_ids.size()[1]);
        let device = input_ids.device();
        let past = cache.as_ref().map_or(0, |c| c.len());
        if let Some(c) = cache.as_deref_mut() {
            c.reserve(t);
        }
        let pos = match (position_ids, key_mask) {
            (Some(p), _) => p.shallow_clone(),
            (None, Some(m)) => position_ids_from_mask(m).narrow(1, past, t),
            (None, None) => {
                Tensor::arange_start(past, past + t, (Kind::Int64, device)).unsqueeze(0).expand([b, t], false)
            }
        };
        let mask = AttnMask::build(key_mask, past, t, device);
        let hidden = match self {
            Transformer::Gpt2(m) => m.forward(input_ids, &pos, &mask, cache.as_deref_mut(), ctx),
            Transformer::Llama(m) => m.forward(input_ids, &pos, &mask, cache.as_deref_mut(), ctx),
        };
        if let Some(c) = cache {
            c.advance(t);
        }
        hidden
    }
}

/// What both model kinds (LM and classifier) share: config, weights, trunk, adapters, switches.
#[derive(Debug)]
pub(crate) struct Core {
    pub config: ModelConfig,
    pub vs: VarStore,
    pub transformer: Transformer,
    pub lora: Option<Lora>,
    pub training: Cell<bool>,
    pub adapters_enabled: Cell<bool>,
    pub source_dir: Option<PathBuf>,
}

impl Core {
    /// Builds the var store (in `kind` on `device`) and the trunk; `head` adds head variables.
    pub fn build<H>(
        config: ModelConfig,
        device: Device,
        kind: Kind,
        load: bool,
        head: impl FnOnce(&tch::nn::Path, &ModelConfig, &Transformer) -> Result<H>,
    ) -> Result<(Core, H)> {
        config.validate()?;
        if !matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
            return Err(Error::invalid(format!("model dtype must be floating point, got {kind:?}")));
        }
        let mut vs = VarStore::new(device);
        vs.set_kind(kind);
        let transformer = Transformer::new(&vs.root(), &config, load)?;
        let head = head(&vs.root(), &config, &transformer)?;
        let core = Core {
            config,
            vs,
            transformer,
            lora: None,
            training: Cell::new(false),
            adapters_enabled: Cell::new(true),
            source_dir: None,
        };
        Ok((core, head))
    }

    pub fn ctx(&self) -> Ctx {
        Ctx { train: self.training.get(), lora: self.lora.is_some() && self.adapters_enabled.get() }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }
    pub fn kind(&self) -> Kind {
        self.vs.kind()
    }

    /// Checks shapes; returns the key mask to use (`None` when it has no padding).
    pub fn check_inputs(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        past: i64,
    ) -> Result<Option<Tensor>> {
        let s = input_ids.size();
        if s.len() != 2 || s[1] == 0 {
            return Err(Error::invalid(format!("input_ids must be [batch, seq>0], got {s:?}")));
        }
        if input_ids.kind() != Kind::Int64 {
            return Err(Error::invalid(format!("input_ids must be int64, got {:?}", input_ids.kind())));
        }
        if let Some(p) = position_ids {
            if p.size() != s {
                return Err(Error::invalid(format!("position_ids {:?} must match input_ids {s:?}", p.size())));
            }
        }
        if let ArchConfig::Gpt2(c) = &self.config.arch {
            if past + s[1] > c.n_positions {
                return Err(Error::invalid(format!(
                    "sequence of {} tokens exceeds GPT-2's n_positions = {}",
                    past + s[1],
                    c.n_positions
                )));
            }
        }
        match attention_mask {
            None => Ok(None),
            Some(m) => {
                if m.size() != [s[0], past + s[1]] {
                    return Err(Error::invalid(format!(
                        "attention_mask {:?} must be [batch, past + seq] = [{}, {}]",
                        m.size(),
                        s[0],
                        past + s[1]
                    )));
                }
                let all_ones = m.f_all()?.f_int64_value(&[])? != 0;
                Ok(if all_ones { None } else { Some(m.to_device(self.device())) })
            }
        }
    }

    pub fn hidden(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let past = cache.as_ref().map_or(0, |c| c.len());
        let key_mask = self.check_inputs(input_ids, attention_mask, position_ids, past)?;
        let pos = match (position_ids, attention_mask, &key_mask) {
            // An all-ones mask with a cache still needs positions offset by `past`.
            (None, Some(m), None) => Some(position_ids_from_mask(m).narrow(1, past, input_ids.size()[1])),
            (p, _, _) => p.map(|p| p.to_device(self.device())),
        };
        let ids = input_ids.to_device(self.device());
        Ok(self.transformer.forward(&ids, key_mask.as_ref(), pos.as_ref(), cache, self.ctx()))
    }

    pub fn add_lora(&mut self, cfg: &LoraConfig) -> Result<()> {
        if self.lora.is_some() {
            return Err(Error::invalid("the model already has LoRA adapters"));
        }
        let (device, kind) = (self.device(), self.kind());
        let lora = lora::attach(self.transformer.linears_mut(), cfg, device, kind)?;
        self.vs.freeze();
        self.lora = Some(lora);
        Ok(())
    }

    pub fn trainable_variables(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> =
            self.vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        if let Some(l) = &self.lora {
            out.extend(l.var_store.variables().into_iter().filter(|(_, t)| t.requires_grad()));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The tensors to save: every variable, LoRA merged into the targeted weights.
    pub fn state_for_save(&self) -> BTreeMap<String, Tensor> {
        let mut state: BTreeMap<String, Tensor> =
            self.vs.variables().into_iter().map(|(k, v)| (k, v.detach())).collect();
        for lin in self.transformer.linears() {
            if lin.lora.is_some() {
                state.insert(format!("{}.weight", lin.name), lin.merged_weight());
            }
        }
        state
    }

    /// Writes `config.json` + `model.safetensors` (+ extras via `more`) atomically into `dir`.
    pub fn save(&self, dir: &Path, config: &ModelConfig, more: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let _span = tracing::info_span!("save_pretrained", dir = %dir.display()).entered();
        let mut config = config.clone();
        config.set_dtype(self.kind());
        let state = self.state_for_save();
        checkpoint::save_dir_atomically(dir, |tmp| {
            checkpoint::write_json(&tmp.join(checkpoint::CONFIG_FILE), &config.to_value())?;
            checkpoint::write_safetensors(&tmp.join(checkpoint::WEIGHTS_FILE), &state)?;
            if let Some(src) = &self.source_dir {
                checkpoint::copy_tokenizer_files(src, tmp)?;
            }
            more(tmp)
        })
    }
}

/// A causal language model: trunk + LM head (tied to the embeddings or separate `lm_head.weight`).
#[derive(Debug)]
pub struct CausalLm {
    pub(crate) core: Core,
    lm_head: Linear,
}

/// Logits plus the final hidden states (input of value/score heads).
#[derive(Debug)]
pub struct ModelOutput {
    /// `[B, T, vocab]`.
    pub logits: Tensor,
    /// `[B, T, hidden]`, after the final norm.
    pub hidden: Tensor,
}

impl CausalLm {
    fn build(config: ModelConfig, device: Device, kind: Kind, load: bool) -> Result<Self> {
        let (core, lm_head) = Core::build(config, device, kind, load, |root, cfg, tr| {
            Ok(if cfg.tie_word_embeddings() {
                Linear::tied("lm_head", tr.embeddings())
            } else {
                let fill = if load {
                    Fill::Empty
                } else {
                    Fill::Normal(match &cfg.arch {
                        ArchConfig::Gpt2(c) => c.initializer_range,
                        ArchConfig::Llama(c) => c.initializer_range,
                    })
                };
                Linear::new(&(root / "lm_head"), cfg.hidden_size(), cfg.vocab_size(), false, false, fill)
            })
        })?;
        Ok(CausalLm { core, lm_head })
    }

    /// A randomly initialized model (HF-style Normal(0, initializer_range) init; seed with
    /// `tch::manual_seed` first for reproducibility).
    pub fn new(config: ModelConfig, device: Device, kind: Kind) -> Result<Self> {
        Self::build(config, device, kind, false)
    }

    /// Loads a HF checkpoint directory (`config.json` + safetensors) in `kind` on `device`.
    /// Missing, unexpected or mis-shaped tensors are errors naming the tensor and the file.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: Device, kind: Kind) -> Result<Self> {
        let dir = dir.as_ref();
        let _span = tracing::info_span!("load_causal_lm", dir = %dir.display()).entered();
        let config = checkpoint::read_config(dir)?;
        if config.is_sequence_classification() {
            return Err(Error::Config {
                path: Some(dir.join(checkpoint::CONFIG_FILE)),
                message: "this is a sequence-classification (reward model) checkpoint; load it as a \
                          SequenceClassifier, not a causal LM"
                    .into(),
            });
        }
        let model = Self::build(config, device, kind, true)?;
        let tied = model.core.config.tie_word_embeddings();
        let ignore = |n: &str| tied && n == "lm_head.weight";
        let optional = |_: &str| false;
        checkpoint::load_var_store(
            &model.core.vs,
            dir,
            &LoadRules { prefix: model.core.config.base_prefix(), ignore: &ignore, optional: &optional },
        )?;
        let mut model = model;
        model.core.source_dir = Some(dir.to_path_buf());
        Ok(model)
    }

    /// Saves a HF checkpoint directory atomically: `config.json` (architectures set to
    /// `<Family>ForCausalLM`/`GPT2LMHeadModel`), `model.safetensors` (tied weights once, LoRA
    /// merged), `generation_config.json`, and the tokenizer files of the source directory.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let mut config = self.core.config.clone();
        let class = match config.class_stem() {
            "GPT2" => "GPT2LMHeadModel".to_string(),
            stem => format!("{stem}ForCausalLM"),
        };
        config.architectures = Some(vec![class]);
        let src_gen = self.core.source_dir.as_ref().map(|d| d.join(checkpoint::GENERATION_CONFIG_FILE));
        self.core.save(dir.as_ref(), &config, |tmp| {
            let dst = tmp.join(checkpoint::GENERATION_CONFIG_FILE);
            match src_gen.filter(|p| p.is_file()) {
                Some(src) => std::fs::copy(&src, &dst).map(|_| ()).map_err(|e| Error::io(&src, e)),
                None => checkpoint::write_json(&dst, &checkpoint::default_generation_config(&config)),
            }
        })
    }

    /// The parsed `config.json`.
    pub fn config(&self) -> &ModelConfig {
        &self.core.config
    }
    /// Mutable config (e.g. to set `pad_token_id` before saving).
    pub fn config_mut(&mut self) -> &mut ModelConfig {
        &mut self.core.config
    }
    /// The trunk.
    pub fn transformer(&self) -> &Transformer {
        &self.core.transformer
    }
    /// Device of the weights.
    pub fn device(&self) -> Device {
        self.core.device()
    }
    /// Floating-point kind of the weights.
    pub fn kind(&self) -> Kind {
        self.core.kind()
    }
    /// All base weights, HF names.
    pub fn var_store(&self) -> &VarStore {
        &self.core.vs
    }
    /// Mutable access to the base weights (freeze/unfreeze, copy from another model).
    pub fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.core.vs
    }
    /// The directory the model was loaded from, if any.
    pub fn source_dir(&self) -> Option<&Path> {
        self.core.source_dir.as_deref()
    }
    /// Sets the directory whose tokenizer files are copied on save.
    pub fn set_source_dir(&mut self, dir: Option<PathBuf>) {
        self.core.source_dir = dir;
    }

    /// Training mode (dropout on) or eval mode (default).
    pub fn set_training(&self, training: bool) {
        self.core.training.set(training);
    }
    /// Whether dropout is active.
    pub fn is_training(&self) -> bool {
        self.core.training.get()
    }

    /// Adds LoRA adapters to the targeted linears and freezes the base weights.
    pub fn add_lora(&mut self, cfg: &LoraConfig) -> Result<()> {
        self.core.add_lora(cfg)
    }
    /// The adapters, if any.
    pub fn lora(&self) -> Option<&Lora> {
        self.core.lora.as_ref()
    }
    /// Turns adapters on/off for subsequent forward passes (off = the base model, e.g. the
    /// reference policy).
    pub fn set_adapters_enabled(&self, enabled: bool) {
        self.core.adapters_enabled.set(enabled);
    }
    /// Whether adapters take part in forward passes.
    pub fn adapters_enabled(&self) -> bool {
        self.core.adapters_enabled.get()
    }
    /// Runs `f` with adapters switched to `enabled`, restoring the previous state afterwards.
    pub fn with_adapters<R>(&self, enabled: bool, f: impl FnOnce(&Self) -> R) -> R {
        let prev = self.adapters_enabled();
        self.set_adapters_enabled(enabled);
        let r = f(self);
        self.set_adapters_enabled(prev);
        r
    }
    /// Named variables that currently require grad (LoRA adapters only once LoRA is added).
    pub fn trainable_variables(&self) -> Vec<(String, Tensor)> {
        self.core.trainable_variables()
    }
    /// Stops gradient tracking on all base weights.
    pub fn freeze(&mut self) {
        self.core.vs.freeze();
    }

    /// Projects hidden states `[.., H]` to logits `[.., V]`.
    pub fn logits_from_hidden(&self, hidden: &Tensor) -> Tensor {
        self.lm_head.forward(hidden, self.core.ctx())
    }

    /// Final hidden states `[B, T, H]` (see [`Self::forward_with`] for the arguments).
    pub fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        self.core.hidden(input_ids, attention_mask, position_ids, cache)
    }

    /// Full forward pass. `input_ids [B,T]` int64; `attention_mask [B, past+T]` (1 = token,
    /// 0 = padding; `None` = no padding); `position_ids [B,T]` (default: from the mask); `cache`
    /// holds `past` positions and receives the new ones.
    pub fn forward_with(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<ModelOutput> {
        let hidden = self.hidden_states(input_ids, attention_mask, position_ids, cache)?;
        Ok(ModelOutput { logits: self.logits_from_hidden(&hidden), hidden })
    }

    /// Logits `[B, T, V]` for a (possibly padded) batch.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.forward_with(input_ids, attention_mask, None, None)?.logits)
    }

    /// An empty KV cache sized for this model.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> KvCache {
        KvCache::new(&self.core.config, batch, capacity, self.kind(), self.device())
    }

    /// Internal fast path for generation (no input checks, no host syncs).
    pub(crate) fn step_logits(
        &self,
        input_ids: &Tensor,
        key_mask: Option<&Tensor>,
        position_ids: &Tensor,
        cache: Option<&mut KvCache>,
        last_only: bool,
    ) -> Tensor {
        let hidden = self.core.transformer.forward(input_ids, key_mask, Some(position_ids), cache, self.core.ctx());
        let hidden = if last_only { hidden.select(1, -1) } else { hidden };
        self.logits_from_hidden(&hidden)
    }
}
