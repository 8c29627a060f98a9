//! The crate's single error type. Every message is one sentence that starts with where the
//! problem is: a file, a line (1-based) or line and column of a text file, a row (0-based) of a
//! table, or a record id ([`Location`]).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::records::Kind;

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A 1-based line of a JSON Lines file.
    Line { path: PathBuf, line: u64 },
    /// A 1-based line and column of a JSON Lines file.
    LineColumn { path: PathBuf, line: u64, column: u64 },
    /// A 0-based row of a table.
    Row { path: PathBuf, row: u64 },
    /// A record in memory, known by its id.
    Record { id: String },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line { path, line } => write!(f, "{} line {line}", path.display()),
            Location::LineColumn { path, line, column } => {
                write!(f, "{} line {line} column {column}", path.display())
            }
            Location::Row { path, row } => write!(f, "{} row {row}", path.display()),
            Location::Record { id } => write!(f, "record {id:?}"),
        }
    }
}

/// Everything that can go wrong reading, writing, importing or validating data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: is a directory, expected a file", path.display())]
    IsDirectory { path: PathBuf },
    #[error("{}: is a directory without part files (*.parquet), expected a table", path.display())]
    EmptyTable { path: PathBuf },
    #[error("{}: has columns {found}, expected {expected} like {}", path.display(), first.display())]
    PartColumns {
        path: PathBuf,
        found: String,
        expected: String,
        /// The table's first part, whose columns the others must have.
        first: PathBuf,
    },
    #[error("{}: not a readable Parquet file: {reason}", path.display())]
    Parquet { path: PathBuf, reason: String },
    #[error("{}: cannot write Parquet: {reason}", path.display())]
    WriteParquet { path: PathBuf, reason: String },
    #[error("{}: missing column {column:?}, expected {expected}", path.display())]
    MissingColumn { path: PathBuf, column: String, expected: String },
    #[error("{}: column {column:?} has type {found}, expected {expected}", path.display())]
    ColumnType { path: PathBuf, column: String, found: String, expected: String },
    #[error("{}: column {column:?} has a null at row {row}, expected a non-null {expected}", path.display())]
    NullValue { path: PathBuf, column: String, row: u64, expected: String },
    #[error("{}: schema is {found:?}, expected {expected:?}", path.display())]
    SchemaVersion { path: PathBuf, found: String, expected: String },
    #[error("{}: already has a column {column:?}", path.display())]
    ColumnExists { path: PathBuf, column: String },
    #[error("{}: has {rows} rows but the new column {column:?} has {values} values", path.display())]
    ColumnLength { path: PathBuf, column: String, rows: u64, values: u64 },
    #[error("{}: has no records", path.display())]
    NoRecords { path: PathBuf },
    #[error("{}: is a JSON array, expected JSON Lines (one object per line)", path.display())]
    NotJsonLines { path: PathBuf },
    #[error("{location}: invalid JSON ({message})")]
    Json { location: Location, message: String },
    #[error("{location}: record is {found}, expected a JSON object")]
    NotAnObject { location: Location, found: &'static str },
    #[error("{location}: invalid UTF-8")]
    InvalidUtf8 { location: Location },
    #[error("{location}: missing key {key:?}")]
    MissingKey { location: Location, key: String },
    #[error("{location}: {key:?} is {found}, expected {expected}")]
    WrongType { location: Location, key: String, expected: &'static str, found: &'static str },
    #[error("{location}: {key:?} is {value}, expected a finite number")]
    NotFinite { location: Location, key: String, value: String },
    #[error("{location}: {field:?} is empty")]
    EmptyField { location: Location, field: String },
    #[error("{location}: {key:?} {reason}")]
    NoResponse { location: Location, key: String, reason: &'static str },
    #[error("{location}: {reason}")]
    InvalidConversation { location: Location, reason: String },
    #[error("{location}: chosen and rejected have different prompts (everything before their last assistant turn must be equal)")]
    PromptMismatch { location: Location },
    #[error("{location}: ranking {ranking:?} is not a permutation of the {responses} response indices")]
    InvalidRanking { location: Location, ranking: Vec<u32>, responses: usize },
    #[error("{location}: {field:?} has {found} values, expected {expected} (one per response token)")]
    LengthMismatch { location: Location, field: &'static str, found: usize, expected: usize },
    #[error("{location}: {field:?} has {found} entries, expected {expected} (one per round, as \"principles\")")]
    RoundMismatch { location: Location, field: &'static str, found: usize, expected: usize },
    #[error("{location}: {field:?} is {value}, expected a probability in [0, 1]")]
    NotAProbability { location: Location, field: &'static str, value: f64 },
    #[error("{}: keys {keys:?} match no {kind} layout, expected {expected}", path.display())]
    UnknownLayout { path: PathBuf, kind: Kind, keys: Vec<String>, expected: String },
    #[error("format {format} is not a {kind} layout, expected {expected}")]
    FormatKind { format: String, kind: Kind, expected: String },
    #[error("{kind} cannot be imported, only prompts, demonstrations, comparisons and rankings can")]
    NotImportable { kind: Kind },
    #[error("cannot build a {kind} record batch: {source}")]
    Arrow {
        kind: Kind,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{origin}: {message}")]
    Config { origin: String, message: String },
    /// A [`Judge`](crate::Judge) failed; `judge` is its tag (`rm:<dir>`, `ai:<model>` ...).
    #[error("judge {judge}: {message}")]
    Judge { judge: String, message: String },
}

impl Error {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), action, source }
    }

    pub(crate) fn parquet(path: &Path, error: impl fmt::Display) -> Self {
        Error::Parquet { path: path.to_path_buf(), reason: reason(error) }
    }

    pub(crate) fn write_parquet(path: &Path, error: impl fmt::Display) -> Self {
        Error::WriteParquet { path: path.to_path_buf(), reason: reason(error) }
    }
}

/// A library error's message without its generic "Parquet error: " prefix.
fn reason(error: impl fmt::Display) -> String {
    let message = error.to_string();
    message.strip_prefix("Parquet error: ").unwrap_or(&message).to_string()
}
