//! Hugging Face checkpoint directories: `config.json` + `model.safetensors` (or a sharded
//! `model.safetensors.index.json`), loaded strictly into a `VarStore` whose names mirror HF's, and
//! saved atomically (temp dir, then rename) with tied weights written once, as transformers does.

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// Config file name.
pub const CONFIG_FILE: &str = "config.json";
/// Single-file weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Index of sharded weights.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// Generation defaults file.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";
/// Tokenizer files copied along when a model is saved from a directory that had them.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
];

/// Reads `dir/config.json`.
pub fn read_config(dir: impl AsRef<Path>) -> Result<ModelConfig> {
    ModelConfig::from_file(dir.as_ref().join(CONFIG_FILE))
}

/// The safetensors files of a checkpoint directory, in a stable order.
pub fn weight_files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(WEIGHTS_INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Json { path: index.clone(), source: e })?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::Config { path: Some(index.clone()), message: "no `weight_map` object".into() })?;
        let files: std::collections::BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    Err(Error::io(
        &single,
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("no {WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE}")),
    ))
}

/// How strictly checkpoint names must match the model's variables.
pub(crate) struct LoadRules<'a> {
    /// HF base-model prefix (`transformer` / `model`): names saved without it (a bare `GPT2Model`
    /// or `LlamaModel`) are mapped under it.
    pub prefix: &'a str,
    /// Checkpoint tensors to skip silently (buffers, tied copies, heads of another class).
    pub ignore: &'a dyn Fn(&str) -> bool,
    /// Model variables that may be absent from the checkpoint (they keep their init).
    pub optional: &'a dyn Fn(&str) -> bool,
}

/// Checkpoint tensors that transformers itself skips: non-persistent buffers of old GPT-2/Llama saves.
pub(crate) fn is_hf_buffer(name: &str) -> bool {
    name.ends_with(".attn.bias") && !name.contains("c_attn")
        || name.ends_with(".attn.masked_bias")
        || name.ends_with("rotary_emb.inv_freq")
}

fn tensor_from_view(view: &safetensors::tensor::TensorView<'_>, file: &Path, name: &str) -> Result<Tensor> {
    let kind = match view.dtype() {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        other => {
            return Err(Error::Safetensors {
                path: file.into(),
                message: format!("tensor `{name}` has unsupported dtype {other:?}"),
            })
        }
    };
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_data_size(view.data(), &shape, kind)?)
}

/// Memory-maps a weights file (no second copy of multi-GB shards in memory).
fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only and lives only while this checkpoint is being loaded; like
    // transformers and candle we assume nobody truncates the file meanwhile.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

/// Loads every weight file of `dir` into `vs` under `rules`. Errors name the tensor, the shapes
/// and the file.
pub(crate) fn load_var_store(vs: &VarStore, dir: &Path, rules: &LoadRules<'_>) -> Result<()> {
    let vars = vs.variables();
    let mut filled: HashSet<String> = HashSet::new();
    let files = weight_files(dir)?;
    for file in &files {
        let _span = tracing::debug_span!("load_safetensors", file = %file.display()).entered();
        let bytes = map_file(file)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Safetensors { path: file.clone(), message: e.to_string() })?;
        let mut names = st.names();
        names.sort();
        for name in names {
            let view =
                st.tensor(name).map_err(|e| Error::Safetensors { path: file.clone(), message: e.to_string() })?;
            let found: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let target = if vars.contains_key(name) {
                name.to_string()
            } else {
                let prefixed = format!("{}.{name}", rules.prefix);
                if vars.contains_key(&prefixed) {
                    prefixed
                } else if (rules.ignore)(name) || is_hf_buffer(name) {
                    continue;
                } else {
                    return Err(Error::UnexpectedTensor { name: name.to_string(), found, file: file.clone() });
                }
            };
            let var = &vars[&target];
            let expected = var.size();
            if expected != found {
                return Err(Error::ShapeMismatch { name: name.to_string(), expected, found, file: file.clone() });
            }
            let src = tensor_from_view(&view, file, name)?;
            tch::no_grad(|| -> Result<()> {
                let mut dst = var.shallow_clone();
                dst.f_copy_(&src)?;
                Ok(())
            })?;
            filled.insert(target);
        }
    }
    let mut missing: Vec<&String> = vars.keys().filter(|k| !filled.contains(*k) && !(rules.optional)(k)).collect();
    missing.sort();
    if let Some(name) = missing.first() {
        let file = if files.len() == 1 { files[0].clone() } else { dir.join(WEIGHTS_INDEX_FILE) };
        return Err(Error::MissingTensor { name: (*name).clone(), expected: vars[*name].size(), file });
    }
    Ok(())
}

/// CPU bytes of one tensor, ready for safetensors.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn host_tensor(t: &Tensor) -> Result<HostTensor> {
    let t = t.detach().to_device(Device::Cpu).contiguous();
    let dtype = match t.kind() {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        k => return Err(Error::invalid(format!("cannot save tensors of kind {k:?}"))),
    };
    let numel = t.numel();
    let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)?;
    Ok(HostTensor { dtype, shape: t.size().iter().map(|&d| d as usize).collect(), data })
}

/// Writes named tensors to one safetensors file with HF's `{"format": "pt"}` metadata.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let host: Vec<(String, HostTensor)> =
        tensors.iter().map(|(n, t)| Ok((n.clone(), host_tensor(t)?))).collect::<Result<_>>()?;
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::tensor::serialize_to_file(host.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata), path)
        .map_err(|e| Error::Safetensors { path: path.into(), message: e.to_string() })
}

/// Reads every tensor of a safetensors file (CPU).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = map_file(path)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::Safetensors { path: path.into(), message: e.to_string() })?;
    st.tensors().iter().map(|(n, v)| Ok((n.clone(), tensor_from_view(v, path, n)?))).collect()
}

pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Json { path: path.into(), source: e })?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// Builds a directory atomically: `fill` writes into a fresh temp dir next to `dir`, which then
/// replaces `dir` (an existing `dir` is moved aside first and removed after). On error nothing is
/// left behind.
pub fn save_dir_atomically(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let base = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let tmp = parent.join(format!(".{base}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    rlhf_data::atomic::kill_point("final");
    let old = parent.join(format!(".{base}.old-{}", std::process::id()));
    let had_old = dir.exists();
    if had_old {
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    if let Err(e) = std::fs::rename(&tmp, dir) {
        if had_old {
            let _ = std::fs::rename(&old, dir);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(Error::io(dir, e));
    }
    if had_old {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// Copies the tokenizer files that exist in `src` into `dst`.
pub(crate) fn copy_tokenizer_files(src: &Path, dst: &Path) -> Result<()> {
    for f in TOKENIZER_FILES {
        let from = src.join(f);
        if from.is_file() {
            std::fs::copy(&from, dst.join(f)).map_err(|e| Error::io(&from, e))?;
        }
    }
    Ok(())
}

/// A `generation_config.json` derived from the model config, as transformers writes it.
pub(crate) fn default_generation_config(cfg: &ModelConfig) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("_from_model_config".into(), true.into());
    if let Some(b) = &cfg.bos_token_id {
        m.insert("bos_token_id".into(), serde_json::json!(b));
    }
    if let Some(e) = &cfg.eos_token_id {
        m.insert("eos_token_id".into(), serde_json::json!(e));
    }
    if let Some(p) = cfg.pad_token_id {
        m.insert("pad_token_id".into(), p.into());
    }
    serde_json::Value::Object(m)
}
