//! Conversions between record fields and Arrow columns, shared by every record kind.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, PrimitiveArray, RecordBatch, StringArray, StringBuilder};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Field};

use crate::error::Result;
use crate::records::Record;
use crate::schema::check_batch;

pub(crate) fn strings<'a>(values: impl Iterator<Item = &'a str> + Clone) -> ArrayRef {
    let bytes = values.clone().map(str::len).sum();
    let mut builder = StringBuilder::with_capacity(values.size_hint().0, bytes);
    values.for_each(|value| builder.append_value(value));
    Arc::new(builder.finish())
}

pub(crate) fn optional_strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
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

    pub(crate) fn primitives<T: ArrowPrimitiveType>(&self, name: &str) -> &'a PrimitiveArray<T> {
        self.column(name).as_primitive()
    }

    pub(crate) fn optional_primitives<T: ArrowPrimitiveType>(&self, name: &str) -> Option<&'a PrimitiveArray<T>> {
        self.batch.column_by_name(name).map(|column| column.as_primitive())
    }

    pub(crate) fn lists(&self, name: &str) -> &'a ListArray {
        self.column(name).as_list()
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
