//! Conversions between record fields and Arrow columns, shared by every record kind.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, PrimitiveArray, RecordBatch, StringArray, StringBuilder,
    StructArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{ArrowPrimitiveType, DataType, Field, Fields};

use crate::conversation::ChatMessage;
use crate::error::Result;
use crate::records::Record;
use crate::schema::check_batch;

/// The fields of one conversation turn: `role`, `content`.
fn turn_fields() -> Fields {
    Fields::from(vec![Field::new("role", DataType::Utf8, false), Field::new("content", DataType::Utf8, false)])
}

/// `List<Struct<role: Utf8, content: Utf8>>`: a conversation column.
pub(crate) fn conversation_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Struct(turn_fields()), false)))
}

/// A conversation column; `None` rows are null.
pub(crate) fn optional_conversations<'a>(rows: impl Iterator<Item = Option<&'a [ChatMessage]>> + Clone) -> ArrayRef {
    let turns = rows.clone().flatten().flatten();
    let roles = strings(turns.clone().map(|turn| turn.role.as_str()));
    let contents = strings(turns.map(|turn| turn.content.as_str()));
    let values = Arc::new(StructArray::new(turn_fields(), vec![roles, contents], None));
    let field = Arc::new(Field::new("item", DataType::Struct(turn_fields()), false));
    let lengths = rows.clone().map(|row| row.map_or(0, <[ChatMessage]>::len));
    let nulls = NullBuffer::from(rows.map(|row| row.is_some()).collect::<Vec<bool>>());
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    Arc::new(ListArray::new(field, OffsetBuffer::from_lengths(lengths), values, nulls))
}

/// Row `row` of a conversation column, `None` when the column is absent or the row null. A null
/// role or content reads as empty (validation names it).
pub(crate) fn optional_conversation(list: Option<&ListArray>, row: usize) -> Option<Vec<ChatMessage>> {
    let list = list.filter(|list| list.is_valid(row))?;
    let turns = list.values().as_struct();
    let (roles, contents) = (turns.column(0).as_string::<i32>(), turns.column(1).as_string::<i32>());
    let text = |column: &StringArray, index: usize| {
        if column.is_valid(index) {
            column.value(index).to_string()
        } else {
            String::new()
        }
    };
    Some(list_range(list, row).map(|index| ChatMessage::new(text(roles, index), text(contents, index))).collect())
}

pub(crate) fn strings<'a>(values: impl Iterator<Item = &'a str> + Clone) -> ArrayRef {
    let bytes = values.clone().map(str::len).sum();
    let mut builder = StringBuilder::with_capacity(values.size_hint().0, bytes);
    values.for_each(|value| builder.append_value(value));
    Arc::new(builder.finish())
}

pub(crate) fn optional_strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

pub(crate) fn booleans(values: impl Iterator<Item = bool>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<BooleanArray>())
}

pub(crate) fn primitives<T: ArrowPrimitiveType>(values: impl Iterator<Item = T::Native>) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::from_iter_values(values))
}

pub(crate) fn optional_primitives<T: ArrowPrimitiveType>(values: impl Iterator<Item = Option<T::Native>>) -> ArrayRef {
    Arc::new(values.collect::<PrimitiveArray<T>>())
}

fn list(item: DataType, lengths: impl Iterator<Item = usize>, values: ArrayRef) -> ArrayRef {
    let field = Arc::new(Field::new("item", item, false));
    Arc::new(ListArray::new(field, OffsetBuffer::from_lengths(lengths), values, None))
}

pub(crate) fn string_lists<'a>(lists: impl Iterator<Item = &'a [String]> + Clone) -> ArrayRef {
    let values = strings(lists.clone().flatten().map(String::as_str));
    list(DataType::Utf8, lists.map(<[String]>::len), values)
}

pub(crate) fn primitive_lists<'a, T: ArrowPrimitiveType>(
    lists: impl Iterator<Item = &'a [T::Native]> + Clone,
) -> ArrayRef {
    let values: Vec<T::Native> = lists.clone().flatten().copied().collect();
    let values = primitives::<T>(values.into_iter());
    list(T::DATA_TYPE, lists.map(<[T::Native]>::len), values)
}

/// Typed access to the columns of a batch that passed [`check_batch`].
pub(crate) struct Columns<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    /// Checks `batch` against `R`'s schema; errors name it "record batch".
    pub(crate) fn checked<R: Record>(batch: &'a RecordBatch) -> Result<Self> {
        check_batch(Path::new("record batch"), batch, &R::schema(), 0)?;
        Ok(Columns { batch })
    }

    fn column(&self, name: &str) -> &'a ArrayRef {
        self.batch.column_by_name(name).expect("required columns are checked before conversion")
    }

    pub(crate) fn strings(&self, name: &str) -> &'a StringArray {
        self.column(name).as_string()
    }

    pub(crate) fn optional_strings(&self, name: &str) -> Option<&'a StringArray> {
        self.batch.column_by_name(name).map(|column| column.as_string())
    }

    pub(crate) fn booleans(&self, name: &str) -> &'a BooleanArray {
        self.column(name).as_boolean()
    }

    pub(crate) fn primitives<T: ArrowPrimitiveType>(&self, name: &str) -> &'a PrimitiveArray<T> {
        self.column(name).as_primitive()
    }

    pub(crate) fn optional_primitives<T: ArrowPrimitiveType>(&self, name: &str) -> Option<&'a PrimitiveArray<T>> {
        self.batch.column_by_name(name).map(|column| column.as_primitive())
    }

    pub(crate) fn lists(&self, name: &str) -> &'a ListArray {
        self.column(name).as_list()
    }

    pub(crate) fn optional_lists(&self, name: &str) -> Option<&'a ListArray> {
        self.batch.column_by_name(name).map(|column| column.as_list())
    }
}

fn list_range(list: &ListArray, row: usize) -> std::ops::Range<usize> {
    let offsets = list.value_offsets();
    offsets[row] as usize..offsets[row + 1] as usize
}

pub(crate) fn string_list(list: &ListArray, row: usize) -> Vec<String> {
    let values = list.values().as_string::<i32>();
    list_range(list, row).map(|index| values.value(index).to_string()).collect()
}

pub(crate) fn primitive_list<T: ArrowPrimitiveType>(list: &ListArray, row: usize) -> Vec<T::Native> {
    list.values().as_primitive::<T>().values()[list_range(list, row)].to_vec()
}

pub(crate) fn optional_string(array: Option<&StringArray>, row: usize) -> Option<String> {
    array.filter(|array| array.is_valid(row)).map(|array| array.value(row).to_string())
}

pub(crate) fn optional_value<T: ArrowPrimitiveType>(
    array: Option<&PrimitiveArray<T>>,
    row: usize,
) -> Option<T::Native> {
    array.filter(|array| array.is_valid(row)).map(|array| array.value(row))
}
