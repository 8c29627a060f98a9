//! `rlhf-judge revise` with the real SmolLM2-135M-Instruct: a run killed after its first chunk
//! resumes to the same rows as an uninterrupted run, its tables are valid and agree with each
//! other, and a journal written with other settings is one clear error that writes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use rlhf_data::{read_records, validate_table, write_records, Comparison, Demonstration, Kind, Prompt, Revision};

fn revise(model: &Path, prompts: &Path, out: &Path, seed: &str) -> Command {
    let constitution = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/constitutions/task.toml");
    let mut command = Command::new(env!("CARGO_BIN_EXE_rlhf-judge"));
    command
        .args(["revise", "--model"])
        .arg(model)
        .arg("--prompts")
        .arg(prompts)
        .arg("--constitution")
        .arg(constitution);
    command.arg("--out").arg(out).arg("--demonstrations").arg(out.with_extension("sft.parquet"));
    command.arg("--comparisons").arg(out.with_extension("pairs.parquet"));
    command.args(["--max-new-tokens", "12", "--batch-size", "2", "--temperature", "1", "--seed", seed]);
    command.args(["--against", "gold"]).env("RUST_LOG", "error");
    command
}

fn journal_of(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.journal.jsonl", out.display()))
}

#[test]
fn a_killed_revision_run_resumes_to_the_same_rows() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = rlhf_train::testing::smollm2(&tmp.path().join("smollm2"))?;
    let prompts = tmp.path().join("prompts.parquet");
    let topics = ["the garden", "a cat", "the sea", "bread", "rain", "a train"];
    let rows: Vec<Prompt> = topics
        .iter()
        .enumerate()
        .map(|(i, topic)| Prompt {
            id: format!("p{i}"),
            prompt: format!("Tell me about {topic}."),
            ..Prompt::default()
        })
        .collect();
    write_records(&prompts, &rows)?;

    let whole = tmp.path().join("whole.parquet");
    let done = revise(&model, &prompts, &whole, "3").output()?;
    ensure!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let expected: Vec<Revision> = read_records(&whole)?;
    ensure!(!expected.is_empty() && expected.len() <= rows.len(), "{expected:?}");
    validate_table(&whole, Kind::Revisions)?;
    validate_table(whole.with_extension("sft.parquet"), Kind::Demonstrations)?;
    validate_table(whole.with_extension("pairs.parquet"), Kind::Comparisons)?;
    let demonstrations: Vec<Demonstration> = read_records(whole.with_extension("sft.parquet"))?;
    let comparisons: Vec<Comparison> = read_records(whole.with_extension("pairs.parquet"))?;
    let revised: Vec<&Revision> = expected.iter().filter(|r| !r.revisions.is_empty()).collect();
    ensure!(demonstrations.len() == revised.len() && comparisons.len() <= revised.len());
    for (d, r) in demonstrations.iter().zip(&revised) {
        ensure!(d.id == r.id && d.response == r.latest() && r.annotator.as_deref() == Some("ai:smollm2"));
    }
    for c in &comparisons {
        let row = expected.iter().find(|r| format!("{}-cai", r.id) == c.id).expect("a row per comparison");
        ensure!(c.chosen == row.latest() && c.rejected == row.initial && c.chosen != c.rejected, "{c:?}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.against.json", whole.display()))?)?;
    let wins = report["gold"]["revision_beats_initial"].as_f64();
    ensure!(wins.is_some_and(|w| (0.0..=1.0).contains(&w)) || revised.is_empty(), "{report}");

    // The same run, killed once its first chunk is in the journal, then resumed.
    let killed = tmp.path().join("killed.parquet");
    let journal = journal_of(&killed);
    let mut child = revise(&model, &prompts, &killed, "3").stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let started = Instant::now();
    while !std::fs::read_to_string(&journal).is_ok_and(|text| text.lines().count() >= 1) {
        ensure!(child.try_wait()?.is_none(), "the run ended before its first chunk was seen");
        ensure!(started.elapsed() < Duration::from_secs(300), "no chunk in the journal after 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()?;
    ensure!(!killed.exists(), "a killed run left a table");
    let resumed = revise(&model, &prompts, &killed, "3").output()?;
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    ensure!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    ensure!(!stdout.contains("(0 chunks from the journal)"), "the resumed run redid every chunk: {stdout}");
    let got: Vec<Revision> = read_records(&killed)?;
    ensure!(got == expected, "resumed rows differ:\n{got:?}\nvs\n{expected:?}");

    // Another seed with the same journal: one error, nothing written.
    let mut mismatched = revise(&model, &prompts, &tmp.path().join("other.parquet"), "4");
    mismatched.arg("--journal").arg(&journal);
    let failed = mismatched.output()?;
    let stderr = String::from_utf8_lossy(&failed.stderr);
    ensure!(!failed.status.success() && stderr.trim().lines().count() == 1, "{stderr}");
    ensure!(stderr.contains("journal") && stderr.contains(&*journal.to_string_lossy()), "{stderr}");
    ensure!(!tmp.path().join("other.parquet").exists(), "a refused run wrote a table");
    Ok(())
}
