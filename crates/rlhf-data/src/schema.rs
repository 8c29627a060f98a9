//! Arrow schema helpers: field constructors, the `rlhf.schema` version tag, a readable rendering
//! (used by snapshots and `rlhf-data inspect`), and the checks every reader runs: required column
//! present, column type as documented, no nulls in a required column.
//!
//! Types are compared structurally: list element field names and nullability may differ (pyarrow
//! calls the element `element` and marks it nullable), but a null element in a required list is
//! still an error.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::records::Kind;

/// Schema metadata key holding the table's kind and version, e.g. `comparisons/v1`.
pub const SCHEMA_KEY: &str = "rlhf.schema";

pub(crate) fn required(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, false)
}

pub(crate) fn optional(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, true)
}

/// A list whose elements are never null.
pub(crate) fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, false)))
}

/// A schema for `kind`, tagged with its version in the metadata.
pub(crate) fn tagged(kind: Kind, fields: Vec<Field>) -> SchemaRef {
    let metadata = HashMap::from([(SCHEMA_KEY.to_string(), kind.schema_tag().to_string())]);
    Arc::new(Schema::new(fields).with_metadata(metadata))
}

/// The schema tag (`kind/vN`) stored in a schema's metadata, if any.
pub fn schema_tag(schema: &Schema) -> Option<&str> {
    schema.metadata().get(SCHEMA_KEY).map(String::as_str)
}

/// A short type name: `Utf8`, `Float32`, `List<Int32>`.
pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::List(item) => format!("List<{}>", type_name(item.data_type())),
        DataType::LargeList(item) => format!("LargeList<{}>", type_name(item.data_type())),
        DataType::Struct(fields) => {
            let fields: Vec<String> =
                fields.iter().map(|field| format!("{}: {}", field.name(), type_name(field.data_type()))).collect();
            format!("Struct<{}>", fields.join(", "))
        }
        other => other.to_string(),
    }
}

/// One line per field (`name: Type required|nullable`), then the metadata sorted by key.
/// Parquet's own `ARROW:*` keys are left out.
pub fn render_schema(schema: &Schema) -> String {
    let mut text = String::new();
    for field in schema.fields() {
        let null = if field.is_nullable() { "nullable" } else { "required" };
        text += &format!("{}: {} {null}\n", field.name(), type_name(field.data_type()));
    }
    let mut metadata: Vec<_> = schema.metadata().iter().filter(|(key, _)| !key.starts_with("ARROW:")).collect();
    metadata.sort();
    for (key, value) in metadata {
        text += &format!("metadata {key} = {value}\n");
    }
    text
}

fn same_type(found: &DataType, expected: &DataType) -> bool {
    match (found, expected) {
        (DataType::List(found), DataType::List(expected)) => same_type(found.data_type(), expected.data_type()),
        (DataType::Struct(found), DataType::Struct(expected)) => {
            found.len() == expected.len()
                && found.iter().zip(expected.iter()).all(|(found, expected)| {
                    found.name() == expected.name() && same_type(found.data_type(), expected.data_type())
                })
        }
        _ => found == expected,
    }
}

/// Checks that `found` has every required column of `expected`, and that every column of
/// `expected` it has is of the expected type. Optional columns may be absent; extra columns are
/// allowed. `path` names the source in errors.
pub(crate) fn check_columns(path: &Path, found: &Schema, expected: &Schema) -> Result<()> {
    for field in expected.fields() {
        match found.field_with_name(field.name()) {
            Err(_) if field.is_nullable() => {}
            Err(_) => {
                return Err(Error::MissingColumn {
                    path: path.to_path_buf(),
                    column: field.name().clone(),
                    expected: type_name(field.data_type()),
                })
            }
            Ok(actual) if !same_type(actual.data_type(), field.data_type()) => {
                return Err(Error::ColumnType {
                    path: path.to_path_buf(),
                    column: field.name().clone(),
                    found: type_name(actual.data_type()),
                    expected: type_name(field.data_type()),
                })
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// The first row holding a null, or a list with a null element.
fn first_null(array: &dyn Array) -> Option<usize> {
    if array.null_count() > 0 {
        return (0..array.len()).find(|&row| array.is_null(row));
    }
    let list = array.as_list_opt::<i32>()?;
    let values = list.values();
    if values.null_count() == 0 {
        return None;
    }
    let offsets = list.value_offsets();
    (0..list.len()).find(|&row| (offsets[row] as usize..offsets[row + 1] as usize).any(|index| values.is_null(index)))
}

/// Runs [`check_columns`] on the batch, then checks that no required column holds a null.
/// `first_row` is the batch's offset in its file, so errors name the file's row.
pub(crate) fn check_batch(path: &Path, batch: &RecordBatch, expected: &Schema, first_row: u64) -> Result<()> {
    check_columns(path, &batch.schema(), expected)?;
    for field in expected.fields().iter().filter(|field| !field.is_nullable()) {
        let column = batch.column_by_name(field.name()).expect("required columns were checked above");
        if let Some(row) = first_null(column.as_ref()) {
            return Err(Error::NullValue {
                path: path.to_path_buf(),
                column: field.name().clone(),
                row: first_row + row as u64,
                expected: type_name(field.data_type()),
            });
        }
    }
    Ok(())
}
