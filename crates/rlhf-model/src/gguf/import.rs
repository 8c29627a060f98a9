//! A GGUF file into a Hugging Face checkpoint directory, the way `transformers` loads one
//! (`from_pretrained(dir, gguf_file=...)`): every tensor dequantized to `f32`, Llama's q/k rows
//! un-permuted (llama.cpp's converter interleaves the two rotary halves of each head), the config
//! from the architecture's metadata keys, and the tokenizer rebuilt from the vocabulary, merges,
//! token types and special-token ids, with the chat template beside it.
//!
//! Supported: architectures `llama` and `qwen2`; tokenizer `gpt2` (byte-level BPE, the SmolLM,
//! Qwen and Llama 3 families). Anything else is one clear error before the output exists.

use super::{gguf_error, hf_name, GgufFile, TensorInfo, Value};
use crate::checkpoint::{default_generation_config, save_dir_atomically, write_json, write_safetensors};
use crate::config::{LlamaConfig, ModelConfig, TokenIds};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use serde_json::{json, Map, Value as Json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tch::Tensor;

/// `general.architecture` values this import writes a checkpoint for.
const SUPPORTED_ARCHITECTURES: [&str; 2] = ["llama", "qwen2"];

/// What an import produced.
#[derive(Clone, Debug)]
pub struct GgufImport {
    /// `general.architecture`.
    pub architecture: String,
    /// Parameters written (tied embeddings counted once).
    pub num_parameters: u64,
    /// How many tensors of each ggml type the file held.
    pub tensor_types: BTreeMap<String, usize>,
}

/// Imports `gguf` into the checkpoint directory `out` (written atomically; an existing `out` is
/// replaced only once the new one is complete).
pub fn import_gguf(gguf: impl AsRef<Path>, out: impl AsRef<Path>) -> Result<GgufImport> {
    let file = GgufFile::open(gguf.as_ref())?;
    let architecture = file.get("general.architecture").and_then(Value::as_str).unwrap_or_default().to_owned();
    if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
        return Err(gguf_error(
            file.path(),
            format!(
                "architecture `{architecture}` is not supported (supported: {})",
                SUPPORTED_ARCHITECTURES.join(", ")
            ),
        ));
    }
    let tokenizer = TokenizerFiles::from_metadata(&file)?;
    let config = model_config(&file, &architecture, &tokenizer)?;
    let names = tensor_names(&file, &config)?;
    let mut tensor_types = BTreeMap::new();
    for info in &file.tensors {
        *tensor_types.entry(format!("{:?}", info.kind)).or_insert(0) += 1;
    }
    let mut num_parameters = 0;
    save_dir_atomically(out.as_ref(), |dir| {
        let mut tensors = BTreeMap::new();
        for (info, hf_name) in &names {
            num_parameters += info.num_elements();
            tensors.insert(hf_name.clone(), hf_tensor(&file, info, &config)?);
        }
        write_safetensors(&dir.join(crate::checkpoint::WEIGHTS_FILE), &tensors)?;
        drop(tensors);
        std::fs::write(dir.join(crate::checkpoint::CONFIG_FILE), config.to_json_string())
            .map_err(|e| Error::io(dir.join(crate::checkpoint::CONFIG_FILE), e))?;
        write_json(&dir.join(crate::checkpoint::GENERATION_CONFIG_FILE), &default_generation_config(&config))?;
        tokenizer.write(dir)?;
        // The tokenizer must load as every stage will load it.
        Tokenizer::from_dir(dir)?.check_fits_embedding(config.vocab_size())
    })?;
    Ok(GgufImport { architecture, num_parameters, tensor_types })
}

fn meta<'a>(file: &'a GgufFile, key: &str) -> Result<&'a Value> {
    file.get(key).ok_or_else(|| gguf_error(file.path(), format!("metadata key `{key}` is missing")))
}

fn meta_int(file: &GgufFile, key: &str) -> Result<i64> {
    meta(file, key)?.as_i64().ok_or_else(|| gguf_error(file.path(), format!("metadata `{key}` is not an integer")))
}

