//! A trained Llama/Qwen2 checkpoint directory out as a GGUF file for llama.cpp and Ollama: the
//! inverse of [`super::import`]. Matrices are stored as F16 or Q8_0 (llama.cpp's round-to-nearest
//! 8-bit blocks), vectors (norms, biases) as F32; Llama's q/k rows are permuted the way llama.cpp's
//! converter does; the byte-level BPE tokenizer, its merges, special tokens and chat template go into
//! the `tokenizer.*` keys. The file is written to a temporary name and renamed when complete.

use super::quants::GgmlType;
use super::{gguf_name, Value};
use crate::checkpoint::{read_config, read_safetensors, weight_files, CONFIG_FILE};
use crate::config::ArchConfig;
use crate::error::{Error, Result};
use half::f16;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use tch::{Kind, Tensor};

/// How the matrices are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportType {
    F16,
    #[value(name = "q8_0")]
    Q8_0,
}

const ALIGNMENT: usize = 32;

/// Writes the checkpoint `dir` as the GGUF file `out`; returns the number of tensors written.
pub fn export_gguf(dir: impl AsRef<Path>, out: impl AsRef<Path>, kind: ExportType) -> Result<usize> {
    let (dir, out) = (dir.as_ref(), out.as_ref());
    let config = read_config(dir)?;
    let bad = |message: String| Error::Config { path: Some(dir.join(CONFIG_FILE)), message };
    let ArchConfig::Llama(llama) = &config.arch else {
        return Err(bad(format!("GGUF export supports llama and qwen2 checkpoints, not `{}`", config.model_type)));
    };
    let arch = config.model_type.as_str();
    if config.is_sequence_classification() {
        return Err(bad("a reward model (sequence classifier) has no GGUF form: export a policy".into()));
    }
    let rope = llama.rope()?;
    if rope.scaling != crate::config::RopeScaling::None {
        return Err(bad("rope scaling is not exported".into()));
    }
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.alignment".into(), Value::U32(ALIGNMENT as u32)),
        (format!("{arch}.block_count"), Value::U32(llama.num_hidden_layers as u32)),
        (format!("{arch}.context_length"), Value::U32(llama.max_position_embeddings as u32)),
        (format!("{arch}.embedding_length"), Value::U32(llama.hidden_size as u32)),
        (format!("{arch}.feed_forward_length"), Value::U32(llama.intermediate_size as u32)),
        (format!("{arch}.attention.head_count"), Value::U32(llama.num_attention_heads as u32)),
        (format!("{arch}.attention.head_count_kv"), Value::U32(llama.kv_heads() as u32)),
        (format!("{arch}.attention.layer_norm_rms_epsilon"), Value::F32(llama.rms_norm_eps as f32)),
        (format!("{arch}.rope.freq_base"), Value::F32(rope.theta as f32)),
        (format!("{arch}.rope.dimension_count"), Value::U32(llama.head_size() as u32)),
        (format!("{arch}.vocab_size"), Value::U32(llama.vocab_size as u32)),
    ];
    metadata.extend(tokenizer_metadata(dir)?);

    let mut tensors = BTreeMap::new();
    for file in weight_files(dir)? {
        tensors.extend(read_safetensors(&file)?);
    }
    let mut entries = Vec::with_capacity(tensors.len());
    for (name, tensor) in &tensors {
        if name == "lm_head.weight" && config.tie_word_embeddings() {
            continue;
        }
        let gguf_name = gguf_name(name).ok_or_else(|| bad(format!("tensor `{name}` has no GGUF name")))?;
        let heads = match name {
            n if arch == "llama" && n.contains(".q_proj.") => Some(llama.num_attention_heads),
            n if arch == "llama" && n.contains(".k_proj.") => Some(llama.kv_heads()),
            _ => None,
        };
        let tensor = tensor.to_kind(Kind::Float);
        let tensor = match heads {
            Some(heads) => permute_rows(&tensor, heads),
            None => tensor,
        };
        let shape = tensor.size();
        let values: Vec<f32> = Vec::try_from(tensor.contiguous().view(-1))?;
        let cols = *shape.last().unwrap_or(&1) as usize;
        let ggml = match kind {
            _ if shape.len() < 2 => GgmlType::F32,
            ExportType::Q8_0 if cols.is_multiple_of(32) => GgmlType::Q8_0,
            _ => GgmlType::F16,
        };
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        entries.push((gguf_name, dims, ggml, encode(ggml, &values)));
    }
    write_file(out, &metadata, &entries)?;
    Ok(entries.len())
}

