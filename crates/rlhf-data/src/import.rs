//! Import of JSON Lines and Parquet datasets into record tables (layouts: [`crate::layouts`]).
//!
//! The input type is recognised from the content: Parquet by its `PAR1` magic, anything else is
//! read as JSON Lines. The input is cut into blocks (about 4 MiB of lines, or one Parquet batch);
//! each round of blocks (two per thread) is parsed, validated, converted and compressed into one
//! row group per block in parallel with rayon, while the previous round's row groups are appended
//! in order and the next round is read. Memory stays bounded (three rounds at most) whatever the
//! input size, and the output is written atomically: on any error nothing is left behind.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{can_cast_types, cast};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, UInt64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use memchr::{memchr_iter, memrchr};
use rayon::prelude::*;
use serde_json::{Map, Value};

use crate::error::{Error, Location, Result};
use crate::layouts::{json_type, resolve_format, unused_keys, Format, FromRow, InputFile, Position, Row};
use crate::parquet_io::{open_file, EncodedRowGroup, TableReader, TableWriter};
use crate::records::{Comparison, Demonstration, Feedback, Kind, Prompt, Ranking};

/// What to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// The table to produce: prompts, demonstrations, comparisons or rankings.
    pub kind: Kind,
    /// The input layout, or [`Format::Auto`] to detect it from the first record.
    pub format: Format,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub rows: u64,
    /// The layout used (the detected one for [`Format::Auto`]).
    pub format: Format,
    /// Rows whose id an earlier row already has (kept: stages do not need ids to be unique, but a
    /// dataset that repeats them was most likely concatenated twice), and the first such id.
    pub repeated_ids: u64,
    pub first_repeated_id: Option<String>,
}

/// Reads `input` (JSON Lines or Parquet) and writes it to `output` as a `options.kind` table.
pub fn import(input: impl AsRef<Path>, output: impl AsRef<Path>, options: &ImportOptions) -> Result<ImportSummary> {
    let (input, output) = (input.as_ref(), output.as_ref());
    match options.kind {
        Kind::Prompts => import_as::<Prompt>(input, output, options.format),
        Kind::Demonstrations => import_as::<Demonstration>(input, output, options.format),
        Kind::Comparisons => import_as::<Comparison>(input, output, options.format),
        Kind::Rankings => import_as::<Ranking>(input, output, options.format),
        Kind::Feedback => import_as::<Feedback>(input, output, options.format),
        kind @ (Kind::Rollouts | Kind::Metrics | Kind::Revisions | Kind::Verdicts) => {
            Err(Error::NotImportable { kind })
        }
    }
}

/// Bytes of JSON Lines per block (a block always ends at a line end); one row group each.
const BLOCK_BYTES: usize = 4 << 20;

/// A piece of the input, converted to one record batch.
enum Block {
    /// Whole lines, the first being line `first_line` (1-based).
    Lines { data: Vec<u8>, first_line: u64 },
    /// A Parquet batch starting at row `first_row`.
    Table { batch: RecordBatch, first_row: u64 },
}

/// Where blocks come from: a JSON Lines file read piece by piece, or a Parquet table.
enum Source {
    Lines { file: File, carry: Vec<u8>, next_line: u64, done: bool },
    Table { reader: TableReader, next_row: u64 },
}

impl Source {
    fn open(path: &Path) -> Result<Self> {
        let mut file = open_file(path)?;
        let mut magic = Vec::with_capacity(4);
        (&mut file).take(4).read_to_end(&mut magic).map_err(|error| Error::io(path, "read", error))?;
        if magic == b"PAR1" {
            return Ok(Source::Table { reader: TableReader::open(path)?, next_row: 0 });
        }
        let carry = magic.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&magic).to_vec();
        Ok(Source::Lines { file, carry, next_line: 1, done: false })
    }

    fn next_block(&mut self, path: &Path) -> Result<Option<Block>> {
        match self {
            Source::Table { reader, next_row } => {
                let Some(batch) = reader.next().transpose()? else {
                    return Ok(None);
                };
                let first_row = *next_row;
                *next_row += batch.num_rows() as u64;
                Ok(Some(Block::Table { batch, first_row }))
            }
            Source::Lines { file, carry, next_line, done } => {
                let mut data = Vec::with_capacity(BLOCK_BYTES + (1 << 16));
                data.append(carry);
                while !*done {
                    let wanted = BLOCK_BYTES.saturating_sub(data.len()).max(1 << 16) as u64;
                    let read =
                        file.take(wanted).read_to_end(&mut data).map_err(|error| Error::io(path, "read", error))?;
                    *done = (read as u64) < wanted;
                    if data.len() >= BLOCK_BYTES && memrchr(b'\n', &data).is_some() {
                        break;
                    }
                }
                if !*done {
                    let end = memrchr(b'\n', &data).expect("checked above");
                    *carry = data.split_off(end + 1);
                }
                if data.is_empty() {
                    return Ok(None);
                }
                let first_line = *next_line;
                *next_line += memchr_iter(b'\n', &data).count() as u64;
                Ok(Some(Block::Lines { data, first_line }))
            }
        }
    }
}