fn meta_float(file: &GgufFile, key: &str) -> Result<Option<f64>> {
    file.get(key)
        .map(|v| v.as_f64().ok_or_else(|| gguf_error(file.path(), format!("metadata `{key}` is not a number"))))
        .transpose()
}

/// The HF config of a `llama` / `qwen2` file, from llama.cpp's `<arch>.*` keys.
fn model_config(file: &GgufFile, architecture: &str, tokenizer: &TokenizerFiles) -> Result<ModelConfig> {
    let key = |name: &str| format!("{architecture}.{name}");
    if let Some(kind) = file.get(&key("rope.scaling.type")).and_then(Value::as_str).filter(|k| *k != "none") {
        return Err(gguf_error(file.path(), format!("rope scaling `{kind}` is not supported")));
    }
    let heads = meta_int(file, &key("attention.head_count"))?;
    let kv_heads = file.get(&key("attention.head_count_kv")).and_then(Value::as_i64).unwrap_or(heads);
    let vocab = match file.get(&key("vocab_size")) {
        Some(v) => v.as_i64().ok_or_else(|| gguf_error(file.path(), "vocab_size is not an integer"))?,
        None => tokenizer.tokens.len() as i64,
    };
    let mut llama = LlamaConfig::new(
        vocab,
        meta_int(file, &key("embedding_length"))?,
        meta_int(file, &key("feed_forward_length"))?,
        meta_int(file, &key("block_count"))?,
        heads,
        kv_heads,
    );
    llama.max_position_embeddings = meta_int(file, &key("context_length"))?;
    llama.rms_norm_eps = meta_float(file, &key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6) as f32 as f64;
    let theta = meta_float(file, &key("rope.freq_base"))?.unwrap_or(10000.0) as f32 as f64;
    llama.rope_parameters = Some(json!({"rope_theta": theta, "rope_type": "default"}));
    if let Some(head_dim) = file.get(&key("attention.key_length")).and_then(Value::as_i64) {
        llama.head_dim = Some(head_dim);
    }
    llama.tie_word_embeddings = !file.tensors.iter().any(|t| t.name == "output.weight");
    let mut config = if architecture == "qwen2" { ModelConfig::qwen2(llama) } else { ModelConfig::llama(llama) };
    let class = if architecture == "qwen2" { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" };
    config.architectures = Some(vec![class.into()]);
    config.bos_token_id = tokenizer.bos_id.map(TokenIds::One);
    config.eos_token_id = tokenizer.eos_id.map(TokenIds::One);
    config.pad_token_id = tokenizer.pad_id;
    config.set_dtype(tch::Kind::Float);
    config.validate().map_err(|e| gguf_error(file.path(), format!("the config it describes is invalid: {e}")))?;
    Ok(config)
}

/// Each GGUF tensor with its HF name; an unknown tensor, or a missing one, is an error.
fn tensor_names<'a>(file: &'a GgufFile, config: &ModelConfig) -> Result<Vec<(&'a TensorInfo, String)>> {
    let mut named = Vec::with_capacity(file.tensors.len());
    for info in &file.tensors {
        let hf = hf_name(&info.name).ok_or_else(|| {
            let hint =
                if info.name == "rope_freqs.weight" { " (Llama 3.1-style rope scaling is not supported)" } else { "" };
            gguf_error(file.path(), format!("tensor `{}` has no Hugging Face counterpart{hint}", info.name))
        })?;
        named.push((info, hf));
    }
    let have: BTreeSet<&str> = named.iter().map(|(_, hf)| hf.as_str()).collect();
    let mut required = vec!["model.embed_tokens.weight".to_owned(), "model.norm.weight".to_owned()];
    if !config.tie_word_embeddings() {
        required.push("lm_head.weight".into());
    }
    for layer in 0..config.num_layers() {
        for part in [
            "input_layernorm",
            "post_attention_layernorm",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            required.push(format!("model.layers.{layer}.{part}.weight"));
        }
    }
    if let Some(missing) = required.iter().find(|name| !have.contains(name.as_str())) {
        return Err(gguf_error(file.path(), format!("no tensor for `{missing}`")));
    }
    Ok(named)
}

