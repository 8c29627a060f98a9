//! Chat data from the Hub's layouts through every training stage with no hand conversion: a
//! pandas (snappy) Parquet of `messages` conversations (one multi-turn, one with a system turn) is
//! imported and SFT trains on it through a chat template; a pandas Parquet in the
//! UltraFeedback-binarized layout trains the reward model; a JSON Lines file of `chosen`/`rejected`
//! conversations (the prompt inside them) trains DPO. The stage binaries are those in
//! `target/release` (built by `cargo xtask test`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use rlhf_data::{read_records, Comparison, Demonstration, Metric};

/// ChatML with the tiny tokenizer's `<|endoftext|>` as the end of every turn.
const CHAT_TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|endoftext|>\n\
                             {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs a stage binary from the workspace root with `args`, then `--set` for each of `sets`;
/// fails with its stderr, else returns it.
fn run(bin: &str, args: &[&str], sets: &[String]) -> Result<String> {
    let path = Path::new(env!("CARGO_BIN_EXE_alt-dpo")).with_file_name(bin);
    ensure!(path.is_file(), "{} is not built: run `cargo xtask test`", path.display());
    let mut command = Command::new(&path);
    command.args(args).current_dir(root()).env("RUST_LOG", "info");
    for set in sets {
        command.args(["--set", set]);
    }
    let out = command.output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(out.status.success(), "{bin} {args:?} {sets:?} failed:\n{stderr}");
    Ok(stderr)
}

/// `key=value` settings from `(key, value)` pairs.
fn sets(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs.iter().map(|(key, value)| format!("{key}={value}")).collect()
}

fn fixture(name: &str) -> String {
    root().join("crates/rlhf-data/tests/data").join(name).display().to_string()
}

fn finite_losses(dir: &Path) -> Result<()> {
    let metrics: Vec<Metric> = read_records(dir.join("metrics.parquet"))?;
    let losses: Vec<f64> = metrics.iter().filter(|m| m.name == "loss").map(|m| m.value).collect();
    ensure!(!losses.is_empty() && losses.iter().all(|l| l.is_finite()), "{}: losses {losses:?}", dir.display());
    Ok(())
}

/// A few steps of training: what every stage below shares.
const SHORT: [(&str, &str); 5] = [
    ("train.max_steps", "2"),
    ("train.warmup_steps", "0"),
    ("train.eval_every", "0"),
    ("train.log_every", "1"),
    ("train.checkpoint_every", "0"),
];

#[test]
fn hub_chat_layouts_train_sft_reward_and_dpo() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let run_dir = tmp.path().join("run");
    let data = run_dir.join("data");
    let path = |p: PathBuf| p.display().to_string();
    let (demonstrations, comparisons, dpo_pairs) = (
        path(data.join("demonstrations.parquet")),
        path(data.join("comparisons.parquet")),
        path(data.join("dpo_pairs.parquet")),
    );
    let import = |kind: &str, input: &str, output: &str| {
        run("rlhf-data", &["import", "--kind", kind, &fixture(input), output], &[])
    };
    import("demonstrations", "parquet/pandas_messages.parquet", &demonstrations)?;
    import("comparisons", "parquet/pandas_preferences.parquet", &comparisons)?;
    import("comparisons", "implicit_conversational.jsonl", &dpo_pairs)?;
    let rows: Vec<Demonstration> = read_records(&demonstrations)?;
    let multi_turn = rows.iter().filter(|d| d.prompt_messages.as_ref().is_some_and(|t| t.len() > 2)).count();
    ensure!(multi_turn == 1, "the multi-turn conversation stays one: {rows:?}");
    let pairs: Vec<Comparison> = read_records(&dpo_pairs)?;
    ensure!(pairs.iter().all(|c| c.prompt_messages.is_some()), "{pairs:?}");

    let base_stage = path(tmp.path().join("base"));
    let tiny = [
        ("corpus.documents", "300"),
        ("corpus.heldout_documents", "20"),
        ("corpus.max_len", "64"),
        ("tokenizer.vocab_size", "400"),
        ("model.hidden_size", "32"),
        ("model.intermediate_size", "64"),
        ("model.num_layers", "1"),
        ("model.num_heads", "2"),
        ("model.num_kv_heads", "1"),
    ];
    run(
        "rlhf-sft",
        &["pretrain", "--config", "configs/base.toml", "--out", &base_stage],
        &sets(&[&tiny[..], &SHORT].concat()),
    )?;
    let base = Path::new(&base_stage).join("final");
    std::fs::write(base.join("chat_template.jinja"), CHAT_TEMPLATE)?;

    let run_args = |config: &'static str| ["train", "--config", config, "--run-dir", run_dir.to_str().unwrap()];
    let base_dir = path(base);
    let sft = [("model.base", base_dir.as_str()), ("data.demonstrations", &demonstrations), ("data.heldout", "")];
    let log = run(
        "rlhf-sft",
        &run_args("configs/sft.toml"),
        &sets(&[&sft[..], &SHORT, &[("train.batch_size", "2")]].concat()),
    )?;
    ensure!(log.contains("multi_turn=1"), "SFT should train on the earlier assistant turn of one row:\n{log}");

    let reward = [("gold_judge", ""), ("data.comparisons", comparisons.as_str()), ("data.heldout_fraction", "0")];
    run(
        "rlhf-reward",
        &run_args("configs/reward.toml"),
        &sets(&[&reward[..], &SHORT, &[("train.batch_size", "2")]].concat()),
    )?;

    let dpo = [("gold_judge", ""), ("data.comparisons", dpo_pairs.as_str()), ("data.heldout_fraction", "0")];
    run("rlhf-dpo", &run_args("configs/dpo.toml"), &sets(&[&dpo[..], &SHORT, &[("train.batch_size", "1")]].concat()))?;

    for stage in ["sft", "rm", "dpo"] {
        finite_losses(&run_dir.join(stage))?;
        let dir = run_dir.join(stage).join("final");
        let settings = std::fs::read_to_string(dir.join("tokenizer_config.json")).context(stage.to_string())?;
        let kept = dir.join("chat_template.jinja").is_file() || settings.contains("\"chat_template\"");
        ensure!(kept, "{stage}: the chat template is kept in the checkpoint");
    }
    Ok(())
}
