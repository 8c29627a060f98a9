//! Parquet tables on disk. Writing is zstd-compressed, streamed in record batches and atomic: rows
//! go to a temporary file next to the destination, which is renamed into place only when complete
//! and removed on any error, so a destination either holds a whole table or is untouched.
//! Reading streams batches and checks each against the record's schema; columns the record does
//! not know are kept in the batches handed back, never dropped.
//!
//! A table is one Parquet file or a directory of part files read in order as one table (the layout
//! of `AppendTable`, see [`table_parts`]); every reader here takes either.

use std::fs::{self, File};
use std::io::BufWriter;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowLeafColumn, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

use crate::atomic::PendingFile;
use crate::error::{Error, Location, Result};
use crate::records::{
    Comparison, Demonstration, Feedback, Kind, Metric, Prompt, Ranking, Record, Revision, Rollout, Verdict,
};
use crate::schema::{check_batch, check_columns, schema_tag, type_name};

/// Rows per record batch, written and read.
pub const BATCH_ROWS: usize = 8192;

/// zstd level for every table: fast to write, still several times smaller than the text.
const ZSTD_LEVEL: i32 = 1;

/// Batches written one by one are gathered into row groups of about this many bytes (in memory,
/// before encoding), which bounds the writer's memory.
const ROW_GROUP_BYTES: usize = 32 << 20;

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid zstd level")))
        .set_dictionary_enabled(false)
        .build()
}

/// Opens `path` for reading, with errors that say a directory or missing file is the problem.
pub(crate) fn open_file(path: &Path) -> Result<File> {
    let metadata = fs::metadata(path).map_err(|error| Error::io(path, "open", error))?;
    if metadata.is_dir() {
        return Err(Error::IsDirectory { path: path.to_path_buf() });
    }
    File::open(path).map_err(|error| Error::io(path, "open", error))
}

/// The part files of a table directory, in order: its `*.parquet` files except hidden ones (names
/// starting with `.` or `_`, skipped as pyarrow and Spark skip them; temporary files are hidden),
/// ordered by name with a number before `.parquet` compared as a number (`part-9`, `part-10`).
pub(crate) fn table_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    fn order(name: &str) -> (&str, u128, &str) {
        let stem = name.strip_suffix(".parquet").unwrap_or(name);
        let prefix = stem.trim_end_matches(|c: char| c.is_ascii_digit());
        (prefix, stem[prefix.len()..].parse().unwrap_or(0), name)
    }
    let listed = |error| Error::io(dir, "list", error);
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(listed)? {
        if let Ok(name) = entry.map_err(listed)?.file_name().into_string() {
            if name.ends_with(".parquet") && !name.starts_with(['.', '_']) {
                names.push(name);
            }
        }
    }
    names.sort_by(|a, b| order(a).cmp(&order(b)));
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// `(name: Type, …)`, for messages.
fn column_list(schema: &Schema) -> String {
    let columns: Vec<String> =
        schema.fields().iter().map(|field| format!("{}: {}", field.name(), type_name(field.data_type()))).collect();
    format!("({})", columns.join(", "))
}

/// Encodes and compresses batches into row groups for one [`TableWriter`]. It is cheap to clone
/// and usable from any thread, so row groups can be encoded in parallel and then appended in
/// order with [`TableWriter::write_row_group`].
#[derive(Clone)]
pub struct RowGroupEncoder {
    path: Arc<Path>,
    schema: SchemaRef,
    factory: Arc<ArrowRowGroupWriterFactory>,
}

/// A compressed row group, ready to append (see [`RowGroupEncoder`]).
pub struct EncodedRowGroup {
    chunks: Vec<ArrowColumnChunk>,
    rows: u64,
}

