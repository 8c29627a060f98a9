//! `generate`: K samples per prompt from a tiny random policy, reproducible, readable as a
//! demonstrations table with its `sample` column.

mod common;

use anyhow::Result;
use arrow::array::AsArray;
use arrow::datatypes::UInt32Type;
use rlhf_data::{read_records, write_records, Demonstration, Prompt, TableReader};
use rlhf_eval::generate::{generate_file, SampleConfig};
use rlhf_model::{DType, DeviceArgs, DeviceChoice};

#[test]
fn samples_k_responses_per_prompt_reproducibly() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = tmp.path().join("policy");
    common::tiny_policy(&model);
    let prompts: Vec<Prompt> = (0..5)
        .map(|i| Prompt { id: format!("p{i}"), prompt: format!("User: Tell me about the cat {i}.\nAssistant:") })
        .collect();
    let prompts_path = tmp.path().join("prompts.parquet");
    write_records(&prompts_path, &prompts)?;
    let config = SampleConfig { samples_per_prompt: 3, max_new_tokens: 8, batch_size: 4, ..SampleConfig::default() };
    let placement = DeviceArgs { device: DeviceChoice::Cpu, dtype: DType::F32 }.resolve()?;
    let (a, b) = (tmp.path().join("a.parquet"), tmp.path().join("b.parquet"));
    let summary = generate_file(&model, &prompts_path, &a, &config, 0, placement)?;
    generate_file(&model, &prompts_path, &b, &config, 0, placement)?;
    assert_eq!(summary.prompts, 5);
    assert_eq!(summary.rows as usize + summary.empty, 15);

    let rows: Vec<Demonstration> = read_records(&a)?;
    assert_eq!(rows, read_records::<Demonstration>(&b)?, "the same seed gives the same samples");
    let batch = TableReader::open(&a)?.next().unwrap()?;
    let samples = batch.column_by_name("sample").unwrap().as_primitive::<UInt32Type>().values().to_vec();
    for (row, k) in rows.iter().zip(&samples) {
        let prompt = prompts.iter().find(|p| p.id == row.id).expect("ids are prompt ids");
        assert_eq!(row.prompt, prompt.prompt);
        assert!(*k < 3 && !row.response.trim().is_empty());
    }
    Ok(())
}
