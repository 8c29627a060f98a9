//! GGUF files (llama.cpp's format): the reader, dequantization, and the import into a Hugging Face
//! checkpoint directory.
//!
//! A GGUF file is a header (`GGUF`, version 2 or 3, little-endian), typed metadata key/values (the
//! architecture's hyper-parameters, the tokenizer's vocabulary and merges, the chat template), tensor
//! descriptors, then the aligned tensor data. [`GgufFile::open`] maps the file and checks every
//! descriptor against the file's size before anything is read; [`quants`] turns a tensor of any
//! supported `ggml` type into `f32`; [`import`] writes the checkpoint directory, and [`export`] a
//! trained checkpoint back out as GGUF (F16 or Q8_0) for llama.cpp and Ollama.

pub mod export;
pub mod import;
pub mod quants;

use crate::error::{Error, Result};
use quants::GgmlType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use export::{export_gguf, ExportType};
pub use import::{import_gguf, GgufImport};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an integer, when it is one.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => i64::try_from(v).ok()?,
            Value::I64(v) => v,
            _ => return None,
        })
    }
    /// The value as a float, when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// One tensor's descriptor.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` varies fastest (the reverse of a PyTorch shape).
    pub dims: Vec<u64>,
    pub kind: GgmlType,
    /// Byte range of the data inside the file.
    pub start: usize,
    pub len: usize,
}

impl TensorInfo {
    /// The PyTorch shape (slowest dimension first).
    pub fn shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }
    pub fn num_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// An opened GGUF file: metadata and tensor descriptors, the data mapped in memory.
pub struct GgufFile {
    path: PathBuf,
    map: memmap2::Mmap,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
}

impl GgufFile {
    /// Maps and parses `path`; a truncated file, an unknown value or tensor type, or a tensor that
    /// does not fit in the file is an error naming the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the file is only read; a concurrent writer would be a user error, as for safetensors.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let mut reader = Reader { bytes: &map, pos: 0, path: &path };
        let (version, metadata, infos) = reader.header()?;
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_i64() {
                Some(a) if a > 0 && (a as u64).is_power_of_two() => a as u64,
                _ => return Err(gguf_error(&path, format!("general.alignment {v:?} is not a power of two"))),
            },
        };
        let data_start = (reader.pos as u64).div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, dims, kind, offset) in infos {
            let kind = GgmlType::from_id(kind)
                .ok_or_else(|| gguf_error(&path, format!("tensor `{name}` has unknown ggml type {kind}")))?;
            let info = locate(&path, name, dims, kind, data_start, offset, map.len())?;
            tensors.push(info);
        }
        Ok(GgufFile { path, map, version, metadata, tensors })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// The raw bytes of a tensor.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.map[info.start..info.start + info.len]
    }

    /// A tensor dequantized to `f32`, in GGUF element order.
    pub fn dequantize(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        quants::dequantize(info.kind, self.tensor_bytes(info), info.num_elements() as usize)
            .map_err(|message| gguf_error(&self.path, format!("tensor `{}`: {message}", info.name)))
    }
}

/// Checks a descriptor's dimensions, block alignment and byte range against the file.
fn locate(
    path: &Path,
    name: String,
    dims: Vec<u64>,
    kind: GgmlType,
    data_start: u64,
    offset: u64,
    file_len: usize,
) -> Result<TensorInfo> {
    let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    let (block_elements, block_bytes) = kind.block();
    let Some(elements) = elements.filter(|n| dims.first().is_some_and(|d| d % block_elements as u64 == 0) || *n == 0)
    else {
        return Err(gguf_error(
            path,
            format!(
                "tensor `{name}` of type {kind:?} has dims {dims:?}: the first must be a multiple of {block_elements}"
            ),
        ));
    };
    let len = elements / block_elements as u64 * block_bytes as u64;
    let start = data_start.checked_add(offset);
    match start.and_then(|s| s.checked_add(len)) {
        Some(end) if end <= file_len as u64 => {
            Ok(TensorInfo { name, dims, kind, start: start.unwrap_or(0) as usize, len: len as usize })
        }
        _ => Err(gguf_error(
            path,
            format!("tensor `{name}` ({len} bytes at offset {offset}) runs past the end of the file: truncated?"),
        )),
    }
}

