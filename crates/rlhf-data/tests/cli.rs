//! The `rlhf-data` binary end to end: output on success, one `error:` line and exit code 1 on
//! failure, nothing left behind.

use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

fn rlhf_data(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rlhf-data")).args(args).env_remove("RUST_LOG").output().expect("the binary runs")
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    path.to_string_lossy().into_owned()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The single stderr line of a failed run.
fn error_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    stderr.trim_end().to_string()
}

#[test]
fn import_inspect_validate() {
    let dir = TempDir::new().unwrap();
    let table = dir.path().join("pairs.parquet");
    let table = table.to_str().unwrap();
    let imported = rlhf_data(&["import", &fixture("pairs.jsonl"), table, "--kind", "comparisons"]);
    assert_eq!(stdout(&imported), format!("wrote 3 comparisons rows to {table} (format prompt-chosen-rejected)\n"));

    let validated = rlhf_data(&["validate", table, "--kind", "comparisons"]);
    assert_eq!(stdout(&validated), format!("ok: {table} is a valid comparisons table with 3 rows\n"));

    let inspected = stdout(&rlhf_data(&["inspect", table, "--rows", "2"]));
    insta::assert_snapshot!(inspected.replace(table, "pairs.parquet"));
}

#[test]
fn unpair_turns_comparisons_into_feedback_and_refuses_other_tables() {
    let dir = TempDir::new().unwrap();
    let pairs = dir.path().join("pairs.parquet");
    let pairs = pairs.to_str().unwrap();
    stdout(&rlhf_data(&["import", &fixture("pairs.jsonl"), pairs, "--kind", "comparisons"]));
    let labels = dir.path().join("feedback.parquet");
    let labels = labels.to_str().unwrap();
    let unpaired = rlhf_data(&["unpair", pairs, "--out", labels]);
    assert_eq!(stdout(&unpaired), format!("wrote 6 feedback rows (3 comparisons unpaired) to {labels}\n"));
    let validated = rlhf_data(&["validate", labels, "--kind", "feedback"]);
    assert_eq!(stdout(&validated), format!("ok: {labels} is a valid feedback table with 6 rows\n"));

    let not_pairs = dir.path().join("not-pairs.parquet");
    let wrong = rlhf_data(&["unpair", labels, "--out", not_pairs.to_str().unwrap()]);
    assert!(error_line(&wrong).contains("missing column \"chosen\""));
    assert!(!not_pairs.exists());
}

#[test]
fn failures_print_one_error_line_and_exit_1() {
    let dir = TempDir::new().unwrap();
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"prompt\": \"p\"}\n{\"prompt\": \n").unwrap();
    let broken = broken.to_str().unwrap();
    let output = dir.path().join("out.parquet");
    let output = output.to_str().unwrap();

    let failed = rlhf_data(&["import", broken, output, "--kind", "prompts"]);
    assert_eq!(
        error_line(&failed),
        format!("error: {broken} line 2 column 11: invalid JSON (EOF while parsing a value)")
    );
    assert!(!Path::new(output).exists());

    let prompts = dir.path().join("prompts.parquet");
    let prompts = prompts.to_str().unwrap();
    stdout(&rlhf_data(&["import", &fixture("prompts.jsonl"), prompts, "--kind", "prompts"]));
    let wrong_kind = rlhf_data(&["validate", prompts, "--kind", "demonstrations"]);
    assert_eq!(error_line(&wrong_kind), format!("error: {prompts}: missing column \"response\", expected Utf8"));

    let missing = rlhf_data(&["inspect", output]);
    assert_eq!(error_line(&missing), format!("error: {output}: cannot open: No such file or directory (os error 2)"));
}
