//! Bounded memory on generation's input path: `rlhf-eval generate`'s `generate_file` (read the
//! prompts table, tokenize, generate, write the samples) over 100,000 prompts and then over
//! 1,000,000 (`RLHF_BENCH_ROWS` changes the second), one new token each from a tiny random Llama,
//! so the table handling, not the model, is what runs. The process's peak resident memory after
//! the small table and after the large one must be about the same: memory is bounded by a chunk of
//! prompts, not by the table.
//!
//! `cargo bench -p rlhf-eval --bench stream` writes `$RLHF_BENCH_DIR/stream.json`.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use rlhf_bench::{cpu_seconds, peak_rss_bytes, write_report};
use rlhf_data::{Prompt, RecordWriter};
use rlhf_eval::generate::{generate_file, SampleConfig, SampleSettings};
use rlhf_model::{ChatMode, DType, DeviceArgs, DeviceChoice};
use rlhf_train::testing::{save_random_policy, task_tokenizer, tiny_llama};

const TOPICS: &[&str] = &["rivers", "gardens", "music", "bridges", "the moon", "bread", "trains", "owls"];

/// Writes `rows` prompts of about 15 words, streamed in chunks.
fn write_prompts(path: &Path, rows: usize) -> Result<()> {
    let mut writer = RecordWriter::<Prompt>::create(path)?;
    for start in (0..rows).step_by(rlhf_data::BATCH_ROWS) {
        let chunk: Vec<Prompt> = (start..(start + rlhf_data::BATCH_ROWS).min(rows))
            .map(|i| Prompt {
                id: format!("p{i}"),
                prompt: format!(
                    "Question {i}: could you tell me something kind about {} and {}?",
                    TOPICS[i % TOPICS.len()],
                    TOPICS[(i / TOPICS.len()) % TOPICS.len()]
                ),
                prompt_messages: None,
            })
            .collect();
        writer.write(&chunk)?;
    }
    writer.finish()?;
    Ok(())
}

/// One `generate_file` pass over `prompts`: (seconds, CPU seconds, peak RSS after it).
fn pass(policy: &Path, prompts: &Path, out: &Path) -> Result<(f64, f64, Option<u64>)> {
    let config = SampleConfig { samples_per_prompt: 1, batch_size: 512, ..SampleConfig::default() };
    let settings = SampleSettings { max_new_tokens: Some(1), chat_template: ChatMode::None, ..Default::default() };
    let placement = DeviceArgs { device: DeviceChoice::Cpu, dtype: DType::F32 }.resolve()?;
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let summary = generate_file(policy, prompts, out, config, &settings, 0, placement)?;
    let seconds = started.elapsed().as_secs_f64();
    println!("{}: {} prompts -> {} rows in {seconds:.1}s", prompts.display(), summary.prompts, summary.rows);
    Ok((seconds, cpu_seconds() - cpu, peak_rss_bytes()))
}

fn main() -> Result<()> {
    let large: usize = std::env::var("RLHF_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let small = 100_000.min(large);
    tch::set_num_threads(2);
    let tmp = tempfile::tempdir()?;
    let tokenizer = task_tokenizer(1, 512);
    let policy = save_random_policy(&tmp.path().join("policy"), tiny_llama(&tokenizer, 2, 128), &tokenizer, 1);
    let (small_table, large_table) = (tmp.path().join("small.parquet"), tmp.path().join("large.parquet"));
    write_prompts(&small_table, small)?;
    write_prompts(&large_table, large)?;
    let before = peak_rss_bytes();
    let (small_s, small_cpu, after_small) = pass(&policy, &small_table, &tmp.path().join("small_out.parquet"))?;
    let (large_s, large_cpu, after_large) = pass(&policy, &large_table, &tmp.path().join("large_out.parquet"))?;
    let ratio = match (after_small, after_large) {
        (Some(a), Some(b)) => Some(b as f64 / a as f64),
        _ => None,
    };
    let report = serde_json::json!({
        "model": "tiny Llama (hidden 32, 2 layers), 1 new token per prompt, batch 512, 2 threads",
        "small": { "prompts": small, "seconds": small_s, "cpu_seconds": small_cpu,
                   "prompts_per_s": small as f64 / small_s, "peak_rss_bytes_after": after_small },
        "large": { "prompts": large, "seconds": large_s, "cpu_seconds": large_cpu,
                   "prompts_per_s": large as f64 / large_s, "peak_rss_bytes_after": after_large },
        "peak_rss_bytes_before": before,
        "peak_rss_large_over_small": ratio,
    });
    write_report("stream", &report)?;
    Ok(())
}
