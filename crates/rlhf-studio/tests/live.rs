//! Live sampling (`label --model DIR --prompts FILE`): the queue fills with the policy's own samples
//! (the very responses `rlhf-eval`'s sampler gives with the studio's seed), refills as annotators
//! label, survives a SIGKILL (labels and sampled items kept, the prompt cursor going on), and the
//! labels export as a valid rankings table.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{Server, Session};
use rlhf_data::{read_records, validate_table, write_records, Kind, Prompt, Ranking};
use rlhf_eval::generate::{sample_tokens, SampleConfig};
use rlhf_model::{CausalLm, Tokenizer};
use rlhf_studio::journal::{Journal, Label};
use rlhf_studio::live::LiveBatch;
use serde_json::{json, Value};

fn prompts() -> Vec<Prompt> {
    (0..5)
        .map(|i| Prompt {
            id: format!("q{i}"),
            prompt: format!("Tell me about the garden {i}."),
            prompt_messages: None,
        })
        .collect()
}

/// The annotator's next item, waiting while the policy samples.
fn next_item(session: &Session) -> Result<Value> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let next = session.get("/api/next")?.json()?;
        if next["waiting"] != true {
            return Ok(next);
        }
        ensure!(next["error"].is_null(), "live sampling failed: {}", next["error"]);
        ensure!(Instant::now() < until, "no live items after 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rank(session: &Session, item: &Value) -> Result<String> {
    let id = item["item"].as_str().context("item id")?.to_string();
    let reply = session.post("/api/label", &json!({ "item": id, "ranking": [[0], [1], [2]] }))?;
    ensure!(reply.status == 200, "label: {}", reply.body);
    Ok(id)
}

fn sorted(values: &Value) -> BTreeSet<String> {
    values.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

#[test]
fn the_queue_refills_from_the_policy_through_a_kill() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = common::tiny_policy(&tmp.path().join("policy"), 256);
    let table = tmp.path().join("prompts.parquet");
    write_records(&table, &prompts())?;
    let dir = tmp.path().join("studio");
    let model = policy.to_str().context("path")?;
    let setup = [
        "--model",
        model,
        "--prompts",
        table.to_str().context("path")?,
        "--annotators",
        "ada,bob",
        "--overlap",
        "2",
        "--samples-per-prompt",
        "3",
        "--live-batch",
        "2",
        "--seed",
        "4",
    ];
    let server = Server::start(&dir, &setup)?;
    let ada = Session::sign_in(&server.address, server.token("ada"))?;

    // The first item is prompt 0's samples, exactly as the sampler draws them with the studio's seed.
    let first = next_item(&ada)?;
    ensure!(first["item"] == "q0@0", "{first}");
    let tokenizer = Tokenizer::from_dir(&policy)?;
    let model_here = CausalLm::from_pretrained(&policy, tch::Device::Cpu, tch::Kind::Float)?;
    let config = SampleConfig { samples_per_prompt: 3, seed: 4, ..SampleConfig::default() };
    let drawn = sample_tokens(&model_here, &tokenizer, &prompts()[..2], &config)?;
    let expected: BTreeSet<String> =
        drawn.iter().filter(|s| s.prompt_index == 0).map(|s| s.text.clone()).filter(|t| !t.trim().is_empty()).collect();
    ensure!(
        sorted(&first["responses"]) == expected,
        "live responses {} vs the sampler's {expected:?}",
        first["responses"]
    );

    // Labelling goes on past the first refill.
    let mut labelled = vec![rank(&ada, &first)?];
    for _ in 0..3 {
        labelled.push(rank(&ada, &next_item(&ada)?)?);
    }
    ensure!(labelled == ["q0@0", "q1@1", "q2@2", "q3@3"], "{labelled:?}");
    server.kill()?;

    // After a SIGKILL: every acknowledged label and sampled item is there, and sampling goes on
    // from the cursor (no --prompts needed again).
    let batches = Journal::<LiveBatch>::read(&dir.join("live.jsonl"))?;
    ensure!(batches.len() >= 2 && batches.iter().all(|b| b.policy == "policy"), "{} batches", batches.len());
    let labels = Journal::<Label>::read(&dir.join("journal.jsonl"))?;
    ensure!(labels.iter().map(|l| l.item.as_str()).collect::<Vec<_>>() == labelled, "labels after the kill");
    let server = Server::start(&dir, &["--model", model])?;
    let ada = Session::sign_in(&server.address, server.token("ada"))?;
    let mut seen = BTreeSet::new();
    for _ in 0..5 {
        let item = next_item(&ada)?;
        let id = rank(&ada, &item)?;
        ensure!(!labelled.contains(&id) && seen.insert(id.clone()), "{id} came twice");
    }
    ensure!(seen.contains("q0@5") && seen.contains("q3@8"), "the prompts cycle on: {seen:?}");
    let progress = ada.get("/api/next")?.json()?["progress"].clone();
    ensure!(progress["labelled"] == 9, "{progress}");
    server.kill()?;

    // The labels are a rankings table the reward model reads.
    let export =
        std::process::Command::new(env!("CARGO_BIN_EXE_rlhf-studio")).args(["export", "--dir"]).arg(&dir).output()?;
    ensure!(export.status.success(), "export: {}", String::from_utf8_lossy(&export.stderr));
    let rows = validate_table(dir.join("rankings.parquet"), Kind::Rankings)?;
    ensure!(rows == 9, "{rows} rankings");
    let rankings: Vec<Ranking> = read_records(dir.join("rankings.parquet"))?;
    ensure!(rankings.iter().all(|r| r.annotator.as_deref() == Some("human:ada")), "annotator");
    Ok(())
}
