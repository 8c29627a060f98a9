//! Heads on the transformer's final hidden states: the reward model's sequence-score head in the
//! HF `*ForSequenceClassification` layout ([`SequenceClassifier`]) and the PPO critic's per-token
//! [`ValueHead`]. (The LM head is part of [`crate::CausalLm`].)
//!
//! The score is read where transformers reads it: at the rightmost token that is not
//! `pad_token_id` (whatever the attention mask says; index 0 when a row is all padding). With
//! `pad_token_id == eos_token_id` that is the token *before* a trailing eos, exactly as in HF.

use crate::checkpoint::{self, LoadRules};
use crate::config::{ArchConfig, ModelConfig};
use crate::error::{Error, Result};
use crate::layers::{param, Fill, Linear};
use crate::lora::{Lora, LoraConfig};
use crate::model::{Core, Transformer};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// Index of the token whose hidden state scores each row: transformers'
/// `argmax(arange(T) * (input_ids != pad))` — the rightmost non-pad token, 0 if none. `None` pad
/// means the last position.
pub fn last_non_pad_index(input_ids: &Tensor, pad_token_id: Option<i64>) -> Tensor {
    let t = input_ids.size()[1];
    match pad_token_id {
        None => Tensor::full([input_ids.size()[0]], t - 1, (Kind::Int64, input_ids.device())),
        Some(pad) => {
            let non_pad = input_ids.ne(pad).to_kind(Kind::Int64);
            let idx = Tensor::arange(t, (Kind::Int64, input_ids.device()));
            (non_pad * idx).argmax(-1, false)
        }
    }
}

/// A reward model: transformer + `score` linear (`[1, hidden]`, no bias), loadable from and
/// savable as `GPT2ForSequenceClassification` / `LlamaForSequenceClassification` /
/// `Qwen2ForSequenceClassification`.
#[derive(Debug)]
pub struct SequenceClassifier {
    core: Core,
    score: Linear,
}

fn init_range(cfg: &ModelConfig) -> f64 {
    match &cfg.arch {
        ArchConfig::Gpt2(c) => c.initializer_range,
        ArchConfig::Llama(c) => c.initializer_range,
    }
}

impl SequenceClassifier {
    fn build(mut config: ModelConfig, device: Device, kind: Kind, load_trunk: bool, load_score: bool) -> Result<Self> {
        config.architectures = Some(vec![format!("{}ForSequenceClassification", config.class_stem())]);
        config.set_num_labels(1);
        let (core, score) = Core::build(config, device, kind, load_trunk, |root, cfg, _tr: &Transformer| {
            let fill = if load_score { Fill::Empty } else { Fill::Normal(init_range(cfg)) };
            Ok(Linear::new(&(root / "score"), cfg.hidden_size(), 1, false, false, fill))
        })?;
        Ok(SequenceClassifier { core, score })
    }

    /// A randomly initialized reward model for `config` (architectures and labels are set).
    pub fn new(config: ModelConfig, device: Device, kind: Kind) -> Result<Self> {
        Self::build(config, device, kind, false, false)
    }