/// One tensor dequantized, in PyTorch shape, with Llama's q/k permutation undone.
fn hf_tensor(file: &GgufFile, info: &TensorInfo, config: &ModelConfig) -> Result<Tensor> {
    let values = file.dequantize(info)?;
    let tensor = Tensor::from_slice(&values).reshape(info.shape());
    let heads = match (&config.arch, config.model_type.as_str()) {
        (crate::config::ArchConfig::Llama(c), "llama") if info.name.contains(".attn_q.") => c.num_attention_heads,
        (crate::config::ArchConfig::Llama(c), "llama") if info.name.contains(".attn_k.") => c.kv_heads(),
        _ => return Ok(tensor),
    };
    // llama.cpp wrote rows as (head, half, row) -> (head, row, half); read them back.
    let shape = tensor.size();
    let rows = shape[0];
    if rows % (2 * heads) != 0 {
        return Err(gguf_error(file.path(), format!("tensor `{}` has {rows} rows: not {heads} heads", info.name)));
    }
    let mut split = vec![heads, rows / heads / 2, 2];
    split.extend_from_slice(&shape[1..]);
    Ok(tensor.reshape(&split).transpose(1, 2).contiguous().reshape(&shape))
}

/// The tokenizer a GGUF file describes, as `tokenizer.json` + `tokenizer_config.json` +
/// `chat_template.jinja`, built as transformers' GGUF tokenizer conversion builds it.
struct TokenizerFiles {
    tokens: Vec<String>,
    tokenizer_json: Json,
    config: Map<String, Json>,
    chat_template: Option<String>,
    bos_id: Option<i64>,
    eos_id: Option<i64>,
    pad_id: Option<i64>,
}

/// llama.cpp's token types that transformers adds as whole tokens.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

