//! `rlhf-studio serve`: a checkpoint behind the OpenAI-compatible API, checked as a client sees it.
//! On a tiny random policy: greedy text and log-probs equal rlhf-model's own generation, streaming
//! gives the same text as one answer, seeds reproduce, stop strings cut, and every bad request or
//! missing key is one clear error. On the real SmolLM2-135M-Instruct: its chat template answers "What
//! is the capital of France?" as transformers does, whole and streamed.

mod common;

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use common::{request, Reply, Server};
use rlhf_model::{generate_from_tokens, CausalLm, GenerationConfig, Tokenizer};
use serde_json::{json, Value};

fn serve(model: &Path) -> Result<Server> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rlhf-studio"));
    command.arg("serve");
    Server::start_with(command, None, &["--model", model.to_str().context("path")?, "--api-key", "test-key"])
}

fn call(server: &Server, path: &str, body: &Value) -> Result<Reply> {
    request(
        &server.address,
        "POST",
        path,
        &[("authorization", "Bearer test-key"), ("content-type", "application/json")],
        &body.to_string(),
    )
}

/// The `data:` payloads of a chunked server-sent-events body.
fn events(reply: &Reply) -> Result<Vec<String>> {
    ensure!(reply.header("content-type").is_some_and(|t| t.starts_with("text/event-stream")), "not an event stream");
    let mut body = reply.body.as_bytes();
    let mut text = Vec::new();
    if reply.header("transfer-encoding") == Some("chunked") {
        loop {
            let line_end = body.windows(2).position(|w| w == b"\r\n").context("chunk size")?;
            let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end])?.trim(), 16)?;
            if size == 0 {
                break;
            }
            text.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
            body = &body[line_end + 4 + size..];
        }
    } else {
        text.extend_from_slice(body);
    }
    Ok(String::from_utf8(text)?.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_string).collect())
}

/// Greedy tokens, text and log-probs of `prompt` as rlhf-model generates them.
fn reference(dir: &Path, prompt: &[i64], max_new_tokens: i64) -> Result<(String, Vec<f32>)> {
    let tokenizer = Tokenizer::from_dir(dir)?;
    let model = CausalLm::from_pretrained(dir, tch::Device::Cpu, tch::Kind::Float)?;
    let config = GenerationConfig {
        eos_token_ids: rlhf_model::end_token_ids(&model, &tokenizer, &[]),
        pad_token_id: tokenizer.pad_id(),
        ..GenerationConfig::greedy_for(&model, max_new_tokens)
    };
    let generation = generate_from_tokens(&model, &[prompt.to_vec()], &config)?;
    let tokens = generation.rows()?.remove(0);
    let mut logprobs = generation.logprob_rows()?.remove(0);
    let ends = tokens.last().is_some_and(|t| config.eos_token_ids.contains(t));
    if ends {
        logprobs.pop();
    }
    Ok((tokenizer.decode(&tokens, true)?, logprobs))
}

