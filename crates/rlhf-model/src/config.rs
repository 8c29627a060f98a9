//! Model configuration mirroring Hugging Face `config.json` (GPT-2 and the Llama family).
//!
//! [`ModelConfig`] parses `config.json`, dispatches on `model_type` (`gpt2`, `llama`, `qwen2`) and
//! keeps every key it does not model in [`ModelConfig::extra`], so a load/save round trip preserves
//! the file. Reward models add `architectures: ["...ForSequenceClassification"]`, one label and a
//! `pad_token_id`; our own optional `reward_normalization {shift, scale}` rides along.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// A token id field that HF writes either as one integer or as a list (`eos_token_id` in Llama 3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(i64),
    /// Several ids (any of them ends generation).
    Many(Vec<i64>),
}

impl TokenIds {
    /// All ids as a vector.
    pub fn to_vec(&self) -> Vec<i64> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
    /// The first id, if any.
    pub fn first(&self) -> Option<i64> {
        match self {
            TokenIds::One(id) => Some(*id),
            TokenIds::Many(ids) => ids.first().copied(),
        }
    }
}

/// Affine normalization of raw reward-model scores: `normalized = (raw - shift) / scale`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardNormalization {
    /// Subtracted from the raw score (typically the mean score on a reference set).
    pub shift: f64,
    /// Divides the shifted score (typically the standard deviation); must be non-zero.
    pub scale: f64,
}

impl RewardNormalization {
    /// Applies the normalization to one score.
    pub fn apply(&self, raw: f64) -> f64 {
        (raw - self.shift) / self.scale
    }
}

fn d_true() -> bool {
    true
}
fn d_false() -> bool {
    false
}
fn d_gelu_new() -> String {
    "gelu_new".into()
}
fn d_silu() -> String {
    "silu".into()
}
fn d_pdrop() -> f64 {
    0.1
}
fn d_ln_eps() -> f64 {
    1e-5
}
fn d_rms_eps() -> f64 {
    1e-6
}
fn d_init_range() -> f64 {
    0.02
}
fn d_1024() -> i64 {
    1024
}
fn d_2048() -> i64 {
    2048
}

/// GPT-2 hyper-parameters (`model_type: "gpt2"`), names as in HF `GPT2Config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: i64,
    #[serde(default = "d_1024")]
    pub n_positions: i64,
    pub n_embd: i64,
    pub n_layer: i64,
    pub n_head: i64,
    /// MLP inner size; `None` means `4 * n_embd`.
    #[serde(default)]
    pub n_inner: Option<i64>,
    #[serde(default = "d_gelu_new")]
    pub activation_function: String,
    #[serde(default = "d_pdrop")]
    pub resid_pdrop: f64,
    #[serde(default = "d_pdrop")]
    pub embd_pdrop: f64,
    #[serde(default = "d_pdrop")]
    pub attn_pdrop: f64,
    #[serde(default = "d_ln_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "d_init_range")]
    pub initializer_range: f64,
    #[serde(default = "d_true")]
    pub scale_attn_weights: bool,
    #[serde(default = "d_false")]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default = "d_false")]
    pub reorder_and_upcast_attn: bool,
    #[serde(default = "d_true")]
    pub tie_word_embeddings: bool,
}

impl Gpt2Config {
    /// A GPT-2 config with HF defaults for everything but the sizes.
    pub fn new(vocab_size: i64, n_positions: i64, n_embd: i64, n_layer: i64, n_head: i64) -> Self {
        Gpt2Config {
            vocab_size,
            n_positions,
            n_embd,
            n_layer,
            n_head,
            n_inner: None,
            activation_function: d_gelu_new(),
            resid_pdrop: 0.1,
            embd_pdrop: 0.1,
            attn_pdrop: 0.1,
            layer_norm_epsilon: 1e-5,
            initializer_range: 0.02,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            reorder_and_upcast_attn: false,
            tie_word_embeddings: true,
        }
    }
    /// The MLP inner size.
    pub fn inner_size(&self) -> i64 {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}

/// Llama-family hyper-parameters (`llama`, `qwen2`; SmolLM is `llama` with GQA).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    /// `None` means as many as `num_attention_heads` (no GQA).
    #[serde(default)]
    pub num_key_value_heads: Option<i64>,
    #[serde(default)]
    pub head_dim: Option<i64>,
    #[serde(default = "d_silu")]
    pub hidden_act: String,
    #[serde(default = "d_2048")]
    pub max_position_embeddings: i64,
    #[serde(default = "d_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "d_init_range")]
    pub initializer_range: f64,
    /// transformers < 5 writes `rope_theta` at the top level ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// ... with an optional `rope_scaling` dict ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<Value>,
    /// ... and transformers 5 writes `rope_parameters {rope_theta, rope_type, ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<Value>,
    #[serde(default = "d_false")]
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v/o projections (Llama); Qwen2 always has q/k/v bias.
    #[serde(default = "d_false")]
    pub attention_bias: bool,
    #[serde(default)]
    pub attention_dropout: f64,
    #[serde(default = "d_false")]
    pub mlp_bias: bool,
    /// Qwen2's sliding-window attention switch (unsupported when true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_sliding_window: Option<bool>,
}