impl TokenizerFiles {
    fn from_metadata(file: &GgufFile) -> Result<Self> {
        let bad = |message: String| gguf_error(file.path(), message);
        let model = meta(file, "tokenizer.ggml.model")?.as_str().unwrap_or_default();
        if model != "gpt2" {
            return Err(bad(format!(
                "tokenizer `{model}` is not supported (supported: gpt2, the byte-level BPE of SmolLM, Qwen, Llama 3)"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            meta(file, key)?
                .as_array()
                .and_then(|items| items.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| bad(format!("metadata `{key}` is not a list of strings")))
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let token_types: Vec<i64> = match file.get("tokenizer.ggml.token_type") {
            None => Vec::new(),
            Some(v) => v
                .as_array()
                .and_then(|items| items.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
                .ok_or_else(|| bad("metadata `tokenizer.ggml.token_type` is not a list of integers".into()))?,
        };
        let special_id = |key: &str| -> Result<Option<i64>> {
            match file.get(&format!("tokenizer.ggml.{key}")) {
                None => Ok(None),
                Some(v) => match v.as_i64() {
                    Some(id) if (0..tokens.len() as i64).contains(&id) => Ok(Some(id)),
                    _ => Err(bad(format!("tokenizer.ggml.{key} {v:?} is not a token id of the vocabulary"))),
                },
            }
        };
        let (bos_id, eos_id, unk_id, pad_id) = (
            special_id("bos_token_id")?,
            special_id("eos_token_id")?,
            special_id("unknown_token_id")?,
            special_id("padding_token_id")?,
        );
        let flag = |key: &str| file.get(&format!("tokenizer.ggml.{key}")).and_then(Value::as_bool).unwrap_or(false);
        let (add_bos, add_eos) = (flag("add_bos_token"), flag("add_eos_token"));
        let pre = file.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");

        let alphabet: BTreeSet<char> = byte_alphabet().into_iter().collect();
        let spelled = |token: &str| -> String {
            if token.chars().all(|c| alphabet.contains(&c)) {
                token.to_owned()
            } else {
                let table = byte_alphabet();
                token.bytes().map(|b| table[b as usize]).collect()
            }
        };
        let vocab: Map<String, Json> = tokens.iter().enumerate().map(|(id, t)| (spelled(t), json!(id))).collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ').map(|(a, b)| json!([a, b])).ok_or_else(|| bad(format!("merge {m:?} is not `a b`")))
            })
            .collect::<Result<Vec<_>>>()?;

        let named: BTreeSet<i64> = [bos_id, eos_id, unk_id, pad_id].into_iter().flatten().collect();
        let added: Vec<Json> = tokens
            .iter()
            .enumerate()
            .filter_map(|(id, token)| {
                let kind = token_types.get(id).copied();
                let special = (kind == Some(CONTROL) && token.chars().all(|c| alphabet.contains(&c)))
                    || named.contains(&(id as i64));
                (special || kind == Some(USER_DEFINED)).then(|| {
                    json!({"id": id, "content": token, "single_word": false, "lstrip": false, "rstrip": false,
                           "normalized": false, "special": special})
                })
            })
            .collect();

        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let split = split_regex(pre).map_err(|()| bad(format!("pre-tokenizer `{pre}` is not supported")))?;
        let pre_tokenizer = match split {
            None => byte_level(true),
            Some(pattern) => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
                byte_level(false),
            ]}),
        };
        let name = |id: Option<i64>| id.map(|id| tokens[id as usize].clone());
        let template_part = |token: &Option<String>, type_id: u32| {
            token.as_ref().map(|t| json!({"SpecialToken": {"id": t, "type_id": type_id}}))
        };
        let (bos, eos) = (name(bos_id).filter(|_| add_bos), name(eos_id).filter(|_| add_eos));
        let sequence = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
        let single: Vec<Json> =
            [template_part(&bos, 0), Some(sequence("A", 0)), template_part(&eos, 0)].into_iter().flatten().collect();
        let mut pair = single.clone();
        pair.extend([template_part(&bos, 1), Some(sequence("B", 1)), template_part(&eos, 1)].into_iter().flatten());
        let mut template_specials = Map::new();
        for (token, id) in [(&bos, bos_id), (&eos, eos_id)] {
            if let (Some(token), Some(id)) = (token, id) {
                template_specials.insert(token.clone(), json!({"id": token, "ids": [id], "tokens": [token]}));
            }
        }
        let tokenizer_json = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": {"type": "TemplateProcessing", "single": single, "pair": pair,
                               "special_tokens": template_specials},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                      "ignore_merges": false, "vocab": vocab, "merges": merges},
        });

        let mut config = Map::new();
        config.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        config.insert("clean_up_tokenization_spaces".into(), false.into());
        config.insert("add_bos_token".into(), add_bos.into());
        config.insert("add_eos_token".into(), add_eos.into());
        for (key, id) in [("bos_token", bos_id), ("eos_token", eos_id), ("unk_token", unk_id), ("pad_token", pad_id)] {
            if let Some(token) = name(id) {
                config.insert(key.into(), token.into());
            }
        }
        let chat_template = file.get("tokenizer.chat_template").and_then(Value::as_str).map(str::to_owned);
        Ok(TokenizerFiles { tokens, tokenizer_json, config, chat_template, bos_id, eos_id, pad_id })
    }

    fn write(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join("tokenizer.json"), &self.tokenizer_json)?;
        write_json(&dir.join("tokenizer_config.json"), &Json::Object(self.config.clone()))?;
        if let Some(template) = &self.chat_template {
            let path = dir.join("chat_template.jinja");
            std::fs::write(&path, template).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }
}

/// GPT-2's byte -> printable character table (`bytes_to_unicode`).
fn byte_alphabet() -> Vec<char> {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut next = 256u32;
    (0u32..256)
        .map(|b| {
            let code = if printable(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            char::from_u32(code).unwrap_or('?')
        })
        .collect()
}

/// The pre-tokenizer split of llama.cpp's `tokenizer.ggml.pre` families whose regex differs from
/// GPT-2's (as transformers' GGUF conversion maps them); `None` keeps GPT-2's; an error for the
/// families whose split this import does not have.
fn split_regex(pre: &str) -> std::result::Result<Option<&'static str>, ()> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" | "dbrx" | "smaug-bpe" => Ok(Some(LLAMA3)),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => Ok(Some(QWEN2)),
        "tekken" | "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" | "qwen35" => Err(()),
        _ => Ok(None),
    }
}
