//! Scoring a Parquet table (`rlhf-reward score`): every row's `prompt` + `response` gets a
//! `reward: f32` column; all other columns and the schema metadata are kept.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float32Array};
use arrow::datatypes::{DataType, Field};
use rlhf_data::conversation::batch_prompt_messages;
use rlhf_data::{append_column, PromptText, TableReader};

use crate::model::RewardModel;
use crate::{Error, Result};

/// Name of the column [`score_table`] adds.
pub const REWARD_COLUMN: &str = "reward";

/// The `(prompt, response)` texts of every row of a table with `prompt` and `response` utf8
/// columns, with the prompt's conversation from a `prompt_messages` column when the table has
/// one (other columns are ignored). Missing columns, nulls and empty texts are errors naming the
/// file and the row.
pub fn read_prompt_responses(path: &Path) -> Result<Vec<(PromptText, String)>> {
    let reader = TableReader::open(path)?;
    for column in ["prompt", "response"] {
        match reader.schema().field_with_name(column) {
            Ok(field) if field.data_type() == &DataType::Utf8 => {}
            Ok(field) => {
                return Err(Error::file(
                    path,
                    format!("column {column:?} has type {}, expected utf8", field.data_type()),
                ))
            }
            Err(_) => return Err(Error::file(path, format!("missing column {column:?}, expected utf8"))),
        }
    }
    let mut texts = Vec::with_capacity(reader.num_rows() as usize);
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| batch.column_by_name(name).expect("checked above").as_string::<i32>().clone();
        let (prompts, responses) = (column("prompt"), column("response"));
        let mut conversations = batch_prompt_messages(path, &batch)?.into_iter();
        for i in 0..batch.num_rows() {
            let row = texts.len();
            for (name, array) in [("prompt", &prompts), ("response", &responses)] {
                if array.is_null(i) || array.value(i).trim().is_empty() {
                    return Err(Error::file(path, format!("row {row}: {name:?} is empty")));
                }
            }
            let prompt = PromptText { text: prompts.value(i).to_string(), messages: conversations.next().flatten() };
            texts.push((prompt, responses.value(i).to_string()));
        }
    }
    Ok(texts)
}

/// Writes `output`: `input`'s rows and columns plus `reward: f32` from `model`. Returns the rows.
pub fn score_table(model: &RewardModel, input: &Path, output: &Path) -> Result<u64> {
    let texts = read_prompt_responses(input)?;
    let rewards = model.score(&texts)?;
    let field = Field::new(REWARD_COLUMN, DataType::Float32, false);
    Ok(append_column(input, output, field, Arc::new(Float32Array::from(rewards)))?)
}
