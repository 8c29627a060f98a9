//! The judges over HTTP. Against the project's own OpenAI-compatible server (`rlhf-studio`'s,
//! serving the real SmolLM2-135M-Instruct): the HTTP judge reads the same P(A) from the returned
//! log-probs as the local judge computes from the model. Against a server that misbehaves: a 429
//! and a 500 are retried, a malformed body is one clear error naming the server, a failed run leaves
//! no table, and a rerun is answered from the cache without one request.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rlhf_data::{read_records, write_records, ChatMessage, Comparison};
use rlhf_judge::ai::judging_conversation;
use rlhf_judge::{Constitution, Letters, LocalModel, OpenAiModel, OpenAiSettings};

/// Serves `router` on a free loopback port from a thread of its own.
fn serve(router: axum::Router) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
    });
    Ok(address)
}

fn constitution() -> Constitution {
    Constitution::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/constitutions/task.toml")).unwrap()
}

fn conversations() -> Vec<Vec<ChatMessage>> {
    let principle = &constitution().principles[1];
    let (prompt, polite, rude) =
        ("Tell me about the garden.", "Sure! The garden is lovely.", "Whatever. The garden is dull, go away.");
    vec![judging_conversation(principle, prompt, polite, rude), judging_conversation(principle, prompt, rude, polite)]
}

#[test]
fn the_http_judge_reads_what_the_local_judge_computes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = rlhf_train::testing::smollm2(&tmp.path().join("smollm2"))?;
    let cpu = rlhf_model::Placement { device: tch::Device::Cpu, kind: tch::Kind::Float };
    let engine = rlhf_studio::engine::Engine::load(&dir, cpu, rlhf_model::ChatMode::Auto)?;
    let served = rlhf_studio::server::Served {
        studio: None,
        runs: None,
        viewer_token: None,
        engine: Some(engine),
        api_key: Some("key".into()),
        live: None,
    };
    let address = serve(rlhf_studio::server::router(served))?;
    let mut settings = OpenAiSettings::new(format!("http://{address}/v1"), "smollm2");
    settings.api_key = Some("key".into());
    let http = OpenAiModel::new(settings).p_a(&conversations())?;
    let local = LocalModel::load(&dir, cpu)?.p_a(&conversations())?;
    for (h, l) in http.iter().zip(&local) {
        let (h, l) = (h.context("the server's log-probs name A or B")?, l.context("local")?);
        ensure!((h - l).abs() < 1e-4, "HTTP P(A) {h} vs local {l}");
    }
    Ok(())
}

/// A server that answers the letter of the response saying "Sure!" after refusing the first
/// requests with 429 and then 500, or (when `malformed`) always answers 200 with a body that is not
/// JSON. Counts the requests.
fn flaky_server(malformed: bool) -> Result<(SocketAddr, Arc<AtomicUsize>)> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let router = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |axum::Json(request): axum::Json<serde_json::Value>| {
            let seen = seen.clone();
            async move {
                let question = request["messages"][0]["content"].as_str().unwrap_or_default().to_string();
                let a =
                    &question[question.find("[Response A]").unwrap_or(0)..question.find("[Response B]").unwrap_or(0)];
                let letter = if a.contains("Sure!") { "A" } else { "B" };
                let n = seen.fetch_add(1, Ordering::SeqCst);
                if malformed {
                    return (StatusCode::OK, "<html>busy</html>").into_response();
                }
                match n {
                    0 => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")], "slow down").into_response(),
                    1 => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
                    _ => axum::Json(
                        serde_json::json!({ "choices": [{ "message": { "role": "assistant", "content": letter } }] }),
                    )
                    .into_response(),
                }
            }
        }),
    );
    Ok((serve(router)?, count))
}

fn fast_settings(address: SocketAddr) -> OpenAiSettings {
    let mut settings = OpenAiSettings::new(format!("http://{address}/v1"), "flaky");
    settings.backoff = Duration::from_millis(10);
    settings.concurrency = 1;
    settings
}

#[test]
fn retries_errors_and_the_cache() -> Result<()> {
    let (address, count) = flaky_server(false)?;
    let answers = OpenAiModel::new(fast_settings(address)).p_a(&conversations()[..1])?;
    ensure!(answers == [Some(1.0)] && count.load(Ordering::SeqCst) == 3, "429, 500, then the answer");
    let mut no_retries = fast_settings(flaky_server(false)?.0);
    no_retries.max_retries = 0;
    let err = OpenAiModel::new(no_retries).p_a(&conversations()[..1]).unwrap_err().to_string();
    ensure!(err.contains("HTTP 429, still after 0 retries"), "{err}");
    let (bad, _) = flaky_server(true)?;
    let err = OpenAiModel::new(fast_settings(bad)).p_a(&conversations()[..1]).unwrap_err().to_string();
    ensure!(err.contains(&format!("http://{bad}/v1/chat/completions")) && err.contains("not JSON"), "{err}");

    // The binary: a failed run writes no table; a finished one is answered from the cache next time.
    let tmp = tempfile::tempdir()?;
    let pairs = tmp.path().join("pairs.parquet");
    let rows: Vec<Comparison> = (0..3)
        .map(|i| Comparison {
            id: format!("c{i}"),
            prompt: format!("Tell me about the cat {i}."),
            chosen: "Sure! The cat is lovely.".into(),
            rejected: format!("The cat {i} is dull."),
            ..Comparison::default()
        })
        .collect();
    write_records(&pairs, &rows)?;
    let out = tmp.path().join("ai.parquet");
    let constitution = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/constitutions/task.toml");
    let label = |address: SocketAddr| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rlhf-judge"));
        command.args(["label", "--pairs"]).arg(&pairs).arg("--out").arg(&out).arg("--constitution").arg(&constitution);
        command.args(["--openai", &format!("http://{address}/v1"), "--model", "flaky", "--against", "gold"]);
        command.env("RUST_LOG", "error");
        command.output()
    };
    let failed = label(bad)?;
    let stderr = String::from_utf8_lossy(&failed.stderr);
    ensure!(!failed.status.success() && stderr.trim().lines().count() == 1 && stderr.contains("not JSON"), "{stderr}");
    ensure!(!out.exists(), "a failed run left a table");
    let (good, count) = flaky_server(false)?;
    count.store(2, Ordering::SeqCst); // no refusals this time
    let done = label(good)?;
    ensure!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let asked = count.load(Ordering::SeqCst) - 2;
    ensure!(asked == 6, "three pairs in both orders: {asked} requests");
    let labelled: Vec<Comparison> = read_records(&out)?;
    ensure!(labelled.len() == 3, "{labelled:?}");
    for c in &labelled {
        ensure!(
            c.chosen.starts_with("Sure!") && c.annotator.as_deref() == Some("ai:flaky") && c.margin == Some(1.0),
            "{c:?}"
        );
    }
    rlhf_data::validate_table(&out, rlhf_data::Kind::Comparisons)?;
    let cached = rlhf_data::validate_table(tmp.path().join("ai.parquet.cache.jsonl"), rlhf_data::Kind::Verdicts)?;
    ensure!(cached == 3, "the cache holds {cached} verdicts, not one per pair");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("ai.parquet.against.json"))?)?;
    let gold = &report["gold"];
    ensure!(gold["both_orders_consistent"] == 1.0 && gold["agreement"] == 1.0, "{report}");
    let again = label(good)?;
    ensure!(again.status.success() && count.load(Ordering::SeqCst) - 2 == 6, "the rerun asked the server again");
    ensure!(String::from_utf8_lossy(&again.stdout).contains("(3 answers were cached)"));
    Ok(())
}