#[test]
fn the_api_answers_as_the_model_generates_streamed_or_whole() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = common::tiny_policy(&tmp.path().join("policy"), 96);
    let server = serve(&dir)?;
    let prompt = "Tell me about the river.";

    let models = request(&server.address, "GET", "/v1/models", &[("authorization", "Bearer test-key")], "")?;
    ensure!(models.status == 200, "models: {}", models.body);
    let listed = models.json()?;
    ensure!(listed["data"][0]["id"] == "policy" && listed["data"][0]["chat_template"] == false, "{listed}");

    // Greedy, with log-probs: rlhf-model's own answer.
    let body = json!({ "model": "policy", "prompt": prompt, "max_tokens": 12, "temperature": 0, "logprobs": 3 });
    let whole = call(&server, "/v1/completions", &body)?;
    ensure!(whole.status == 200, "completions: {}", whole.body);
    let answer = whole.json()?;
    let choice = &answer["choices"][0];
    let ids = Tokenizer::from_dir(&dir)?.encode_with_special_tokens(prompt)?;
    let (text, logprobs) = reference(&dir, &ids, 12)?;
    ensure!(choice["text"] == text.as_str(), "text {} vs {text:?}", choice["text"]);
    let reported: Vec<f64> = choice["logprobs"]["token_logprobs"]
        .as_array()
        .context("token_logprobs")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    ensure!(reported.len() == logprobs.len(), "{} log-probs for {} tokens", reported.len(), logprobs.len());
    for (got, want) in reported.iter().zip(&logprobs) {
        ensure!((got - *want as f64).abs() < 1e-5, "log-prob {got} vs {want}");
    }
    for (place, top) in choice["logprobs"]["top_logprobs"].as_array().context("top")?.iter().enumerate() {
        let best = top.as_object().context("top entry")?.values().filter_map(Value::as_f64).fold(f64::MIN, f64::max);
        ensure!(top.as_object().unwrap().len() == 3, "three alternatives");
        ensure!((best - reported[place]).abs() < 1e-5, "greedy picks the most likely token");
    }
    ensure!(answer["usage"]["prompt_tokens"] == ids.len(), "{}", answer["usage"]);
    ensure!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap_or_default()));

    // Streamed: the same text, piece by piece, then [DONE].
    let streamed = call(
        &server,
        "/v1/completions",
        &json!({ "prompt": prompt, "max_tokens": 12, "temperature": 0, "stream": true }),
    )?;
    let data = events(&streamed)?;
    ensure!(data.last().map(String::as_str) == Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> =
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d)).collect::<Result<_, _>>()?;
    let joined: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    ensure!(joined == text, "streamed {joined:?} vs {text:?}");
    ensure!(chunks.len() > 2, "the text came in one piece");
    ensure!(chunks.last().unwrap()["choices"][0]["finish_reason"] == choice["finish_reason"]);

    // A stop string cuts the text before it.
    let cut_at = text.char_indices().nth(text.chars().count() / 2).map(|(i, _)| i).unwrap_or(0);
    let stop: String = text[cut_at..].chars().take(2).collect();
    if !stop.trim().is_empty() {
        let stopped = call(
            &server,
            "/v1/completions",
            &json!({ "prompt": prompt, "max_tokens": 12, "temperature": 0, "stop": [stop] }),
        )?
        .json()?;
        let want = &text[..text.find(&stop).unwrap()];
        ensure!(stopped["choices"][0]["text"] == want && stopped["choices"][0]["finish_reason"] == "stop", "{stopped}");
    }

    // Sampling: n choices, reproducible with a seed; chat takes one user message without a template.
    let sampled = json!({ "messages": [{ "role": "user", "content": prompt }], "n": 3, "seed": 5, "max_tokens": 10, "logprobs": true, "top_logprobs": 2 });
    let first = call(&server, "/v1/chat/completions", &sampled)?.json()?;
    let again = call(&server, "/v1/chat/completions", &sampled)?.json()?;
    let contents = |reply: &Value| -> Vec<String> {
        reply["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["message"]["content"].as_str().unwrap().to_string())
            .collect()
    };
    ensure!(first["object"] == "chat.completion" && contents(&first).len() == 3, "{first}");
    ensure!(contents(&first) == contents(&again), "a seed reproduces");
    ensure!(contents(&first).iter().collect::<std::collections::HashSet<_>>().len() > 1, "the choices are samples");
    let entry = &first["choices"][0]["logprobs"]["content"][0];
    ensure!(entry["token"].is_string() && entry["top_logprobs"].as_array().is_some_and(|t| t.len() == 2), "{entry}");
    let chat_stream = call(
        &server,
        "/v1/chat/completions",
        &json!({ "messages": [{ "role": "user", "content": prompt }], "stream": true, "temperature": 0, "max_tokens": 12, "stream_options": { "include_usage": true } }),
    )?;
    let data = events(&chat_stream)?;
    let chunks: Vec<Value> =
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d)).collect::<Result<_, _>>()?;
    ensure!(chunks[0]["choices"][0]["delta"]["role"] == "assistant", "{}", chunks[0]);
    let joined: String = chunks.iter().filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str()).collect();
    ensure!(joined == text, "chat streamed {joined:?} vs {text:?}");
    ensure!(chunks.last().unwrap()["usage"]["completion_tokens"].as_u64().is_some_and(|n| n > 0), "usage last");

    // Refusals: each one clear error.
    let refused = |body: Value, path: &str, status: u16, needle: &str| -> Result<()> {
        let reply = call(&server, path, &body)?;
        ensure!(reply.status == status && reply.body.contains(needle), "{body}: {} {}", reply.status, reply.body);
        Ok(())
    };
    refused(json!({ "prompt": prompt, "model": "gpt-4" }), "/v1/completions", 404, "does not exist")?;
    refused(json!({ "prompt": prompt, "max_tokens": 1000 }), "/v1/completions", 400, "context is 96 tokens")?;
    refused(json!({ "prompt": prompt, "presence_penalty": 0.5 }), "/v1/completions", 400, "not supported")?;
    refused(json!({ "prompt": prompt, "temperature": -1 }), "/v1/completions", 400, "temperature")?;
    refused(json!({ "prompt": prompt, "n": 40 }), "/v1/completions", 400, "between 1 and 16")?;
    refused(json!({ "prompt": 3 }), "/v1/completions", 422, "")?;
    let turns = json!({ "messages": [{ "role": "user", "content": "hi" }, { "role": "assistant", "content": "yo" }, { "role": "user", "content": "and?" }] });
    refused(turns, "/v1/chat/completions", 400, "has no chat template")?;
    let huge = json!({ "prompt": "x".repeat(2 * 1024 * 1024) });
    ensure!(call(&server, "/v1/completions", &huge)?.status == 413, "a huge body is refused");

    // No key, a wrong key, or a cross-site page: 401.
    let body = json!({ "prompt": prompt }).to_string();
    for headers in [
        vec![("content-type", "application/json")],
        vec![("content-type", "application/json"), ("authorization", "Bearer nope")],
    ] {
        let reply = request(&server.address, "POST", "/v1/completions", &headers, &body)?;
        ensure!(reply.status == 401 && reply.body.contains("Authorization: Bearer"), "{}", reply.body);
    }
    let login = request(&server.address, "GET", &format!("/login/{}", server.token("viewer")), &[], "")?;
    let cookie = login.header("set-cookie").context("cookie")?.split(';').next().unwrap().to_string();
    let from_page = [("content-type", "application/json"), ("cookie", cookie.as_str())];
    ensure!(
        request(&server.address, "POST", "/v1/completions", &from_page, &body)?.status == 200,
        "the chat page's call"
    );
    let elsewhere =
        [("content-type", "application/json"), ("cookie", cookie.as_str()), ("origin", "http://evil.example")];
    ensure!(request(&server.address, "POST", "/v1/completions", &elsewhere, &body)?.status == 401, "a cross-site call");
    Ok(())
}

