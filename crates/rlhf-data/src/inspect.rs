//! A readable summary of any Parquet table (a file or a directory of parts): its kind when
//! recognised, schema, row count and first rows.

use std::fmt;
use std::path::{Path, PathBuf};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::Result;
use crate::parquet_io::TableReader;
use crate::records::Kind;
use crate::schema::{check_columns, render_schema, schema_tag};

/// What [`inspect`] found.
#[derive(Debug, Clone)]
pub struct TableSummary {
    pub path: PathBuf,
    /// The kind named by the schema tag, else the first kind (most specific first) whose
    /// required columns the table has.
    pub kind: Option<Kind>,
    pub schema: SchemaRef,
    pub rows: u64,
    /// How many part files the table has, when it is a directory.
    pub parts: Option<usize>,
    /// The first rows, with every column.
    pub head: Option<RecordBatch>,
}

/// Kinds in the order tables are matched against by columns: a comparisons table also has a
/// prompts table's columns, so it is tried first.
const MOST_SPECIFIC_FIRST: [Kind; 9] = [
    Kind::Rollouts,
    Kind::Revisions,
    Kind::Verdicts,
    Kind::Comparisons,
    Kind::Rankings,
    Kind::Feedback,
    Kind::Demonstrations,
    Kind::Metrics,
    Kind::Prompts,
];

fn recognise(schema: &Schema) -> Option<Kind> {
    schema_tag(schema).and_then(Kind::from_tag).or_else(|| {
        MOST_SPECIFIC_FIRST.into_iter().find(|kind| check_columns(Path::new(""), schema, &kind.schema()).is_ok())
    })
}

/// Reads the footers of `path` and its first `head_rows` rows (across batches and part files).
pub fn inspect(path: impl AsRef<Path>, head_rows: usize) -> Result<TableSummary> {
    let mut reader = TableReader::open(path)?;
    let schema = reader.schema().clone();
    let rows = reader.num_rows();
    let parts = reader.parts();
    let mut batches = Vec::new();
    let mut kept = 0;
    while kept < head_rows {
        let Some(batch) = reader.next().transpose()? else { break };
        let batch = batch.slice(0, batch.num_rows().min(head_rows - kept));
        kept += batch.num_rows();
        batches.push(batch);
    }
    let head = match batches.first() {
        None => None,
        Some(first) => Some(
            arrow::compute::concat_batches(&first.schema(), &batches)
                .map_err(|e| crate::error::Error::parquet(reader.path(), e))?,
        ),
    };
    Ok(TableSummary { path: reader.path().to_path_buf(), kind: recognise(&schema), schema, rows, parts, head })
}

/// Longest value shown, in characters.
const SHOWN_CHARS: usize = 80;

/// One cell on one line: strings quoted and escaped, anything else as Arrow formats it, both
/// cut to [`SHOWN_CHARS`].
fn cell(column: &dyn Array, formatter: &ArrayFormatter, row: usize) -> String {
    let text = formatter.value(row).to_string();
    let text = match column.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if column.is_valid(row) => {
            format!("{text:?}")
        }
        _ => text.replace('\n', "\\n"),
    };
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

impl fmt::Display for TableSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "file: {}", self.path.display())?;
        match (self.kind, schema_tag(&self.schema)) {
            (Some(kind), Some(tag)) => writeln!(f, "kind: {kind} (tagged {tag})")?,
            (Some(kind), None) => writeln!(f, "kind: {kind} (recognised by its columns)")?,
            (None, _) => writeln!(f, "kind: not recognised")?,
        }
        writeln!(f, "rows: {}", self.rows)?;
        if let Some(parts) = self.parts {
            writeln!(f, "parts: {parts}")?;
        }
        writeln!(f, "schema:")?;
        for line in render_schema(&self.schema).lines() {
            writeln!(f, "  {line}")?;
        }
        let Some(head) = &self.head else {
            return Ok(());
        };
        writeln!(f, "first {} rows:", head.num_rows())?;
        let options = FormatOptions::default().with_null("null");
        let formatters: Vec<ArrayFormatter> = head
            .columns()
            .iter()
            .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
            .collect::<Result<_, _>>()
            .map_err(|_| fmt::Error)?;
        for row in 0..head.num_rows() {
            writeln!(f, "  row {row}:")?;
            let columns = head.schema_ref().fields().iter().zip(head.columns());
            for ((field, column), formatter) in columns.zip(&formatters) {
                let value = cell(column.as_ref(), formatter, row);
                writeln!(f, "    {}: {value}", field.name())?;
            }
        }
        Ok(())
    }
}
