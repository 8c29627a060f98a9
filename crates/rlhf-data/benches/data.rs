//! Import throughput: a generated JSON Lines file of comparisons (1,000,000 rows by default;
//! prompts ~200 characters, responses ~400) imported to Parquet.
//!
//! `cargo bench -p rlhf-data --bench data` writes the figures as JSON to
//! `$RLHF_BENCH_DIR/data.json` (default `<workspace>/target/bench/data.json`).
//! `RLHF_BENCH_ROWS` changes the row count.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use rlhf_bench::{cpu_seconds, peak_rss_bytes, write_report};
use rlhf_data::{import, Format, ImportOptions, Kind};

const WORDS: &[&str] = &[
    "the",
    "a",
    "model",
    "answer",
    "question",
    "because",
    "water",
    "light",
    "people",
    "time",
    "city",
    "river",
    "explain",
    "simple",
    "careful",
    "history",
    "science",
    "music",
    "garden",
    "computer",
    "language",
    "learn",
    "write",
    "read",
    "small",
    "large",
    "quickly",
    "slowly",
    "important",
    "example",
    "between",
    "through",
    "during",
    "without",
    "however",
    "therefore",
    "first",
    "second",
    "finally",
    "energy",
    "system",
    "process",
    "result",
    "change",
    "world",
    "think",
    "believe",
    "understand",
    "describe",
    "problem",
    "solution",
    "friend",
    "family",
    "morning",
    "evening",
    "weather",
    "mountain",
    "ocean",
    "forest",
    "animal",
    "dog",
    "cat",
    "bread",
    "coffee",
    "travel",
    "distance",
    "number",
    "value",
    "reason",
    "idea",
    "story",
    "of",
    "to",
    "and",
    "in",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "as",
    "was",
    "are",
    "this",
    "be",
    "at",
    "by",
    "not",
    "or",
    "from",
    "but",
    "what",
    "all",
    "were",
    "when",
];

/// A small deterministic generator (SplitMix64), so every run imports the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// About `length` characters of sentences, with the odd newline and quote to escape.
fn text(rng: &mut Rng, length: usize, out: &mut String) {
    out.clear();
    let target = length / 2 + rng.below(length);
    let mut sentence_start = true;
    while out.len() < target {
        let word = WORDS[rng.below(WORDS.len())];
        if sentence_start {
            let mut chars = word.chars();
            out.extend(chars.next().map(|c| c.to_ascii_uppercase()));
            out.push_str(chars.as_str());
        } else {
            out.push_str(word);
        }
        sentence_start = false;
        match rng.below(16) {
            0 => {
                out.push_str(". ");
                sentence_start = true;
            }
            1 => out.push_str(", "),
            2 if rng.below(8) == 0 => out.push_str(".\\n"),
            3 if rng.below(8) == 0 => out.push_str(" \\\"quoted\\\" "),
            _ => out.push(' '),
        }
    }
    out.push('.');
}

fn generate(path: &Path, rows: u64) -> Result<()> {
    let mut file = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = Rng(42);
    let (mut prompt, mut chosen, mut rejected) = (String::new(), String::new(), String::new());
    for row in 0..rows {
        text(&mut rng, 200, &mut prompt);
        text(&mut rng, 400, &mut chosen);
        text(&mut rng, 400, &mut rejected);
        writeln!(
            file,
            r#"{{"id": "cmp-{row}", "prompt": "{prompt}", "chosen": "{chosen}", "rejected": "{rejected}"}}"#
        )?;
    }
    // Synced so that writing it back to disk does not overlap the timed import.
    file.into_inner()?.sync_all()?;
    Ok(())
}

fn main() -> Result<()> {
    let rows: u64 = match std::env::var("RLHF_BENCH_ROWS") {
        Ok(rows) => rows.parse().context("RLHF_BENCH_ROWS")?,
        Err(_) => 1_000_000,
    };
    let work = tempfile::tempdir()?;
    let input = work.path().join("comparisons.jsonl");
    let output = work.path().join("comparisons.parquet");
    generate(&input, rows)?;

    let options = ImportOptions { kind: Kind::Comparisons, format: Format::Auto };
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    let summary = import(&input, &output, &options)?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds() - cpu_start;
    anyhow::ensure!(summary.rows == rows, "imported {} of {rows} rows", summary.rows);

    let input_bytes = std::fs::metadata(&input)?.len();
    let report = serde_json::json!({
        "bench": "import comparisons JSONL -> Parquet",
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows as f64 / seconds,
        "cpu_seconds": cpu_seconds,
        "rows_per_cpu_s": rows as f64 / cpu_seconds,
        "input_mb_per_s": input_bytes as f64 / seconds / 1e6,
        "peak_rss_bytes": peak_rss_bytes(),
        "input_bytes": input_bytes,
        "output_bytes": std::fs::metadata(&output)?.len(),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    println!("{report:#}");
    write_report("data", &report)?;
    Ok(())
}