/// llama.cpp's q/k permutation: rows (head, row, half) -> (head, half, row).
fn permute_rows(tensor: &Tensor, heads: i64) -> Tensor {
    let shape = tensor.size();
    let mut split = vec![heads, 2, shape[0] / heads / 2];
    split.extend_from_slice(&shape[1..]);
    tensor.reshape(&split).transpose(1, 2).contiguous().reshape(&shape)
}

/// The tensor's bytes in `kind`.
fn encode(kind: GgmlType, values: &[f32]) -> Vec<u8> {
    match kind {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::Q8_0 => values.chunks_exact(32).flat_map(quantize_q8_0).collect(),
        _ => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
    }
}

/// One Q8_0 block: `d = max|x| / 127` (f16), `q = round(x / d)` (half away from zero).
fn quantize_q8_0(block: &[f32]) -> Vec<u8> {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inverse = if d == 0.0 { 0.0 } else { 1.0 / d };
    let mut out = f16::from_f32(d).to_le_bytes().to_vec();
    out.extend(block.iter().map(|&v| (v * inverse).round().clamp(-127.0, 127.0) as i8 as u8));
    out
}

/// The `tokenizer.*` keys of a byte-level BPE `tokenizer.json` (+ `tokenizer_config.json`, the
/// chat template).
fn tokenizer_metadata(dir: &Path) -> Result<Vec<(String, Value)>> {
    let path = dir.join("tokenizer.json");
    let read_json = |path: &Path| -> Result<Json> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|source| Error::Json { path: path.to_path_buf(), source })
    };
    let bad = |message: &str| Error::TokenizerFile { path: path.clone(), message: message.into() };
    let tokenizer = read_json(&path)?;
    let model = &tokenizer["model"];
    if model["type"] != "BPE" || model["byte_fallback"] == true {
        return Err(bad("GGUF export needs a byte-level BPE tokenizer (GPT-2 style)"));
    }
    let pre = match &tokenizer["pre_tokenizer"] {
        p if p["type"] == "ByteLevel" && p["use_regex"] != false => "gpt2",
        _ => return Err(bad("only the GPT-2 byte-level pre-tokenizer is exported")),
    };
    let vocab = model["vocab"].as_object().ok_or_else(|| bad("model.vocab is not an object"))?;
    let mut tokens: Vec<Option<String>> = Vec::new();
    let mut place = |id: usize, token: &str| {
        if tokens.len() <= id {
            tokens.resize(id + 1, None);
        }
        tokens[id] = Some(token.to_owned());
    };
    for (token, id) in vocab {
        place(id.as_u64().ok_or_else(|| bad("a vocab id is not an integer"))? as usize, token);
    }
    let mut types: BTreeMap<usize, i32> = BTreeMap::new();
    for added in tokenizer["added_tokens"].as_array().into_iter().flatten() {
        let id = added["id"].as_u64().ok_or_else(|| bad("an added token has no id"))? as usize;
        place(id, added["content"].as_str().unwrap_or_default());
        types.insert(id, if added["special"] == true { 3 } else { 4 });
    }
    let tokens: Vec<String> =
        tokens.into_iter().map(|t| t.ok_or_else(|| bad("the token ids have a gap"))).collect::<Result<_>>()?;
    let merges: Vec<Value> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|merge| match merge {
            Json::String(s) => Ok(Value::String(s.clone())),
            Json::Array(pair) => match (pair.first().and_then(Json::as_str), pair.get(1).and_then(Json::as_str)) {
                (Some(a), Some(b)) => Ok(Value::String(format!("{a} {b}"))),
                _ => Err(bad("a merge is not a pair of strings")),
            },
            _ => Err(bad("a merge is not a string or a pair")),
        })
        .collect::<Result<_>>()?;
    let config_path = dir.join("tokenizer_config.json");
    let config = if config_path.is_file() { read_json(&config_path)? } else { Json::Null };
    let id_of = |key: &str| -> Option<u32> {
        let name = match &config[key] {
            Json::String(s) => s.clone(),
            Json::Object(o) => o.get("content")?.as_str()?.to_owned(),
            _ => return None,
        };
        tokens.iter().position(|t| *t == name).map(|i| i as u32)
    };
    let mut out = vec![
        ("tokenizer.ggml.model".to_owned(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array((0..tokens.len()).map(|id| Value::I32(*types.get(&id).unwrap_or(&1))).collect()),
        ),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens.iter().cloned().map(Value::String).collect())),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(config["add_bos_token"] == true)),
    ];
    for (key, gguf_key) in [
        ("bos_token", "bos_token_id"),
        ("eos_token", "eos_token_id"),
        ("unk_token", "unknown_token_id"),
        ("pad_token", "padding_token_id"),
    ] {
        if let Some(id) = id_of(key) {
            out.push((format!("tokenizer.ggml.{gguf_key}"), Value::U32(id)));
        }
    }
    let template_path = dir.join("chat_template.jinja");
    let template = if template_path.is_file() {
        Some(std::fs::read_to_string(&template_path).map_err(|e| Error::io(&template_path, e))?)
    } else {
        config["chat_template"].as_str().map(str::to_owned)
    };
    if let Some(template) = template {
        out.push(("tokenizer.chat_template".into(), Value::String(template)));
    }
    Ok(out)
}

