//! The OpenAI-compatible API over the served checkpoint ([`crate::engine`]): `GET /v1/models`,
//! `POST /v1/completions` and `POST /v1/chat/completions`, whole or streamed (server-sent events,
//! `data: [DONE]` last), with log-probs (`logprobs`/`top_logprobs`). What any OpenAI client, the
//! chat page and an AI judge talk to.
//!
//! Chat messages go through the checkpoint's chat template; a checkpoint without one takes a single
//! user message as its plain prompt (as the pipeline's stages do). Sampling defaults come from its
//! `generation_config.json`, then OpenAI's (temperature 1, top-p 1); `max_tokens` defaults to what
//! the model's positions leave (16 for completions, as OpenAI's). `top_k` is accepted as vLLM does.
//! Fields this server cannot honour (penalties, `echo`, `logit_bias`, tools) are refused with 400
//! rather than ignored; fields that change nothing here (`user`, `stream_options` without usage) are
//! accepted.

use std::convert::Infallible;

use axum::extract::{rejection::JsonRejection, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rlhf_data::{ChatMessage, PromptText};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::engine::{Busy, Completion, Engine, Event, Finish, TokenLogprob, MAX_TOP_LOGPROBS};

/// The largest request body the API takes (long conversations).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most choices (`n`) times prompts one request may ask for.
pub const MAX_ROWS: usize = 16;

/// The API's routes, on `engine`.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(engine)
}

/// An error as OpenAI's API writes one.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.0.is_server_error() { "server_error" } else { "invalid_request_error" };
        (self.0, Json(json!({ "error": { "message": self.1, "type": kind, "param": null, "code": null } })))
            .into_response()
    }
}

pub fn api_error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

fn bad_request(message: impl Into<String>) -> ApiError {
    api_error(StatusCode::BAD_REQUEST, message)
}

/// `"text"` or `["text", ...]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// What both endpoints share.
#[derive(Deserialize)]
struct Sampling {
    model: Option<String>,
    max_tokens: Option<i64>,
    /// The chat API's newer name for `max_tokens`.
    max_completion_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    #[serde(default = "one")]
    n: usize,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    stop: Option<OneOrMany>,
    seed: Option<u64>,
    #[serde(default)]
    presence_penalty: f64,
    #[serde(default)]
    frequency_penalty: f64,
    logit_bias: Option<Value>,
    tools: Option<Value>,
    response_format: Option<Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
struct CompletionRequest {
    prompt: OneOrMany,
    /// The number of alternatives per token to list (0 lists only the chosen token's log-prob).
    logprobs: Option<usize>,
    #[serde(default)]
    echo: bool,
    #[serde(flatten)]
    sampling: Sampling,
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(default)]
    logprobs: bool,
    top_logprobs: Option<usize>,
    #[serde(flatten)]
    sampling: Sampling,
}

/// Which endpoint a response is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Completions,
    Chat,
}

async fn models(State(engine): State<Engine>) -> Response {
    let info = &engine.info;
    Json(json!({
        "object": "list",
        "data": [{
            "id": info.name,
            "object": "model",
            "created": 0,
            "owned_by": "rlhf-rs",
            "max_model_len": info.max_positions,
            "chat_template": info.chat_template,
        }],
    }))
    .into_response()
}