#[test]
fn a_real_instruct_model_chats_through_its_template() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = rlhf_train::testing::smollm2(&tmp.path().join("smollm2"))?;
    let server = serve(&dir)?;
    let question = json!([{ "role": "user", "content": "What is the capital of France?" }]);
    let reply = call(
        &server,
        "/v1/chat/completions",
        &json!({ "messages": question, "temperature": 0, "max_tokens": 30, "logprobs": true, "top_logprobs": 3 }),
    )?;
    ensure!(reply.status == 200, "{}", reply.body);
    let answer = reply.json()?;
    let choice = &answer["choices"][0];
    // transformers' greedy answer (tests/fixtures/smollm2-transformers.json in rlhf-model).
    ensure!(choice["message"]["content"] == "The capital of France is Paris.", "{answer}");
    ensure!(choice["finish_reason"] == "stop", "the template's end token ends the turn");
    let tokens: String = choice["logprobs"]["content"]
        .as_array()
        .context("content")?
        .iter()
        .filter_map(|t| t["token"].as_str())
        .collect();
    ensure!(tokens == "The capital of France is Paris.", "token texts: {tokens:?}");
    let streamed = call(
        &server,
        "/v1/chat/completions",
        &json!({ "messages": question, "temperature": 0, "max_tokens": 30, "stream": true }),
    )?;
    let data = events(&streamed)?;
    let joined: String = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    ensure!(joined == "The capital of France is Paris.", "streamed: {joined:?}");
    Ok(())
}
