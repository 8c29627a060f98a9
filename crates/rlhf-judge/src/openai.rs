//! Any OpenAI-compatible chat-completions server as the judge (vLLM, SGLang, llama.cpp's server,
//! Ollama, `rlhf-studio serve`): one request per judging conversation asking for one token at
//! temperature 0 with the top log-probs; P(A) comes from the log-probs of the tokens spelling `A`
//! and `B` when the server returns them, else from the answer's first letter.
//!
//! Requests run `concurrency` at a time, each with a timeout; a 429, a 5xx or a dropped connection
//! is retried with exponential backoff (or the server's `Retry-After`) up to `max_retries` times; a
//! body that is not a chat completion, or any other status, is one error naming the server.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rlhf_data::ChatMessage;
use serde_json::{json, Value};

use crate::ai::Letters;
use crate::{Error, Result};

/// How to reach the server.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenAiSettings {
    /// E.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The model the server serves (its name in `/v1/models`).
    pub model: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub max_retries: u32,
    /// The first retry's wait; each next one doubles it (at most 30 s).
    pub backoff: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
}

impl OpenAiSettings {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiSettings {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            model: model.into(),
            api_key: None,
            timeout: Duration::from_secs(120),
            max_retries: 5,
            backoff: Duration::from_millis(500),
            concurrency: 4,
        }
    }
}

/// A model behind an OpenAI-compatible server.
pub struct OpenAiModel {
    pub settings: OpenAiSettings,
    agent: ureq::Agent,
}

impl OpenAiModel {
    pub fn new(settings: OpenAiSettings) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        OpenAiModel { settings, agent }
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.settings.base_url)
    }

    fn server_error(&self, message: impl Into<String>) -> Error {
        Error::Server { url: self.url(), message: message.into() }
    }

    /// One conversation's P(A), retrying what is worth retrying.
    fn ask(&self, conversation: &[ChatMessage]) -> Result<Option<f64>> {
        let body = json!({
            "model": self.settings.model,
            "messages": conversation,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": true,
            "top_logprobs": 20,
        });
        let mut attempt = 0;
        loop {
            let mut request = self.agent.post(&self.url()).header("content-type", "application/json");
            if let Some(key) = &self.settings.api_key {
                request = request.header("authorization", &format!("Bearer {key}"));
            }
            let (retry, why) = match request.send(body.to_string().as_bytes()) {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok());
                    let text = response
                        .body_mut()
                        .read_to_string()
                        .map_err(|e| self.server_error(format!("cannot read the answer: {e}")))?;
                    if (200..300).contains(&status) {
                        let answer: Value = serde_json::from_str(&text)
                            .map_err(|e| self.server_error(format!("the answer is not JSON ({e}): {}", clip(&text))))?;
                        return read_answer(&answer)
                            .map_err(|message| self.server_error(format!("{message}: {}", clip(&text))));
                    }
                    if status != 429 && status < 500 {
                        return Err(self.server_error(format!("HTTP {status}: {}", clip(&text))));
                    }
                    (retry_after.map(Duration::from_secs_f64), format!("HTTP {status}"))
                }
                Err(e) => (None, e.to_string()),
            };
            if attempt >= self.settings.max_retries {
                return Err(self.server_error(format!("{why}, still after {} retries", self.settings.max_retries)));
            }
            let wait = retry.unwrap_or(self.settings.backoff * 2u32.pow(attempt)).min(Duration::from_secs(30));
            tracing::warn!(%why, attempt, wait_s = wait.as_secs_f64(), "the judge's server asks to retry");
            std::thread::sleep(wait);
            attempt += 1;
        }
    }
}

fn clip(text: &str) -> String {
    let short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// P(A) from a chat completion: the log-probs of the first token's alternatives spelling `A` or `B`
/// (when the server gave them), else the answer's first letter; `None` when it names neither.
pub fn read_answer(answer: &Value) -> std::result::Result<Option<f64>, String> {
    let choice = answer["choices"].get(0).ok_or("the answer has no `choices`")?;
    if let Some(top) = choice["logprobs"]["content"].get(0).and_then(|t| t["top_logprobs"].as_array()) {
        let mass = |letter: &str| {
            let logs: Vec<f64> = top
                .iter()
                .filter(|t| t["token"].as_str().is_some_and(|s| s.trim() == letter))
                .filter_map(|t| t["logprob"].as_f64())
                .collect();
            let max = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            (!logs.is_empty()).then(|| max + logs.iter().map(|l| (l - max).exp()).sum::<f64>().ln())
        };
        match (mass("A"), mass("B")) {
            (Some(a), Some(b)) => return Ok(Some(1.0 / (1.0 + (b - a).exp()))),
            (Some(_), None) => return Ok(Some(1.0)),
            (None, Some(_)) => return Ok(Some(0.0)),
            (None, None) => {}
        }
    }
    let content = choice["message"]["content"].as_str().ok_or("the answer has no message content")?;
    let letter = content.trim_start_matches(|c: char| c.is_whitespace() || c == '(' || c == '[' || c == '*');
    // The letter alone, not a word starting with it ("Both ...").
    let alone = !letter.chars().nth(1).is_some_and(char::is_alphanumeric);
    Ok(match letter.chars().next() {
        Some('A') if alone => Some(1.0),
        Some('B') if alone => Some(0.0),
        _ => None,
    })
}

impl Letters for OpenAiModel {
    fn model(&self) -> String {
        self.settings.model.clone()
    }

    fn p_a(&self, conversations: &[Vec<ChatMessage>]) -> Result<Vec<Option<f64>>> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let answers: Mutex<Vec<Option<Option<f64>>>> = Mutex::new(vec![None; conversations.len()]);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..self.settings.concurrency.clamp(1, conversations.len().max(1)) {
                scope.spawn(|| {
                    while !failed.load(Ordering::SeqCst) {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let Some(conversation) = conversations.get(index) else { break };
                        match self.ask(conversation) {
                            Ok(p) => answers.lock().unwrap()[index] = Some(p),
                            Err(e) => {
                                failed.store(true, Ordering::SeqCst);
                                first_error.lock().unwrap().get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap() {
            return Err(e);
        }
        Ok(answers.into_inner().unwrap().into_iter().map(|a| a.expect("every conversation was asked")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_letters_come_from_log_probs_else_from_the_text() {
        let with = json!({ "choices": [{ "message": { "content": "A" }, "logprobs": { "content": [{ "token": "A", "logprob": -0.5, "top_logprobs": [
            { "token": "A", "logprob": -0.5 }, { "token": " B", "logprob": -1.5 }, { "token": "B", "logprob": -3.0 }, { "token": "C", "logprob": -2.0 }] }] } }] });
        let p = read_answer(&with).unwrap().unwrap();
        let b = ((-1.5f64).exp() + (-3.0f64).exp()).ln();
        assert!((p - 1.0 / (1.0 + (b + 0.5).exp())).abs() < 1e-12, "{p}");
        let text = json!({ "choices": [{ "message": { "content": " (B) because" } }] });
        assert_eq!(read_answer(&text).unwrap(), Some(0.0));
        let neither = json!({ "choices": [{ "message": { "content": "Both are fine." } }] });
        assert_eq!(read_answer(&neither).unwrap(), None);
        assert!(read_answer(&json!({ "error": "x" })).unwrap_err().contains("no `choices`"));
    }
}