async fn completions(
    State(engine): State<Engine>,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|r| api_error(r.status(), r.body_text()))?;
    if request.echo {
        return Err(bad_request("`echo` is not supported"));
    }
    let prompts = request.prompt.into_vec();
    if prompts.is_empty() {
        return Err(bad_request("`prompt` is empty"));
    }
    let encoded = prompts
        .iter()
        .map(|prompt| engine.tokenizer.encode_with_special_tokens(prompt).map_err(|e| bad_request(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let logprobs = request.logprobs.map(|k| k.min(MAX_TOP_LOGPROBS));
    run(engine, Api::Completions, encoded, request.sampling, logprobs, 16).await
}

async fn chat_completions(
    State(engine): State<Engine>,
    body: Result<Json<ChatRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|r| api_error(r.status(), r.body_text()))?;
    if request.messages.is_empty() {
        return Err(bad_request("`messages` is empty"));
    }
    let encoded = if engine.info.chat_template {
        let prompt = PromptText { text: String::new(), messages: Some(request.messages) };
        engine.tokenizer.encode_generation_prompt(&prompt)
    } else {
        match request.messages.as_slice() {
            [only] if only.role == "user" => engine.tokenizer.encode_generation_prompt(only.content.as_str()),
            _ => {
                return Err(bad_request(format!(
                    "`{}` has no chat template: send one user message (its plain prompt), or use /v1/completions",
                    engine.info.name
                )))
            }
        }
    }
    .map_err(|e| bad_request(e.to_string()))?;
    let logprobs = match (request.logprobs, request.top_logprobs) {
        (false, Some(_)) => return Err(bad_request("`top_logprobs` needs `logprobs: true`")),
        (false, None) => None,
        (true, top) => {
            let top = top.unwrap_or(0);
            if top > MAX_TOP_LOGPROBS {
                return Err(bad_request(format!("`top_logprobs` is at most {MAX_TOP_LOGPROBS}")));
            }
            Some(top)
        }
    };
    let default_max = engine.info.max_positions;
    run(engine, Api::Chat, vec![encoded], request.sampling, logprobs, default_max).await
}

/// Checks `sampling`, queues the job and answers, whole or streamed.
async fn run(
    engine: Engine,
    api: Api,
    prompts: Vec<Vec<i64>>,
    sampling: Sampling,
    logprobs: Option<usize>,
    default_max_tokens: i64,
) -> Result<Response, ApiError> {
    let info = engine.info.clone();
    if let Some(model) = sampling.model.as_deref().filter(|m| *m != info.name) {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            format!("the model `{model}` does not exist; this server serves `{}`", info.name),
        ));
    }
    if sampling.presence_penalty != 0.0 || sampling.frequency_penalty != 0.0 {
        return Err(bad_request("presence and frequency penalties are not supported"));
    }
    for (field, set) in [
        ("logit_bias", sampling.logit_bias.is_some()),
        ("tools", sampling.tools.is_some()),
        ("response_format", sampling.response_format.is_some()),
    ] {
        if set {
            return Err(bad_request(format!("`{field}` is not supported")));
        }
    }
    let rows = prompts.len() * sampling.n;
    if sampling.n == 0 || rows > MAX_ROWS {
        return Err(bad_request(format!("`n` times the prompts must be between 1 and {MAX_ROWS}, got {rows}")));
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    if prompts.iter().any(Vec::is_empty) {
        return Err(bad_request("a prompt is empty"));
    }
    let room = info.max_positions - longest;
    if room < 1 {
        return Err(bad_request(format!(
            "the prompt has {longest} tokens; the model's context is {} tokens",
            info.max_positions
        )));
    }
    let max_tokens = match sampling.max_completion_tokens.or(sampling.max_tokens) {
        Some(asked) if asked < 1 => return Err(bad_request("`max_tokens` must be at least 1")),
        Some(asked) if asked > room => {
            return Err(bad_request(format!(
                "the model's context is {} tokens: {longest} in the prompt leave {room} for `max_tokens`, not {asked}",
                info.max_positions
            )))
        }
        Some(asked) => asked,
        None => info.defaults.max_new_tokens.unwrap_or(default_max_tokens).min(room),
    };
    let temperature = sampling.temperature.or(info.defaults.temperature()).unwrap_or(1.0);
    let top_p = sampling.top_p.or(info.defaults.top_p).unwrap_or(1.0);
    let top_k = sampling.top_k.or(info.defaults.top_k).unwrap_or(0);
    let valid = (0.0..=2.0).contains(&temperature) && top_p > 0.0 && top_p <= 1.0 && top_k >= 0;
    if !valid {
        return Err(bad_request("`temperature` must be in [0, 2], `top_p` in (0, 1] and `top_k` >= 0"));
    }
    let stop = sampling.stop.map(OneOrMany::into_vec).unwrap_or_default();
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(bad_request("`stop` takes up to 4 non-empty strings"));
    }
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum::<usize>() * sampling.n;
    let (events, received) = unbounded_channel();
    let expanded: Vec<Vec<i64>> = prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), sampling.n)).collect();
    let seed = sampling.seed.unwrap_or_else(rand::random);
    let job = Completion { prompts: expanded, max_tokens, temperature, top_p, top_k, seed, stop, logprobs, events };
    engine.complete(job).map_err(|busy| match busy {
        Busy::Full => api_error(StatusCode::SERVICE_UNAVAILABLE, busy.to_string()),
        Busy::Stopped => api_error(StatusCode::INTERNAL_SERVER_ERROR, busy.to_string()),
    })?;
    let reply = Reply {
        api,
        id: format!("{}-{:016x}", if api == Api::Chat { "chatcmpl" } else { "cmpl" }, rand::random::<u64>()),
        created: chrono::Utc::now().timestamp(),
        model: info.name.clone(),
        logprobs: logprobs.is_some(),
        rows,
        prompt_tokens,
    };
    if sampling.stream {
        let usage = sampling.stream_options.is_some_and(|o| o.include_usage);
        Ok(reply.stream(received, usage).into_response())
    } else {
        reply.whole(received).await
    }
}