type Entry = (String, Vec<u64>, GgmlType, Vec<u8>);

fn write_file(out: &Path, metadata: &[(String, Value)], tensors: &[Entry]) -> Result<()> {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend((tensors.len() as u64).to_le_bytes());
    bytes.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_string(&mut bytes, key);
        bytes.extend(value_type(value).to_le_bytes());
        put_value(&mut bytes, value);
    }
    let mut offset = 0usize;
    for (name, dims, kind, data) in tensors {
        put_string(&mut bytes, name);
        bytes.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| bytes.extend(d.to_le_bytes()));
        bytes.extend(kind.id().to_le_bytes());
        bytes.extend((offset as u64).to_le_bytes());
        offset += data.len().div_ceil(ALIGNMENT) * ALIGNMENT;
    }
    let tmp = out.with_extension("gguf.partial");
    let mut write = || -> std::io::Result<()> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        bytes.resize(bytes.len().div_ceil(ALIGNMENT) * ALIGNMENT, 0);
        file.write_all(&bytes)?;
        for (_, _, _, data) in tensors {
            file.write_all(data)?;
            file.write_all(&vec![0u8; data.len().div_ceil(ALIGNMENT) * ALIGNMENT - data.len()])?;
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, out)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(out, e)
    })
}

fn put_string(bytes: &mut Vec<u8>, s: &str) {
    bytes.extend((s.len() as u64).to_le_bytes());
    bytes.extend(s.as_bytes());
}

fn value_type(value: &Value) -> u32 {
    match value {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_value(bytes: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => bytes.push(*v),
        Value::I8(v) => bytes.extend(v.to_le_bytes()),
        Value::U16(v) => bytes.extend(v.to_le_bytes()),
        Value::I16(v) => bytes.extend(v.to_le_bytes()),
        Value::U32(v) => bytes.extend(v.to_le_bytes()),
        Value::I32(v) => bytes.extend(v.to_le_bytes()),
        Value::U64(v) => bytes.extend(v.to_le_bytes()),
        Value::I64(v) => bytes.extend(v.to_le_bytes()),
        Value::F32(v) => bytes.extend(v.to_le_bytes()),
        Value::F64(v) => bytes.extend(v.to_le_bytes()),
        Value::Bool(v) => bytes.push(u8::from(*v)),
        Value::String(s) => put_string(bytes, s),
        Value::Array(items) => {
            bytes.extend(items.first().map_or(8, value_type).to_le_bytes());
            bytes.extend((items.len() as u64).to_le_bytes());
            items.iter().for_each(|item| put_value(bytes, item));
        }
    }
}