impl LlamaConfig {
    /// A Llama config with HF defaults for everything but the sizes.
    pub fn new(
        vocab_size: i64,
        hidden_size: i64,
        intermediate_size: i64,
        num_hidden_layers: i64,
        num_attention_heads: i64,
        num_key_value_heads: i64,
    ) -> Self {
        LlamaConfig {
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: Some(num_key_value_heads),
            head_dim: None,
            hidden_act: d_silu(),
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            initializer_range: 0.02,
            rope_theta: None,
            rope_scaling: None,
            rope_parameters: Some(serde_json::json!({"rope_theta": 10000.0, "rope_type": "default"})),
            tie_word_embeddings: false,
            attention_bias: false,
            attention_dropout: 0.0,
            mlp_bias: false,
            use_sliding_window: None,
        }
    }
    /// Number of key/value heads.
    pub fn kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    /// Per-head dimension.
    pub fn head_size(&self) -> i64 {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }
    /// Resolves RoPE parameters from either the v4 or the v5 layout.
    pub fn rope(&self) -> Result<Rope> {
        let params = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref());
        let get_f = |k: &str| params.and_then(|p| p.get(k)).and_then(Value::as_f64);
        let theta = get_f("rope_theta").or(self.rope_theta).unwrap_or(10000.0);
        let kind = params
            .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let need = |k: &str| get_f(k).ok_or_else(|| Error::config(format!("rope type `{kind}` needs `{k}`")));
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear { factor: need("factor")? },
            "llama3" => RopeScaling::Llama3 {
                factor: need("factor")?,
                low_freq_factor: need("low_freq_factor")?,
                high_freq_factor: need("high_freq_factor")?,
                original_max_position_embeddings: need("original_max_position_embeddings")?,
            },
            other => {
                return Err(Error::config(format!(
                    "unsupported rope type `{other}` (supported: default, linear, llama3)"
                )))
            }
        };
        let partial = get_f("partial_rotary_factor").unwrap_or(1.0);
        if partial != 1.0 {
            return Err(Error::config("partial_rotary_factor != 1 is not supported"));
        }
        Ok(Rope { theta, scaling })
    }
}

/// Resolved rotary-embedding parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub theta: f64,
    pub scaling: RopeScaling,
}

/// The RoPE frequency scalings we implement (HF `rope_type`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    Linear { factor: f64 },
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
}

/// The transformer family of a config.
#[derive(Clone, Debug, PartialEq)]
pub enum ArchConfig {
    Gpt2(Gpt2Config),
    /// `model_type` is kept alongside (`llama` or `qwen2`).
    Llama(LlamaConfig),
}

/// A parsed HF `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// `model_type`: `gpt2`, `llama` or `qwen2`.
    pub model_type: String,
    /// Architecture-specific hyper-parameters.
    pub arch: ArchConfig,
    /// HF `architectures`, e.g. `["LlamaForCausalLM"]`.
    pub architectures: Option<Vec<String>>,
    pub bos_token_id: Option<TokenIds>,
    pub eos_token_id: Option<TokenIds>,
    pub pad_token_id: Option<i64>,
    /// Our reward-model normalization (not an HF key; transformers ignores it).
    pub reward_normalization: Option<RewardNormalization>,
    /// Every other key of `config.json`, preserved on save.
    pub extra: Map<String, Value>,
    /// Modeled keys the source file did not have, with the default they got: left out on save
    /// while unchanged, so a load/save round trip writes back the same keys.
    defaulted: Map<String, Value>,
}

const COMMON_KEYS: &[&str] =
    &["model_type", "architectures", "bos_token_id", "eos_token_id", "pad_token_id", "reward_normalization"];