/// What a response says besides the text.
struct Reply {
    api: Api,
    id: String,
    created: i64,
    model: String,
    logprobs: bool,
    rows: usize,
    prompt_tokens: usize,
}

/// A row's text and log-probs so far.
#[derive(Default)]
struct Choice {
    text: String,
    tokens: Vec<TokenLogprob>,
    finish: Option<Finish>,
    completion_tokens: usize,
}

impl Reply {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.api, chunk) {
            (Api::Chat, false) => "chat.completion",
            (Api::Chat, true) => "chat.completion.chunk",
            (Api::Completions, _) => "text_completion",
        }
    }

    fn usage(&self, completion_tokens: usize) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        })
    }

    /// The log-probs of `tokens` in the endpoint's shape; `offset` is where their text starts.
    fn logprobs_json(&self, tokens: &[TokenLogprob], offset: usize) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        match self.api {
            Api::Chat => {
                let entry = |token: &str, logprob: f32| json!({ "token": token, "logprob": logprob, "bytes": token.as_bytes() });
                let content: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let mut e = entry(&t.token, t.logprob);
                        e["top_logprobs"] = t.top.iter().map(|(token, lp)| entry(token, *lp)).collect();
                        e
                    })
                    .collect();
                json!({ "content": content })
            }
            Api::Completions => {
                let mut offsets = Vec::with_capacity(tokens.len());
                let mut at = offset;
                for t in tokens {
                    offsets.push(at);
                    at += t.token.len();
                }
                let top: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        t.top
                            .iter()
                            .map(|(token, lp)| (token.clone(), json!(lp)))
                            .collect::<serde_json::Map<_, _>>()
                            .into()
                    })
                    .collect();
                json!({
                    "tokens": tokens.iter().map(|t| t.token.as_str()).collect::<Vec<_>>(),
                    "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                    "top_logprobs": top,
                    "text_offset": offsets,
                })
            }
        }
    }

    fn choice_json(&self, index: usize, choice: &Choice) -> Value {
        let finish = choice.finish.map(Finish::as_str);
        let logprobs = self.logprobs_json(&choice.tokens, 0);
        match self.api {
            Api::Chat => json!({
                "index": index,
                "message": { "role": "assistant", "content": choice.text },
                "logprobs": logprobs,
                "finish_reason": finish,
            }),
            Api::Completions => {
                json!({ "index": index, "text": choice.text, "logprobs": logprobs, "finish_reason": finish })
            }
        }
    }

    /// Waits for every row and answers with one JSON body.
    async fn whole(self, mut received: UnboundedReceiver<Event>) -> Result<Response, ApiError> {
        let mut choices: Vec<Choice> = (0..self.rows).map(|_| Choice::default()).collect();
        while let Some(event) = received.recv().await {
            match event {
                Event::Text { row, text, tokens } => {
                    choices[row].text.push_str(&text);
                    choices[row].tokens.extend(tokens);
                }
                Event::Done { row, finish, tokens } => {
                    choices[row].finish = Some(finish);
                    choices[row].completion_tokens = tokens;
                }
                Event::Failed(message) => return Err(api_error(StatusCode::INTERNAL_SERVER_ERROR, message)),
            }
            if choices.iter().all(|c| c.finish.is_some()) {
                break;
            }
        }
        let completion_tokens = choices.iter().map(|c| c.completion_tokens).sum();
        let body = json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": choices.iter().enumerate().map(|(i, c)| self.choice_json(i, c)).collect::<Vec<_>>(),
            "usage": self.usage(completion_tokens),
        });
        Ok(Json(body).into_response())
    }

    /// One chunk: `choice` holds the row's index and what changed.
    fn chunk(&self, choices: Value, usage: Option<Value>) -> SseEvent {
        let mut body = json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            body["usage"] = usage;
        }
        SseEvent::default().data(body.to_string())
    }

    /// The rows' text as server-sent events while it is generated, `data: [DONE]` last. A client
    /// that goes away stops the generation.
    fn stream(
        self,
        received: UnboundedReceiver<Event>,
        usage: bool,
    ) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
        let state = StreamState {
            reply: self,
            received,
            offsets: Vec::new(),
            done: 0,
            completion_tokens: 0,
            started: false,
            usage,
            ended: false,
        };
        let stream = futures_util::stream::unfold(state, |mut state| async move {
            let events = state.next_events().await?;
            Some((futures_util::stream::iter(events.into_iter().map(Ok)), state))
        });
        Sse::new(futures_util::StreamExt::flatten(stream))
    }
}