/// llama.cpp's tensor names and transformers' (Llama / Qwen2 layout): the whole-model tensors, then
/// the per-layer parts (`blk.N.<gguf>.weight|bias` = `model.layers.N.<hf>.weight|bias`).
const TOP_TENSORS: [(&str, &str); 3] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];
const LAYER_PARTS: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// A llama.cpp tensor name as transformers names it.
pub(crate) fn hf_name(gguf: &str) -> Option<String> {
    translate(gguf, "blk.", "model.layers.", |(g, h)| (g, h))
}

/// A transformers tensor name as llama.cpp names it.
pub(crate) fn gguf_name(hf: &str) -> Option<String> {
    translate(hf, "model.layers.", "blk.", |(g, h)| (h, g))
}

/// `name` through the tables, `pick` orienting each pair as (from, to).
fn translate(
    name: &str,
    from_prefix: &str,
    to_prefix: &str,
    pick: impl Fn((&'static str, &'static str)) -> (&'static str, &'static str),
) -> Option<String> {
    if let Some((_, to)) = TOP_TENSORS.into_iter().map(&pick).find(|(from, _)| *from == name) {
        return Some(to.to_owned());
    }
    let (layer, rest) = name.strip_prefix(from_prefix)?.split_once('.')?;
    layer.parse::<u32>().ok()?;
    let (part, suffix) = rest.rsplit_once('.')?;
    if !matches!(suffix, "weight" | "bias") {
        return None;
    }
    let (_, to) = LAYER_PARTS.into_iter().map(pick).find(|(from, _)| *from == part)?;
    Some(format!("{to_prefix}{layer}.{to}.{suffix}"))
}

pub(crate) fn gguf_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Gguf { path: path.to_path_buf(), message: message.into() }
}

/// Raw tensor descriptor: name, dims, type id, offset.
type RawInfo = (String, Vec<u64>, u32, u64);

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Reader<'_> {
    fn header(&mut self) -> Result<(u32, BTreeMap<String, Value>, Vec<RawInfo>)> {
        if self.take(4)? != MAGIC {
            return Err(gguf_error(self.path, "not a GGUF file (the first bytes are not `GGUF`)"));
        }
        let version = self.u32()?;
        if !(2..=3).contains(&version) {
            let hint = if version.swap_bytes() <= 3 { " (a big-endian file?)" } else { "" };
            return Err(gguf_error(self.path, format!("GGUF version {version} is not supported (2 and 3 are){hint}")));
        }
        let tensor_count = self.u64()?;
        let kv_count = self.u64()?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = self.string()?;
            let kind = self.u32()?;
            let value = self.value(kind, 0)?;
            metadata.insert(key, value);
        }
        let mut infos = Vec::new();
        for _ in 0..tensor_count {
            let name = self.string()?;
            let n_dims = self.u32()?;
            if n_dims > 4 {
                return Err(gguf_error(self.path, format!("tensor `{name}` has {n_dims} dimensions (at most 4)")));
            }
            let dims = (0..n_dims).map(|_| self.u64()).collect::<Result<Vec<_>>>()?;
            let kind = self.u32()?;
            let offset = self.u64()?;
            infos.push((name, dims, kind, offset));
        }
        Ok((version, metadata, infos))
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or_else(|| {
            gguf_error(self.path, format!("the header ends early at byte {} (truncated file?)", self.pos))
        })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| gguf_error(self.path, "a string length overflows"))?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| gguf_error(self.path, format!("a string at byte {} is not UTF-8", self.pos - len)))
    }
    fn value(&mut self, kind: u32, depth: u32) -> Result<Value> {
        Ok(match kind {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(i8::from_le_bytes(self.array()?)),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 if depth < 2 => {
                let item_kind = self.u32()?;
                let count = self.u64()?;
                // Every item takes at least one byte: a count beyond the file is corrupt, not huge.
                if count > (self.bytes.len() - self.pos) as u64 {
                    return Err(gguf_error(
                        self.path,
                        format!("an array of {count} items runs past the end of the file"),
                    ));
                }
                let items = (0..count).map(|_| self.value(item_kind, depth + 1)).collect::<Result<Vec<_>>>()?;
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            _ => return Err(gguf_error(self.path, format!("unknown metadata value type {kind} at byte {}", self.pos))),
        })
    }
}