/// The non-blank lines of a block with their line numbers.
fn lines(data: &[u8], first_line: u64) -> impl Iterator<Item = (u64, &[u8])> {
    let unterminated = (data.last() != Some(&b'\n')).then_some(data.len());
    let mut start = 0;
    memchr_iter(b'\n', data)
        .chain(unterminated)
        .zip(first_line..)
        .map(move |(end, number)| {
            let line = &data[start..end];
            start = end + 1;
            (number, line)
        })
        .filter(|(_, line)| !line.trim_ascii().is_empty())
}

/// Parses one JSON Lines record.
fn parse_line(input: &InputFile, line: u64, bytes: &[u8]) -> Result<Map<String, Value>> {
    let path = || input.path.clone();
    let text = std::str::from_utf8(bytes).map_err(|error| Error::InvalidUtf8 {
        location: Location::LineColumn { path: path(), line, column: error.valid_up_to() as u64 + 1 },
    })?;
    match serde_json::from_str(text.strip_suffix('\r').unwrap_or(text)) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => {
            Err(Error::NotAnObject { location: Location::Line { path: path(), line }, found: json_type(&other) })
        }
        Err(error) => {
            let message = error.to_string();
            let message = match message.rfind(" at line ") {
                Some(end) => message[..end].to_string(),
                None => message,
            };
            Err(Error::Json {
                location: Location::LineColumn { path: path(), line, column: error.column() as u64 },
                message,
            })
        }
    }
}

/// The type a Parquet column is cast to before its cells become JSON: one integer, float,
/// string and list type each, so [`cell`] handles few cases.
fn json_friendly(data_type: &DataType) -> DataType {
    use DataType::*;
    let item = |field: &Field| Field::new("item", json_friendly(field.data_type()), true);
    match data_type {
        Int8 | Int16 | Int32 | Int64 => Int64,
        UInt8 | UInt16 | UInt32 | UInt64 => UInt64,
        Float16 | Float32 | Float64 => Float64,
        LargeUtf8 | Utf8View => Utf8,
        List(field) | LargeList(field) | FixedSizeList(field, _) => List(item(field).into()),
        Struct(fields) => Struct(
            fields.iter().map(|field| Field::new(field.name(), json_friendly(field.data_type()), true)).collect(),
        ),
        other => other.clone(),
    }
}

/// One cell of a column (cast by [`json_friendly`]) as JSON.
fn cell(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Boolean => array.as_boolean().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float64 => match array.as_primitive::<Float64Type>().value(row) {
            value if value.is_finite() => value.into(),
            // JSON has no NaN or infinity: as text, for the field's check to reject by name.
            value => Value::String(value.to_string()),
        },
        DataType::Utf8 => array.as_string::<i32>().value(row).into(),
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let offsets = list.value_offsets();
            let values = list.values();
            (offsets[row] as usize..offsets[row + 1] as usize).map(|index| cell(values.as_ref(), index)).collect()
        }
        DataType::Struct(_) => {
            let fields = array.as_struct();
            let pairs = fields.column_names().into_iter().zip(fields.columns());
            Value::Object(pairs.map(|(name, column)| (name.to_string(), cell(column.as_ref(), row))).collect())
        }
        _ => ArrayFormatter::try_new(array, &FormatOptions::default())
            .map(|format| Value::String(format.value(row).to_string()))
            .unwrap_or(Value::Null),
    }
}

/// The rows of a Parquet batch as JSON objects.
fn table_rows(batch: &RecordBatch) -> Vec<Map<String, Value>> {
    let columns: Vec<_> = batch
        .columns()
        .iter()
        .map(|column| {
            let target = json_friendly(column.data_type());
            match can_cast_types(column.data_type(), &target) {
                true => cast(column, &target).unwrap_or_else(|_| column.clone()),
                false => column.clone(),
            }
        })
        .collect();
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|row| {
            schema
                .fields()
                .iter()
                .zip(&columns)
                .map(|(field, column)| (field.name().clone(), cell(column.as_ref(), row)))
                .collect()
        })
        .collect()
}

/// The keys of the block's first record that have a value, or `None` if it has no record.
fn first_keys(input: &InputFile, block: &Block) -> Result<Option<Vec<String>>> {
    let fields = match block {
        Block::Lines { data, first_line } => {
            let Some((line, bytes)) = lines(data, *first_line).next() else {
                return Ok(None);
            };
            if bytes.trim_ascii_start().starts_with(b"[") {
                return Err(Error::NotJsonLines { path: input.path.clone() });
            }
            parse_line(input, line, bytes)?
        }
        Block::Table { batch, .. } => match table_rows(&batch.slice(0, batch.num_rows().min(1))).pop() {
            Some(fields) => fields,
            None => return Ok(None),
        },
    };
    Ok(Some(fields.into_iter().filter(|(_, value)| !value.is_null()).map(|(key, _)| key).collect()))
}