struct StreamState {
    reply: Reply,
    received: UnboundedReceiver<Event>,
    /// Each row's text length so far (the completions API's `text_offset`).
    offsets: Vec<usize>,
    done: usize,
    completion_tokens: usize,
    started: bool,
    usage: bool,
    ended: bool,
}

impl StreamState {
    /// The next events to send; `None` once `[DONE]` went out.
    async fn next_events(&mut self) -> Option<Vec<SseEvent>> {
        if self.ended {
            return None;
        }
        let reply = &self.reply;
        if !self.started {
            self.started = true;
            self.offsets = vec![0; reply.rows];
            if reply.api == Api::Chat {
                let roles: Vec<Value> = (0..reply.rows)
                    .map(|i| json!({ "index": i, "delta": { "role": "assistant", "content": "" }, "logprobs": null, "finish_reason": null }))
                    .collect();
                return Some(vec![reply.chunk(roles.into(), None)]);
            }
        }
        let finished = |this: &mut Self| {
            this.ended = true;
            let mut out = Vec::new();
            if this.usage {
                out.push(this.reply.chunk(json!([]), Some(this.reply.usage(this.completion_tokens))));
            }
            out.push(SseEvent::default().data("[DONE]"));
            out
        };
        if self.done == reply.rows {
            return Some(finished(self));
        }
        let event = match self.received.recv().await {
            Some(event) => event,
            None => return Some(finished(self)),
        };
        let reply = &self.reply;
        let choice = match event {
            Event::Text { text, tokens, .. } if text.is_empty() && tokens.is_empty() => return Some(Vec::new()),
            Event::Text { row, text, tokens } => {
                let logprobs = reply.logprobs_json(&tokens, self.offsets[row]);
                self.offsets[row] += text.len();
                match reply.api {
                    Api::Chat => {
                        json!({ "index": row, "delta": { "content": text }, "logprobs": logprobs, "finish_reason": null })
                    }
                    Api::Completions => {
                        json!({ "index": row, "text": text, "logprobs": logprobs, "finish_reason": null })
                    }
                }
            }
            Event::Done { row, finish, tokens } => {
                self.done += 1;
                self.completion_tokens += tokens;
                match reply.api {
                    Api::Chat => {
                        json!({ "index": row, "delta": {}, "logprobs": null, "finish_reason": finish.as_str() })
                    }
                    Api::Completions => {
                        json!({ "index": row, "text": "", "logprobs": null, "finish_reason": finish.as_str() })
                    }
                }
            }
            Event::Failed(message) => {
                self.ended = true;
                let error = json!({ "error": { "message": message, "type": "server_error" } });
                return Some(vec![SseEvent::default().data(error.to_string()), SseEvent::default().data("[DONE]")]);
            }
        };
        Some(vec![reply.chunk(json!([choice]), None)])
    }
}