impl ModelConfig {
    /// Wraps a GPT-2 config.
    pub fn gpt2(cfg: Gpt2Config) -> Self {
        Self::wrap("gpt2", ArchConfig::Gpt2(cfg))
    }
    /// Wraps a Llama config (`model_type: "llama"`).
    pub fn llama(cfg: LlamaConfig) -> Self {
        Self::wrap("llama", ArchConfig::Llama(cfg))
    }
    /// Wraps a Qwen2 config (`model_type: "qwen2"`: q/k/v projections carry a bias).
    pub fn qwen2(cfg: LlamaConfig) -> Self {
        Self::wrap("qwen2", ArchConfig::Llama(cfg))
    }
    fn wrap(model_type: &str, arch: ArchConfig) -> Self {
        ModelConfig {
            model_type: model_type.into(),
            arch,
            architectures: None,
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
            reward_normalization: None,
            extra: Map::new(),
            defaulted: Map::new(),
        }
    }

    /// Parses a `config.json` value.
    pub fn from_value(value: Value) -> Result<Self> {
        let Value::Object(map) = value else {
            return Err(Error::config("config.json must be a JSON object"));
        };
        let model_type = map
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::config("config.json has no `model_type`"))?
            .to_string();
        let obj = Value::Object(map.clone());
        let field_err = |e: serde_json::Error| Error::config(format!("{model_type} config: {e}"));
        let arch = match model_type.as_str() {
            "gpt2" => ArchConfig::Gpt2(serde_json::from_value(obj).map_err(field_err)?),
            "llama" | "qwen2" => ArchConfig::Llama(serde_json::from_value(obj).map_err(field_err)?),
            other => {
                return Err(Error::config(format!("unsupported model_type `{other}` (supported: gpt2, llama, qwen2)")))
            }
        };
        fn de<T: serde::de::DeserializeOwned>(map: &Map<String, Value>, k: &str) -> Result<Option<T>> {
            map.get(k)
                .filter(|v| !v.is_null())
                .map(|v| serde_json::from_value(v.clone()).map_err(|e| Error::config(format!("`{k}`: {e}"))))
                .transpose()
        }
        let architectures = de(&map, "architectures")?;
        let bos_token_id = de(&map, "bos_token_id")?;
        let eos_token_id = de(&map, "eos_token_id")?;
        let pad_token_id = de(&map, "pad_token_id")?;
        let reward_normalization = de(&map, "reward_normalization")?;
        let mut cfg = ModelConfig {
            model_type,
            arch,
            architectures,
            bos_token_id,
            eos_token_id,
            pad_token_id,
            reward_normalization,
            extra: Map::new(),
            defaulted: Map::new(),
        };
        let modeled = cfg.arch_value();
        cfg.defaulted =
            modeled.iter().filter(|(k, _)| !map.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        cfg.extra =
            map.into_iter().filter(|(k, _)| !COMMON_KEYS.contains(&k.as_str()) && !modeled.contains_key(k)).collect();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses `path` (a `config.json`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| Error::Json { path: path.into(), source: e })?;
        Self::from_value(value).map_err(|e| match e {
            Error::Config { path: None, message } => Error::Config { path: Some(path.into()), message },
            e => e,
        })
    }