/// Converts a block to validated records of `R`, as one batch.
fn convert<R: FromRow>(input: &InputFile, format: Format, block: Block) -> Result<RecordBatch> {
    let record = |fields, position| {
        let mut row = Row::new(fields, input, position);
        let record = R::from_row(format, &mut row)?;
        record.validate(|| row.location())?;
        Ok(record)
    };
    let records: Vec<R> = match block {
        Block::Lines { data, first_line } => lines(&data, first_line)
            .map(|(line, bytes)| record(parse_line(input, line, bytes)?, Position::Line(line)))
            .collect::<Result<_>>()?,
        Block::Table { batch, first_row } => table_rows(&batch)
            .into_iter()
            .zip(first_row..)
            .map(|(fields, row)| record(fields, Position::Row(row)))
            .collect::<Result<_>>()?,
    };
    R::to_batch(&records)
}

fn import_as<R: FromRow>(input: &Path, output: &Path, requested: Format) -> Result<ImportSummary> {
    let file = InputFile {
        path: input.to_path_buf(),
        stem: input.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    let mut source = Source::open(input)?;
    let mut pending = Vec::new();
    let keys = loop {
        let Some(block) = source.next_block(input)? else {
            return Err(Error::NoRecords { path: input.to_path_buf() });
        };
        let keys = first_keys(&file, &block)?;
        pending.push(block);
        if let Some(keys) = keys {
            break keys;
        }
    };
    let format = resolve_format::<R>(requested, &keys, &file)?;
    let _span = tracing::info_span!("import", input = %input.display(), kind = %R::KIND, %format).entered();
    let unused = unused_keys::<R>(format, &keys);
    if !unused.is_empty() {
        tracing::warn!(?unused, "the {format} layout ignores these keys of the first record");
    }
    let mut writer = TableWriter::create(output, R::schema())?;
    let encoder = writer.encoder();
    let round = 2 * rayon::current_num_threads();
    let fill = |source: &mut Source, blocks: &mut Vec<Block>| -> Result<()> {
        while blocks.len() < round {
            match source.next_block(input)? {
                Some(block) => blocks.push(block),
                None => break,
            }
        }
        Ok(())
    };
    fill(&mut source, &mut pending)?;
    let mut converted: Vec<EncodedRowGroup> = Vec::new();
    let mut ids = RepeatedIds::default();
    // Each round converts its blocks in parallel while one thread appends the previous round's
    // row groups and reads the next round's blocks.
    while !pending.is_empty() {
        let blocks = std::mem::take(&mut pending);
        let ((written, read), groups) = rayon::join(
            || {
                let written = converted.drain(..).try_for_each(|group| writer.write_row_group(group));
                (written, fill(&mut source, &mut pending))
            },
            || {
                let groups: Vec<Result<(EncodedRowGroup, BlockIds)>> = blocks
                    .into_par_iter()
                    .map(|block| {
                        let batch = convert::<R>(&file, format, block)?;
                        Ok((encoder.encode(std::slice::from_ref(&batch))?, BlockIds::of(&batch)))
                    })
                    .collect();
                groups.into_iter().collect::<Result<Vec<_>>>()
            },
        );
        written?;
        let groups = groups?;
        read?;
        converted = Vec::with_capacity(groups.len());
        for (group, block_ids) in groups {
            ids.add(&block_ids);
            converted.push(group);
        }
    }
    for group in converted {
        writer.write_row_group(group)?;
    }
    let rows = writer.finish()?;
    tracing::info!(rows, "imported");
    Ok(ImportSummary { rows, format, repeated_ids: ids.repeated, first_repeated_id: ids.first_repeated })
}

/// A converted block's `id` column, and its values hashed (64 bits: what the import keeps of
/// every id is a few bytes).
struct BlockIds {
    column: Option<ArrayRef>,
    hashes: Vec<u64>,
}

impl BlockIds {
    fn of(batch: &RecordBatch) -> Self {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let column = batch.column_by_name("id").cloned();
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        let hashes = column.as_ref().map_or_else(Vec::new, |ids| {
            let ids = ids.as_string::<i32>();
            (0..ids.len()).map(|row| hasher.hash_one(ids.value(row))).collect()
        });
        BlockIds { column, hashes }
    }
}

/// Counts rows whose id an earlier row has, and keeps the first such id.
#[derive(Default)]
struct RepeatedIds {
    seen: std::collections::HashSet<u64>,
    repeated: u64,
    first_repeated: Option<String>,
}

impl RepeatedIds {
    fn add(&mut self, block: &BlockIds) {
        for (row, hash) in block.hashes.iter().enumerate() {
            if !self.seen.insert(*hash) {
                self.repeated += 1;
                if self.first_repeated.is_none() {
                    let ids = block.column.as_ref().expect("hashes come from the id column");
                    self.first_repeated = Some(ids.as_string::<i32>().value(row).to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_skip_blanks_and_keep_numbers() {
        let data = b"{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\":3}";
        let found: Vec<(u64, &[u8])> = lines(data, 10).collect();
        let expected: Vec<(u64, &[u8])> = vec![(10, b"{\"a\":1}"), (13, b"{\"b\":2}\r"), (14, b"{\"c\":3}")];
        assert_eq!(found, expected);
    }
}