    /// Loads a `*ForSequenceClassification` checkpoint (strict: `score.weight` must be there,
    /// `num_labels` must be 1).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: Device, kind: Kind) -> Result<Self> {
        let dir = dir.as_ref();
        let _span = tracing::info_span!("load_reward_model", dir = %dir.display()).entered();
        let config = checkpoint::read_config(dir)?;
        if !config.is_sequence_classification() {
            return Err(Error::Config {
                path: Some(dir.join(checkpoint::CONFIG_FILE)),
                message: format!(
                    "architectures {:?} is not a *ForSequenceClassification model; start a reward model from a \
                     causal LM with SequenceClassifier::from_causal_lm",
                    config.architectures.clone().unwrap_or_default()
                ),
            });
        }
        if config.num_labels() != 1 {
            return Err(Error::Config {
                path: Some(dir.join(checkpoint::CONFIG_FILE)),
                message: format!("a reward model needs num_labels = 1, found {}", config.num_labels()),
            });
        }
        let mut m = Self::build(config, device, kind, true, true)?;
        let (ignore, optional) = (|_: &str| false, |_: &str| false);
        checkpoint::load_var_store(
            &m.core.vs,
            dir,
            &LoadRules { prefix: m.core.config.base_prefix(), ignore: &ignore, optional: &optional },
        )?;
        m.core.source_dir = Some(dir.to_path_buf());
        Ok(m)
    }

    /// Starts a reward model from a causal-LM checkpoint (e.g. the SFT model): the trunk is
    /// loaded, `lm_head` is dropped and `score` is freshly initialized (seed with
    /// `tch::manual_seed`). `pad_token_id` falls back to the eos id when the config has none.
    pub fn from_causal_lm(dir: impl AsRef<Path>, device: Device, kind: Kind) -> Result<Self> {
        let dir = dir.as_ref();
        let mut config = checkpoint::read_config(dir)?;
        if config.pad_token_id.is_none() {
            config.pad_token_id = config.pad_or_eos();
        }
        let mut m = Self::build(config, device, kind, true, false)?;
        let ignore = |n: &str| n == "lm_head.weight" || n == "score.weight";
        let optional = |n: &str| n == "score.weight";
        checkpoint::load_var_store(
            &m.core.vs,
            dir,
            &LoadRules { prefix: m.core.config.base_prefix(), ignore: &ignore, optional: &optional },
        )?;
        m.core.source_dir = Some(dir.to_path_buf());
        Ok(m)
    }

    /// Saves as a HF `*ForSequenceClassification` checkpoint (LoRA merged, tokenizer files copied).
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.core.save(dir.as_ref(), &self.core.config, |_| Ok(()))
    }

    /// Per-token scores `[B, T]` (the PPO critic reads these as values).
    pub fn token_scores(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let hidden = self.core.hidden(input_ids, attention_mask, None, None)?;
        Ok(self.score.forward(&hidden, self.core.ctx()).squeeze_dim(-1))
    }

    /// One raw score per row `[B]`, read at the last non-pad token (HF's rule, see the module doc).
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let pad = self.core.config.pad_token_id;
        let b = input_ids.size().first().copied().unwrap_or(0);
        if pad.is_none() && b != 1 {
            return Err(Error::invalid("reward model has no pad_token_id: batches larger than 1 are ambiguous"));
        }
        let scores = self.token_scores(input_ids, attention_mask)?;
        let idx = last_non_pad_index(&input_ids.to_device(self.core.device()), pad);
        Ok(scores.gather(1, &idx.unsqueeze(1), false).squeeze_dim(1))
    }

    /// [`Self::forward`] followed by the config's `reward_normalization` (identity without one).
    pub fn rewards(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let raw = self.forward(input_ids, attention_mask)?;
        Ok(match self.core.config.reward_normalization {
            Some(n) => (raw - n.shift) / n.scale,
            None => raw,
        })
    }

    /// The config (set `reward_normalization` here before saving).
    pub fn config(&self) -> &ModelConfig {
        &self.core.config
    }
    /// Mutable config.
    pub fn config_mut(&mut self) -> &mut ModelConfig {
        &mut self.core.config
    }
    /// Device of the weights.
    pub fn device(&self) -> Device {
        self.core.device()
    }
    /// Kind of the weights.
    pub fn kind(&self) -> Kind {
        self.core.kind()
    }
    /// All weights (trunk under `transformer.`/`model.`, plus `score.weight`).
    pub fn var_store(&self) -> &VarStore {
        &self.core.vs
    }
    /// Mutable weights.
    pub fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.core.vs
    }
    /// Training mode (dropout on) or eval mode (default).
    pub fn set_training(&self, training: bool) {
        self.core.training.set(training);
    }
    /// Adds LoRA adapters and freezes the trunk; the score head stays trainable.
    pub fn add_lora(&mut self, cfg: &LoraConfig) -> Result<()> {
        self.core.add_lora(cfg)?;
        let _ = self.score.weight.set_requires_grad(true);
        Ok(())
    }
    /// The adapters, if any.
    pub fn lora(&self) -> Option<&Lora> {
        self.core.lora.as_ref()
    }
    /// Turns adapters on/off for subsequent forward passes.
    pub fn set_adapters_enabled(&self, enabled: bool) {
        self.core.adapters_enabled.set(enabled);
    }
    /// Named variables that require grad.
    pub fn trainable_variables(&self) -> Vec<(String, Tensor)> {
        self.core.trainable_variables()
    }
    /// Sets the directory whose tokenizer files are copied on save.
    pub fn set_source_dir(&mut self, dir: Option<std::path::PathBuf>) {
        self.core.source_dir = dir;
    }
}

/// PPO critic head: `v_head` linear (`weight [1, hidden]`, `bias [1]`) on hidden states, one value
/// per token. Owns its variables (names `v_head.weight`, `v_head.bias`).
#[derive(Debug)]
pub struct ValueHead {
    vs: VarStore,
    weight: Tensor,
    bias: Tensor,
}

impl ValueHead {
    /// A zero-initialized head (values start at 0; gradients still flow).
    pub fn new(hidden_size: i64, device: Device, kind: Kind) -> Self {
        let mut vs = VarStore::new(device);
        vs.set_kind(kind);
        let p = vs.root() / "v_head";
        let weight = param(&p, "weight", &[1, hidden_size], Fill::Zeros);
        let bias = param(&p, "bias", &[1], Fill::Zeros);
        ValueHead { vs, weight, bias }
    }
    /// Values `[B, T]` from hidden states `[B, T, H]`.
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        hidden.to_kind(self.weight.kind()).linear(&self.weight, Some(&self.bias)).squeeze_dim(-1)
    }
    /// The head's variables (for the optimizer).
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }
    /// Saves `v_head.weight`/`v_head.bias` to a safetensors file.
    pub fn save(&self, file: &Path) -> Result<()> {
        let state: BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        checkpoint::write_safetensors(file, &state)
    }
    /// Loads weights saved by [`Self::save`].
    pub fn load(&self, file: &Path) -> Result<()> {
        let state = checkpoint::read_safetensors(file)?;
        for (name, var) in self.vs.variables() {
            let src = state.get(&name).ok_or_else(|| Error::MissingTensor {
                name: name.clone(),
                expected: var.size(),
                file: file.into(),
            })?;
            if src.size() != var.size() {
                return Err(Error::ShapeMismatch { name, expected: var.size(), found: src.size(), file: file.into() });
            }
            tch::no_grad(|| var.shallow_clone().f_copy_(src))?;
        }
        Ok(())
    }
}