    fn arch_value(&self) -> Map<String, Value> {
        let v = match &self.arch {
            ArchConfig::Gpt2(c) => serde_json::to_value(c),
            ArchConfig::Llama(c) => serde_json::to_value(c),
        };
        match v {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }

    /// The full `config.json` value (extra keys, then modeled ones), keys sorted like HF writes them.
    pub fn to_value(&self) -> Value {
        let mut out: std::collections::BTreeMap<String, Value> = self.extra.clone().into_iter().collect();
        out.extend(self.arch_value().into_iter().filter(|(k, v)| self.defaulted.get(k) != Some(v)));
        out.insert("model_type".into(), Value::String(self.model_type.clone()));
        if let Some(a) = &self.architectures {
            out.insert("architectures".into(), serde_json::json!(a));
        }
        out.insert("bos_token_id".into(), serde_json::json!(self.bos_token_id));
        out.insert("eos_token_id".into(), serde_json::json!(self.eos_token_id));
        out.insert("pad_token_id".into(), serde_json::json!(self.pad_token_id));
        if let Some(n) = &self.reward_normalization {
            out.insert("reward_normalization".into(), serde_json::json!(n));
        }
        Value::Object(out.into_iter().collect())
    }

    /// Pretty JSON text of [`Self::to_value`].
    pub fn to_json_string(&self) -> String {
        serde_json::to_string_pretty(&self.to_value()).unwrap_or_default() + "\n"
    }

    /// Checks sizes and unsupported options.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::config(m));
        match &self.arch {
            ArchConfig::Gpt2(c) => {
                if c.n_embd <= 0 || c.n_head <= 0 || c.n_embd % c.n_head != 0 {
                    return bad(format!("n_embd ({}) must be a positive multiple of n_head ({})", c.n_embd, c.n_head));
                }
                activation_kind(&c.activation_function)?;
            }
            ArchConfig::Llama(c) => {
                let kv = c.kv_heads();
                if c.num_attention_heads <= 0 || kv <= 0 || c.num_attention_heads % kv != 0 {
                    return bad(format!(
                        "num_attention_heads ({}) must be a positive multiple of num_key_value_heads ({kv})",
                        c.num_attention_heads
                    ));
                }
                if c.head_dim.is_none() && c.hidden_size % c.num_attention_heads != 0 {
                    return bad(format!(
                        "hidden_size ({}) is not a multiple of num_attention_heads ({})",
                        c.hidden_size, c.num_attention_heads
                    ));
                }
                if c.head_size() % 2 != 0 {
                    return bad(format!("head_dim ({}) must be even for RoPE", c.head_size()));
                }
                if c.use_sliding_window == Some(true) {
                    return bad("sliding-window attention (use_sliding_window: true) is not supported".into());
                }
                activation_kind(&c.hidden_act)?;
                c.rope()?;
            }
        }
        Ok(())
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> i64 {
        match &self.arch {
            ArchConfig::Gpt2(c) => c.vocab_size,
            ArchConfig::Llama(c) => c.vocab_size,
        }
    }
    /// Hidden (model) size.
    pub fn hidden_size(&self) -> i64 {
        match &self.arch {
            ArchConfig::Gpt2(c) => c.n_embd,
            ArchConfig::Llama(c) => c.hidden_size,
        }
    }
    /// Number of transformer blocks.
    pub fn num_layers(&self) -> i64 {
        match &self.arch {
            ArchConfig::Gpt2(c) => c.n_layer,
            ArchConfig::Llama(c) => c.num_hidden_layers,
        }
    }
    /// Longest supported sequence (learned positions for GPT-2; RoPE models may go beyond).
    pub fn max_positions(&self) -> i64 {
        match &self.arch {
            ArchConfig::Gpt2(c) => c.n_positions,
            ArchConfig::Llama(c) => c.max_position_embeddings,
        }
    }
    /// Whether `lm_head` shares the input-embedding matrix.
    pub fn tie_word_embeddings(&self) -> bool {
        match &self.arch {
            ArchConfig::Gpt2(c) => c.tie_word_embeddings,
            ArchConfig::Llama(c) => c.tie_word_embeddings,
        }
    }
    /// `(kv_heads, head_dim)` of the attention cache.
    pub fn kv_shape(&self) -> (i64, i64) {
        match &self.arch {
            ArchConfig::Gpt2(c) => (c.n_head, c.n_embd / c.n_head),
            ArchConfig::Llama(c) => (c.kv_heads(), c.head_size()),
        }
    }
    /// All end-of-sequence ids (empty when the config has none).
    pub fn eos_token_ids(&self) -> Vec<i64> {
        self.eos_token_id.as_ref().map(TokenIds::to_vec).unwrap_or_default()
    }
    /// `pad_token_id`, else the first `eos_token_id`.
    pub fn pad_or_eos(&self) -> Option<i64> {
        self.pad_token_id.or_else(|| self.eos_token_id.as_ref().and_then(TokenIds::first))
    }
    /// The HF base-model prefix under which the transformer's weights live.
    pub fn base_prefix(&self) -> &'static str {
        match self.arch {
            ArchConfig::Gpt2(_) => "transformer",
            ArchConfig::Llama(_) => "model",
        }
    }
    /// HF class-name stem: `GPT2`, `Llama` or `Qwen2`.
    pub fn class_stem(&self) -> &'static str {
        match self.model_type.as_str() {
            "gpt2" => "GPT2",
            "qwen2" => "Qwen2",
            _ => "Llama",
        }
    }
    /// Whether `architectures` names a `*ForSequenceClassification` class.
    pub fn is_sequence_classification(&self) -> bool {
        self.architectures.as_ref().is_some_and(|a| a.iter().any(|s| s.ends_with("ForSequenceClassification")))
    }
    /// Number of labels: `num_labels` if written, else the size of `id2label`, else 2 (HF's default).
    pub fn num_labels(&self) -> i64 {
        if let Some(n) = self.extra.get("num_labels").and_then(Value::as_i64) {
            return n;
        }
        self.extra.get("id2label").and_then(Value::as_object).map(|m| m.len() as i64).unwrap_or(2)
    }
    /// Sets `id2label`/`label2id` for `n` labels the way HF writes them.
    pub fn set_num_labels(&mut self, n: i64) {
        let id2label: Map<String, Value> =
            (0..n).map(|i| (i.to_string(), Value::String(format!("LABEL_{i}")))).collect();
        let label2id: Map<String, Value> = (0..n).map(|i| (format!("LABEL_{i}"), Value::from(i))).collect();
        self.extra.remove("num_labels");
        self.extra.insert("id2label".into(), Value::Object(id2label));
        self.extra.insert("label2id".into(), Value::Object(label2id));
    }
    /// Records the weights' dtype the way transformers does (`dtype`, and `torch_dtype` when present).
    pub fn set_dtype(&mut self, kind: tch::Kind) {
        let name = match kind {
            tch::Kind::BFloat16 => "bfloat16",
            tch::Kind::Half => "float16",
            tch::Kind::Double => "float64",
            _ => "float32",
        };
        if self.extra.contains_key("torch_dtype") {
            self.extra.insert("torch_dtype".into(), Value::String(name.into()));
        }
        self.extra.insert("dtype".into(), Value::String(name.into()));
    }
}

