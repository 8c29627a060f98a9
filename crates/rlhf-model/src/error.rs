//! The crate's single error type. Every fallible public function returns [`Result`].
//!
//! Variants name the file, tensor or field at fault so a binary can print one clear line.
//! (Shared by every module of the crate: add variants, don't rewrite others'.)

use std::path::PathBuf;

/// Errors raised by `rlhf-model`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file or directory failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed (or serialized).
    #[error("{}: invalid JSON: {source}", .path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A model configuration is invalid or unsupported.
    #[error("{}: {message}", .path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "model config".into()))]
    Config { path: Option<PathBuf>, message: String },
    /// The checkpoint lacks a tensor the model needs.
    #[error("{}: missing tensor `{name}` (expected shape {expected:?})", .file.display())]
    MissingTensor { name: String, expected: Vec<i64>, file: PathBuf },
    /// The checkpoint holds a tensor the model does not know.
    #[error("{}: unexpected tensor `{name}` (shape {found:?}) is not part of the model", .file.display())]
    UnexpectedTensor { name: String, found: Vec<i64>, file: PathBuf },
    /// A checkpoint tensor has the wrong shape.
    #[error("{}: tensor `{name}` has shape {found:?}, expected {expected:?}", .file.display())]
    ShapeMismatch { name: String, expected: Vec<i64>, found: Vec<i64>, file: PathBuf },
    /// A safetensors file is malformed or holds an unsupported dtype.
    #[error("{}: safetensors: {message}", .path.display())]
    Safetensors { path: PathBuf, message: String },
    /// Invalid arguments from the caller (shapes, options, token ids).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// `--device cuda` was asked for where libtorch cannot use a GPU.
    #[error("{0}")]
    DeviceUnavailable(String),
    /// A tokenizer file (`tokenizer.json`, `tokenizer_config.json`) is missing or unusable.
    #[error("{}: {message}", path.display())]
    TokenizerFile { path: PathBuf, message: String },
    /// Tokenizing, decoding or training a tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The tokenizer has more tokens than the model's embedding has rows.
    #[error(
        "tokenizer mismatch: the tokenizer has {tokenizer_vocab} tokens but the model's embedding has only \
         {embedding_rows} rows; use the tokenizer saved with this model"
    )]
    VocabMismatch { tokenizer_vocab: usize, embedding_rows: i64 },
    /// A chat template failed to compile or render (including its own `raise_exception`).
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A training checkpoint or optimizer state is incomplete or does not match the model.
    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// A GGUF file is malformed, or holds a tensor type, architecture or tokenizer this import
    /// does not support.
    #[error("{}: GGUF: {message}", .path.display())]
    Gguf { path: PathBuf, message: String },
    /// An error reported by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Shorthand for `std::result::Result<T, rlhf_model::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config { path: None, message: message.into() }
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }
    pub(crate) fn checkpoint(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Checkpoint { path: path.into(), message: message.to_string() }
    }
}