impl RowGroupEncoder {
    fn check(&self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(Error::write_parquet(
                &self.path,
                format!("a batch has columns {}, expected {}", column_list(&batch.schema()), column_list(&self.schema)),
            ));
        }
        Ok(())
    }

    /// Encodes `batches` (each with exactly the table's schema) as one row group, compressing
    /// its columns in parallel.
    pub fn encode(&self, batches: &[RecordBatch]) -> Result<EncodedRowGroup> {
        let failed = |error: ParquetError| Error::write_parquet(&self.path, error);
        let writers = self.factory.create_column_writers(0).map_err(failed)?;
        let mut leaves: Vec<Vec<ArrowLeafColumn>> = writers.iter().map(|_| Vec::new()).collect();
        for batch in batches {
            self.check(batch)?;
            let mut slots = leaves.iter_mut();
            for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
                for leaf in compute_leaves(field, column).map_err(failed)? {
                    slots.next().expect("one writer per leaf column").push(leaf);
                }
            }
        }
        let chunks = writers
            .into_par_iter()
            .zip(leaves)
            .map(|(mut writer, leaves)| {
                leaves.iter().try_for_each(|leaf| writer.write(leaf))?;
                writer.close()
            })
            .collect::<Result<Vec<_>, ParquetError>>()
            .map_err(failed)?;
        let rows = batches.iter().map(|batch| batch.num_rows() as u64).sum();
        Ok(EncodedRowGroup { chunks, rows })
    }
}

/// Writes record batches of one schema to a Parquet file, atomically (see the module docs).
/// Batches are gathered into row groups of about 32 MiB (in memory, before encoding). Dropping
/// the writer without [`TableWriter::finish`] leaves nothing behind.
pub struct TableWriter {
    path: PathBuf,
    pending: PendingFile,
    encoder: RowGroupEncoder,
    file: SerializedFileWriter<BufWriter<File>>,
    buffered: Vec<RecordBatch>,
    buffered_bytes: usize,
    rows: u64,
}

impl TableWriter {
    pub fn create(path: impl AsRef<Path>, schema: SchemaRef) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            return Err(Error::IsDirectory { path: path.to_path_buf() });
        }
        let failed = |error: ParquetError| Error::write_parquet(path, error);
        let (pending, file) = PendingFile::create(path)?;
        let buffer = BufWriter::with_capacity(1 << 20, file);
        let (file, factory) = ArrowWriter::try_new(buffer, schema.clone(), Some(writer_properties()))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(failed)?;
        Ok(TableWriter {
            path: path.to_path_buf(),
            pending,
            encoder: RowGroupEncoder { path: path.into(), schema, factory: Arc::new(factory) },
            file,
            buffered: Vec::new(),
            buffered_bytes: 0,
            rows: 0,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.encoder.schema
    }

    /// An encoder for row groups of this table, to run on other threads.
    pub fn encoder(&self) -> RowGroupEncoder {
        self.encoder.clone()
    }

    /// Appends a batch, which must have exactly the writer's schema.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.encoder.check(batch)?;
        self.buffered_bytes += batch.get_array_memory_size();
        self.buffered.push(batch.clone());
        if self.buffered_bytes >= ROW_GROUP_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends a row group made by [`TableWriter::encoder`], after any batches written before.
    pub fn write_row_group(&mut self, group: EncodedRowGroup) -> Result<()> {
        self.flush()?;
        let failed = |error: ParquetError| Error::write_parquet(&self.path, error);
        let mut row_group = self.file.next_row_group().map_err(failed)?;
        for chunk in group.chunks {
            chunk.append_to_row_group(&mut row_group).map_err(failed)?;
        }
        row_group.close().map_err(failed)?;
        self.rows += group.rows;
        Ok(())
    }

    /// Encodes the buffered batches as one row group.
    fn flush(&mut self) -> Result<()> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let group = self.encoder.encode(&std::mem::take(&mut self.buffered))?;
        self.buffered_bytes = 0;
        self.write_row_group(group)
    }

    /// Completes the file, syncs it and renames it into place; returns the rows written.
    pub fn finish(mut self) -> Result<u64> {
        self.flush()?;
        let TableWriter { path, pending, file, rows, .. } = self;
        let file = file
            .into_inner()
            .map_err(|error| Error::write_parquet(&path, error))?
            .into_inner()
            .map_err(|error| Error::io(&path, "write", error.into_error()))?;
        file.sync_all().map_err(|error| Error::io(&path, "write", error))?;
        pending.rename_to(&path)?;
        tracing::debug!(path = %path.display(), rows, "wrote table");
        Ok(rows)
    }
}