/// Activation functions we implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    GeluTanh,
    Gelu,
    Relu,
    Silu,
}

pub(crate) fn activation_kind(name: &str) -> Result<Activation> {
    Ok(match name {
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "gelu" => Activation::Gelu,
        "relu" => Activation::Relu,
        "silu" | "swish" => Activation::Silu,
        other => return Err(Error::config(format!("unsupported activation `{other}`"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_v5_config_round_trips_with_extra_keys() {
        let text = r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":128,
            "hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
            "num_key_value_heads":2,"rope_parameters":{"rope_theta":500000.0,"rope_type":"default"},
            "eos_token_id":[2,3],"bos_token_id":1,"transformers_version":"5.23.0","some_future_key":{"a":1}}"#;
        let cfg = ModelConfig::from_value(serde_json::from_str(text).unwrap()).unwrap();
        assert_eq!(cfg.eos_token_ids(), vec![2, 3]);
        assert_eq!(cfg.kv_shape(), (2, 8));
        let ArchConfig::Llama(l) = &cfg.arch else { panic!("llama expected") };
        assert_eq!(l.rope().unwrap().theta, 500000.0);
        assert!(cfg.extra.contains_key("some_future_key"));
        let back = ModelConfig::from_value(cfg.to_value()).unwrap();
        assert_eq!(back, cfg);
        let orig: Map<String, Value> = serde_json::from_str(text).unwrap();
        let saved = cfg.to_value();
        for (k, v) in &orig {
            assert_eq!(saved.get(k), Some(v), "key {k} changed");
        }
    }

    #[test]
    fn gpt2_v4_style_config_and_rope_theta_top_level() {
        let g = r#"{"model_type":"gpt2","vocab_size":100,"n_embd":16,"n_layer":1,"n_head":2,"n_positions":64,
            "architectures":["GPT2ForSequenceClassification"],"id2label":{"0":"LABEL_0"},"pad_token_id":0,
            "reward_normalization":{"shift":1.5,"scale":2.0}}"#;
        let cfg = ModelConfig::from_value(serde_json::from_str(g).unwrap()).unwrap();
        assert!(cfg.is_sequence_classification());
        assert_eq!(cfg.num_labels(), 1);
        assert_eq!(cfg.reward_normalization.unwrap().apply(3.5), 1.0);
        assert_eq!(cfg.base_prefix(), "transformer");
        let l = r#"{"model_type":"qwen2","vocab_size":100,"hidden_size":16,"intermediate_size":32,
            "num_hidden_layers":1,"num_attention_heads":2,"rope_theta":1000000.0,"use_sliding_window":false}"#;
        let cfg = ModelConfig::from_value(serde_json::from_str(l).unwrap()).unwrap();
        let ArchConfig::Llama(c) = &cfg.arch else { panic!("llama expected") };
        assert_eq!(c.rope().unwrap().theta, 1e6);
        assert_eq!(c.kv_heads(), 2);
    }

    #[test]
    fn bad_configs_are_named() {
        let e = ModelConfig::from_value(serde_json::json!({"model_type": "bert"})).unwrap_err();
        assert!(e.to_string().contains("unsupported model_type `bert`"), "{e}");
        let e = ModelConfig::from_value(serde_json::json!({"model_type": "gpt2", "n_embd": 10})).unwrap_err();
        assert!(e.to_string().contains("missing field"), "{e}");
        let e = ModelConfig::from_value(serde_json::json!({"model_type": "llama", "vocab_size": 8,
            "hidden_size": 16, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4,
            "num_key_value_heads": 3}))
        .unwrap_err();
        assert!(e.to_string().contains("num_key_value_heads"), "{e}");
    }
}
