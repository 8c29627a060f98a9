//! The `rlhf-task` binary end to end: `generate` writes the task's tables, `label` turns sampled
//! responses into comparisons; a failure is one `error:` line, exit code 1, and nothing written.

use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

fn rlhf_task(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rlhf-task")).args(args).env_remove("RUST_LOG").output().expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn generate_then_label() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().to_str().unwrap();
    let generated =
        rlhf_task(&["generate", "--out", data, "--set", "demonstrations=1500", "--set", "heldout_demonstrations=10"]);
    let tables = ["prompts", "prompts_heldout", "demonstrations", "demonstrations_heldout"];
    assert_eq!(stdout(&generated), tables.map(|t| format!("wrote {data}/{t}.parquet\n")).concat());

    // Demonstrations of the same prompt stand in for samples.
    let demonstrations = format!("{data}/demonstrations.parquet");
    let comparisons = format!("{data}/comparisons.parquet");
    let pairs = stdout(&rlhf_task(&["label", "--in", &demonstrations, "--out", &comparisons, "--seed", "2"]));
    let ranked = stdout(&rlhf_task(&["label", "--rankings", "--in", &demonstrations, "--out", &comparisons]));
    insta::assert_snapshot!(format!("{pairs}{ranked}").replace(data, "DATA"));
}

#[test]
fn labelling_a_table_without_responses_fails_with_one_line() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().to_str().unwrap();
    stdout(&rlhf_task(&[
        "generate",
        "--out",
        data,
        "--set",
        "demonstrations=10",
        "--set",
        "heldout_demonstrations=10",
    ]));
    let (prompts, out) = (format!("{data}/prompts.parquet"), format!("{data}/comparisons.parquet"));
    let failed = rlhf_task(&["label", "--in", &prompts, "--out", &out]);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8(failed.stderr).unwrap();
    assert_eq!(stderr, format!("error: {prompts}: missing column \"response\", expected Utf8\n"));
    assert!(!Path::new(&out).exists());
}