/// Writes records of one kind, atomically, in batches of [`BATCH_ROWS`].
pub struct RecordWriter<R> {
    table: TableWriter,
    record: PhantomData<fn(&R)>,
}

impl<R: Record> RecordWriter<R> {
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        Ok(RecordWriter { table: TableWriter::create(path, R::schema())?, record: PhantomData })
    }

    pub fn write(&mut self, records: &[R]) -> Result<()> {
        for chunk in records.chunks(BATCH_ROWS) {
            self.table.write(&R::to_batch(chunk)?)?;
        }
        Ok(())
    }

    /// See [`TableWriter::finish`].
    pub fn finish(self) -> Result<u64> {
        self.table.finish()
    }
}

/// Writes `records` to `path` as one table; returns the rows written.
pub fn write_records<R: Record>(path: impl AsRef<Path>, records: &[R]) -> Result<u64> {
    let mut writer = RecordWriter::create(path)?;
    writer.write(records)?;
    writer.finish()
}

/// Reads any Parquet table as record batches, without checking its columns. A directory's parts
/// are read one after another; each must have the first part's columns.
pub struct TableReader {
    path: PathBuf,
    schema: SchemaRef,
    rows: u64,
    /// `Some(n)` for a directory of `n` parts.
    parts: Option<usize>,
    /// The parts not opened yet.
    unread: std::vec::IntoIter<PathBuf>,
    /// The part being read.
    current: Option<(PathBuf, ParquetRecordBatchReader)>,
}

/// Opens one Parquet file for reading.
fn open_part(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    ParquetRecordBatchReaderBuilder::try_new(open_file(path)?)
        .map_err(|error| Error::parquet(path, error))
        .map(|builder| builder.with_batch_size(BATCH_ROWS))
}

impl TableReader {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let metadata = fs::metadata(path).map_err(|error| Error::io(path, "open", error))?;
        let (parts, count) = if metadata.is_dir() {
            let parts = table_parts(path)?;
            if parts.is_empty() {
                return Err(Error::EmptyTable { path: path.to_path_buf() });
            }
            let count = parts.len();
            (parts, Some(count))
        } else {
            (vec![path.to_path_buf()], None)
        };
        let mut schema: Option<SchemaRef> = None;
        let mut rows = 0;
        for part in &parts {
            let builder = open_part(part)?;
            rows += builder.metadata().file_metadata().num_rows().max(0) as u64;
            match &schema {
                None => schema = Some(builder.schema().clone()),
                Some(first) if first.fields() != builder.schema().fields() => {
                    return Err(Error::PartColumns {
                        path: part.clone(),
                        found: column_list(builder.schema()),
                        expected: column_list(first),
                        first: parts[0].clone(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(TableReader {
            path: path.to_path_buf(),
            schema: schema.expect("a table has a part"),
            rows,
            parts: count,
            unread: parts.into_iter(),
            current: None,
        })
    }

    /// The table: a file or a directory of parts.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema, with every column the table has (a directory's: its first part's).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The row count recorded in the footers.
    pub fn num_rows(&self) -> u64 {
        self.rows
    }

    /// How many part files the table has, when it is a directory.
    pub fn parts(&self) -> Option<usize> {
        self.parts
    }
}

impl Iterator for TableReader {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((part, batches)) = &mut self.current {
                if let Some(batch) = batches.next() {
                    return Some(batch.map_err(|error| Error::parquet(part, error)));
                }
            }
            let part = self.unread.next()?;
            let batches =
                open_part(&part).and_then(|builder| builder.build().map_err(|error| Error::parquet(&part, error)));
            match batches {
                Ok(batches) => self.current = Some((part, batches)),
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

/// One batch of a table read as records of type `R`.
#[derive(Debug, Clone)]
pub struct RecordChunk<R> {
    /// The row of the table this chunk starts at.
    pub first_row: u64,
    pub records: Vec<R>,
    /// The same rows with every column of the table, extra columns included.
    pub batch: RecordBatch,
}

/// Reads a table as records of type `R`, checking the schema and each batch's nulls.
pub struct RecordReader<R> {
    table: TableReader,
    next_row: u64,
    record: PhantomData<fn() -> R>,
}

/// Errors if `schema` is tagged as `kind` at another version, or lacks a required column of
/// `kind`, or has one of the wrong type.
fn check_schema(path: &Path, schema: &Schema, kind: Kind) -> Result<()> {
    if let Some(tag) = schema_tag(schema) {
        if Kind::from_tag(tag) == Some(kind) && !kind.reads_tag(tag) {
            return Err(Error::SchemaVersion {
                path: path.to_path_buf(),
                found: tag.to_string(),
                expected: kind.schema_tag().to_string(),
            });
        }
    }
    check_columns(path, schema, &kind.schema())
}

impl<R: Record> RecordReader<R> {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let table = TableReader::open(path)?;
        check_schema(table.path(), table.schema(), R::KIND)?;
        Ok(RecordReader { table, next_row: 0, record: PhantomData })
    }

    pub fn path(&self) -> &Path {
        self.table.path()
    }

    /// The table's schema, with every column it has.
    pub fn schema(&self) -> &SchemaRef {
        self.table.schema()
    }

    pub fn num_rows(&self) -> u64 {
        self.table.num_rows()
    }

    fn chunk(&self, batch: RecordBatch) -> Result<RecordChunk<R>> {
        check_batch(self.path(), &batch, &R::schema(), self.next_row)?;
        Ok(RecordChunk { first_row: self.next_row, records: R::from_batch(&batch)?, batch })
    }
}

impl<R: Record> Iterator for RecordReader<R> {
    type Item = Result<RecordChunk<R>>;

    fn next(&mut self) -> Option<Self::Item> {
        let chunk = self.table.next()?.and_then(|batch| self.chunk(batch));
        if let Ok(chunk) = &chunk {
            self.next_row += chunk.batch.num_rows() as u64;
        }
        Some(chunk)
    }
}

/// A whole table in memory: typed records plus the original batches with every column.
#[derive(Debug, Clone)]
pub struct Table<R> {
    /// The table's schema, extra columns included.
    pub schema: SchemaRef,
    pub records: Vec<R>,
    pub batches: Vec<RecordBatch>,
}

impl<R: Record> Table<R> {
    /// A table of `records` with exactly `R`'s schema (one batch).
    pub fn from_records(records: Vec<R>) -> Result<Self> {
        Ok(Table { schema: R::schema(), batches: vec![R::to_batch(&records)?], records })
    }

    /// The table's columns that `R` does not have.
    pub fn extra_columns(&self) -> Vec<FieldRef> {
        let known = R::schema();
        self.schema.fields().iter().filter(|field| known.field_with_name(field.name()).is_err()).cloned().collect()
    }
}

/// Reads a whole table: records and the batches they came from.
pub fn read_table<R: Record>(path: impl AsRef<Path>) -> Result<Table<R>> {
    let reader = RecordReader::<R>::open(path)?;
    let schema = reader.schema().clone();
    let (mut records, mut batches) = (Vec::new(), Vec::new());
    for chunk in reader {
        let chunk = chunk?;
        records.extend(chunk.records);
        batches.push(chunk.batch);
    }
    Ok(Table { schema, records, batches })
}

/// Reads all records of a table.
pub fn read_records<R: Record>(path: impl AsRef<Path>) -> Result<Vec<R>> {
    Ok(read_table(path)?.records)
}

/// Writes the rows of `inputs`, tables of one kind, in order into `output` (atomically); returns the
/// row count. Only the kind's own columns are kept.
pub fn concat_tables(kind: Kind, inputs: &[impl AsRef<Path>], output: impl AsRef<Path>) -> Result<u64> {
    fn concat<R: Record>(inputs: &[impl AsRef<Path>], output: &Path) -> Result<u64> {
        let mut rows: Vec<R> = Vec::new();
        for input in inputs {
            rows.extend(read_records::<R>(input)?);
        }
        write_records(output, &rows)
    }
    let output = output.as_ref();
    match kind {
        Kind::Prompts => concat::<Prompt>(inputs, output),
        Kind::Demonstrations => concat::<Demonstration>(inputs, output),
        Kind::Comparisons => concat::<Comparison>(inputs, output),
        Kind::Rankings => concat::<Ranking>(inputs, output),
        Kind::Feedback => concat::<Feedback>(inputs, output),
        Kind::Rollouts => concat::<Rollout>(inputs, output),
        Kind::Metrics => concat::<Metric>(inputs, output),
        Kind::Revisions => concat::<Revision>(inputs, output),
        Kind::Verdicts => concat::<Verdict>(inputs, output),
    }
}

fn validate_records<R: Record + serde::Serialize + serde::de::DeserializeOwned>(path: &Path) -> Result<u64> {
    if is_json_lines(path)? {
        let records = crate::journal::Journal::<R>::read(path)?;
        for (index, record) in records.iter().enumerate() {
            record.validate(|| Location::Line { path: path.to_path_buf(), line: index as u64 + 1 })?;
        }
        return Ok(records.len() as u64);
    }
    let reader = RecordReader::<R>::open(path)?;
    let mut rows = 0;
    for chunk in reader {
        let chunk = chunk?;
        for (offset, record) in chunk.records.iter().enumerate() {
            record.validate(|| Location::Row { path: path.to_path_buf(), row: chunk.first_row + offset as u64 })?;
        }
        rows += chunk.records.len() as u64;
    }
    Ok(rows)
}

/// Whether `path` is a JSON Lines journal (a file starting with `{`) rather than Parquet.
fn is_json_lines(path: &Path) -> Result<bool> {
    use std::io::Read;
    if path.is_dir() {
        return Ok(false);
    }
    let mut first = [0u8; 1];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
    let read = file.read(&mut first).map_err(|e| Error::io(path, "read", e))?;
    Ok(read == 1 && first[0] == b'{')
}

/// Reads `path` as a `kind` table, checking its schema and running [`Record::validate`] on
/// every row; returns the row count. A JSON Lines journal of the kind's records (a judge's
/// cache of verdicts) is read and checked line by line.
pub fn validate_table(path: impl AsRef<Path>, kind: Kind) -> Result<u64> {
    let path = path.as_ref();
    match kind {
        Kind::Prompts => validate_records::<Prompt>(path),
        Kind::Demonstrations => validate_records::<Demonstration>(path),
        Kind::Comparisons => validate_records::<Comparison>(path),
        Kind::Rankings => validate_records::<Ranking>(path),
        Kind::Feedback => validate_records::<Feedback>(path),
        Kind::Rollouts => validate_records::<Rollout>(path),
        Kind::Metrics => validate_records::<Metric>(path),
        Kind::Revisions => validate_records::<Revision>(path),
        Kind::Verdicts => validate_records::<Verdict>(path),
    }
}

/// Writes `output` as every column and row of `input` plus one new column `field` holding
/// `values` (one per row, in order). The schema metadata of `input` is kept. `output` may be
/// `input`: it is replaced only once the new table is complete.
pub fn append_column(input: impl AsRef<Path>, output: impl AsRef<Path>, field: Field, values: ArrayRef) -> Result<u64> {
    let (input, output) = (input.as_ref(), output.as_ref());
    let reader = TableReader::open(input)?;
    if reader.schema().field_with_name(field.name()).is_ok() {
        return Err(Error::ColumnExists { path: input.to_path_buf(), column: field.name().clone() });
    }
    if values.len() as u64 != reader.num_rows() {
        return Err(Error::ColumnLength {
            path: input.to_path_buf(),
            column: field.name().clone(),
            rows: reader.num_rows(),
            values: values.len() as u64,
        });
    }
    if values.data_type() != field.data_type() {
        return Err(Error::ColumnType {
            path: output.to_path_buf(),
            column: field.name().clone(),
            found: type_name(values.data_type()),
            expected: type_name(field.data_type()),
        });
    }
    let mut fields: Vec<FieldRef> = reader.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(field));
    let schema = Arc::new(Schema::new(fields).with_metadata(reader.schema().metadata().clone()));
    let mut writer = TableWriter::create(output, schema.clone())?;
    let mut offset = 0;
    for batch in reader {
        let batch = batch?;
        let mut columns = batch.columns().to_vec();
        columns.push(values.slice(offset, batch.num_rows()));
        offset += batch.num_rows();
        let batch =
            RecordBatch::try_new(schema.clone(), columns).map_err(|error| Error::write_parquet(output, error))?;
        writer.write(&batch)?;
    }
    writer.finish()
}
