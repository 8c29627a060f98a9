//! The HTTP side: a page and a small JSON API on axum.
//!
//! - `GET /login/{token}`: an annotator's personal link; sets an HttpOnly, SameSite=Strict cookie
//!   and sends them to `/`. Every other route needs that cookie, on loopback too.
//! - `GET /`: the labelling page (static HTML, script and style; the annotator's CSRF token in a
//!   meta tag). Model output and data reach the page only as JSON put in place with `textContent`,
//!   and the Content-Security-Policy forbids inline script, so a response holding HTML shows as text.
//! - `GET /api/next`: the annotator's next item, responses in their shuffled order; `GET
//!   /api/guidelines`.
//! - `GET /runs` (with a runs directory): every stage's training curves, live, and the eval reports
//!   ([`crate::runs`]); entries are named by their index in a fresh scan, never by a path. A report
//!   is served sandboxed (no script runs in it).
//! - `GET /chat` (with a served checkpoint): a chat with the model, streamed, each token's
//!   probability on demand; it calls the OpenAI-compatible API ([`crate::openai`]) under `/v1`, which
//!   other clients reach with the API key.
//! - `POST /api/label`: needs the `x-csrf-token` header and, when the browser sends one, a
//!   same-origin `Origin`; bodies are capped, posts are rate-limited per annotator. The label is
//!   fsynced into the journal before the answer leaves, so the next item only ever shows after its
//!   predecessor is on disk. An annotator only ever names their own items: the annotator is the
//!   cookie's, never a field of the request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rlhf_eval::generate::SampleConfig;
use serde_json::json;

use crate::engine::Engine;
use crate::live::{Feed, LiveBatch};
use crate::studio::{constant_time_eq, Refused, Studio, StudioKind, Submission};

const COOKIE: &str = "rlhf_studio";
/// The largest request body taken.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Posts an annotator may make in a burst, and per second after it.
const BURST: f64 = 20.0;
const PER_SECOND: f64 = 10.0;

const PAGE: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/app.js");
const STYLE: &str = include_str!("../web/app.css");

const RUNS_PAGE: &str = include_str!("../web/runs.html");
const RUNS_SCRIPT: &str = include_str!("../web/runs.js");

const CHAT_PAGE: &str = include_str!("../web/chat.html");
const CHAT_SCRIPT: &str = include_str!("../web/chat.js");

/// What one server serves: a studio, a runs directory, or both.
pub struct Served {
    pub studio: Option<Studio>,
    /// The runs directory of the runs page.
    pub runs: Option<std::path::PathBuf>,
    /// A personal link for the runs and chat pages alone (`rlhf-studio runs`, `serve`); annotators'
    /// links open them too.
    pub viewer_token: Option<String>,
    /// A checkpoint served on the chat page and the OpenAI-compatible API ([`crate::openai`]).
    pub engine: Option<Engine>,
    /// The API's key (`Authorization: Bearer <key>`); the pages' own calls sign in with their cookie.
    pub api_key: Option<String>,
    /// Live sampling: the studio's queue refills from `engine` ([`crate::live`]).
    pub live: Option<Feed>,
}

/// Live sampling while the server runs: one refill at a time, and the last failure (shown on the page).
struct Refills {
    engine: Engine,
    feed: Feed,
    running: AtomicBool,
    failure: Mutex<Option<String>>,
}

struct App {
    studio: Option<Mutex<Studio>>,
    runs: Option<std::path::PathBuf>,
    viewer_token: Option<String>,
    api_key: Option<String>,
    /// Where a personal link lands when there is no studio: the chat page or the runs page.
    home: &'static str,
    refills: Option<Refills>,
    buckets: Mutex<HashMap<usize, (f64, Instant)>>,
}

impl App {
    fn studio(&self) -> Result<std::sync::MutexGuard<'_, Studio>, Denied> {
        let studio = self.studio.as_ref().ok_or_else(|| denied(StatusCode::NOT_FOUND, "this server runs no studio"))?;
        Ok(studio.lock().unwrap())
    }

    /// Whether `token` is an annotator's or the viewer's.
    fn knows(&self, token: &str) -> bool {
        self.viewer_token.as_deref().is_some_and(|viewer| constant_time_eq(viewer.as_bytes(), token.as_bytes()))
            || self.studio.as_ref().is_some_and(|studio| studio.lock().unwrap().annotator_by_token(token).is_some())
    }
}

/// The router serving `served`.
pub fn router(served: Served) -> Router {
    let home = match (&served.studio, &served.engine) {
        (Some(_), _) => "/",
        (None, Some(_)) => "/chat",
        (None, None) => "/runs",
    };
    let app = Arc::new(App {
        studio: served.studio.map(Mutex::new),
        runs: served.runs,
        viewer_token: served.viewer_token,
        api_key: served.api_key,
        home,
        refills: served.live.zip(served.engine.clone()).map(|(feed, engine)| Refills {
            engine,
            feed,
            running: AtomicBool::new(false),
            failure: Mutex::new(None),
        }),
        buckets: Mutex::new(HashMap::new()),
    });
    refill_if_low(&app);
    let mut routes = Router::new()
        .route("/chat", get(chat_page))
        .route("/chat.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], CHAT_SCRIPT) }))
        .route("/", get(page))
        .route("/runs", get(runs_page))
        .route("/runs.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], RUNS_SCRIPT) }))
        .route("/api/runs", get(runs_list))
        .route("/api/runs/{index}/metrics", get(run_metrics))
        .route("/api/runs/{index}/report", get(run_report))
        .route("/login/{token}", get(login))
        .route("/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT) }))
        .route("/app.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }))
        .route("/api/next", get(next))
        .route("/api/guidelines", get(guidelines))
        .route("/api/label", post(label))
        .with_state(app.clone());
    if let Some(engine) = served.engine {
        routes = routes
            .merge(crate::openai::router(engine).route_layer(axum::middleware::from_fn_with_state(app, api_caller)));
    }
    routes.layer(DefaultBodyLimit::max(MAX_BODY_BYTES)).layer(axum::middleware::from_fn(security_headers))
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // A handler may set a stricter policy of its own (a sandboxed report).
    headers.entry("content-security-policy").or_insert(HeaderValue::from_static(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
    ));
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A refused request: its status and a message for the page.
struct Denied(StatusCode, String);

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn denied(status: StatusCode, message: impl Into<String>) -> Denied {
    Denied(status, message.into())
}

/// The token in the request's cookie.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn sign_in_first() -> Denied {
    denied(StatusCode::UNAUTHORIZED, "open your personal link (rlhf-studio printed it) to sign in")
}

/// The annotator the request's cookie belongs to.
fn annotator(app: &App, headers: &HeaderMap) -> Result<usize, Denied> {
    let token = cookie_token(headers).ok_or_else(sign_in_first)?;
    app.studio()?.annotator_by_token(token).ok_or_else(sign_in_first)
}

/// Checks that the request's cookie is an annotator's or the viewer's.
fn viewer(app: &App, headers: &HeaderMap) -> Result<(), Denied> {
    cookie_token(headers).filter(|token| app.knows(token)).map(|_| ()).ok_or_else(sign_in_first)
}

async fn login(State(app): State<Arc<App>>, Path(token): Path<String>) -> Result<Response, Denied> {
    if !app.knows(&token) {
        return Err(denied(StatusCode::NOT_FOUND, "no such link"));
    }
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    Ok((StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, app.home.to_string())])
        .into_response())
}

async fn page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.studio.is_none() {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, app.home)]).into_response();
    }
    let annotator = match annotator(&app, &headers) {
        Ok(annotator) => annotator,
        Err(_) => {
            let text = "Open the personal link rlhf-studio printed for you to sign in.";
            return (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text)
                .into_response();
        }
    };
    let Ok(studio) = app.studio() else { unreachable!("checked above") };
    let who = &studio.spec.annotators[annotator];
    // Both are [a-z0-9_-] (names are checked at set-up, the token is hex): safe inside HTML.
    let mode = match studio.spec.kind {
        StudioKind::Ranking => "ranking",
        StudioKind::Study => "study",
    };
    let html = PAGE.replace("{{CSRF}}", &who.csrf).replace("{{NAME}}", &who.name).replace("{{MODE}}", mode);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn next(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Denied> {
    let annotator = annotator(&app, &headers)?;
    let studio = app.studio()?;
    let (labelled, assigned) = studio.progress(annotator);
    let progress = json!({ "labelled": labelled, "assigned": assigned });
    let Some(index) = studio.next_item(annotator) else {
        drop(studio);
        if let Some(refills) = &app.refills {
            refill_if_low(&app);
            let failure = refills.failure.lock().unwrap().clone();
            return Ok(
                Json(json!({ "done": false, "waiting": true, "error": failure, "progress": progress })).into_response()
            );
        }
        return Ok(Json(json!({ "done": true, "progress": progress })).into_response());
    };
    let item = &studio.items[index];
    let responses: Vec<&str> =
        studio.display_order(annotator, index).into_iter().map(|response| item.responses[response].as_str()).collect();
    let next =
        json!({ "done": false, "item": item.id, "prompt": item.prompt, "responses": responses, "progress": progress });
    Ok(Json(next).into_response())
}

async fn guidelines(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Denied> {
    annotator(&app, &headers)?;
    Ok(Json(json!({ "text": app.studio()?.guidelines })).into_response())
}

async fn label(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Json<Submission>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Denied> {
    let annotator = annotator(&app, &headers)?;
    check_csrf(&app, annotator, &headers)?;
    if !take_token(&app, annotator) {
        return Err(denied(StatusCode::TOO_MANY_REQUESTS, "too many labels at once; slow down"));
    }
    let Json(submission) = body.map_err(|rejection| denied(rejection.status(), rejection.body_text()))?;
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // The journal's fsync blocks this worker, not the runtime's others; the lock keeps labels in order.
    let mut studio = app.studio()?;
    let recorded = tokio::task::block_in_place(|| studio.record(annotator, submission, time));
    drop(studio);
    refill_if_low(&app);
    match recorded {
        Ok(stored) => Ok(Json(json!({ "ok": true, "duplicate": !stored })).into_response()),
        Err(refused @ Refused::UnknownItem(_)) => Err(denied(StatusCode::NOT_FOUND, refused.to_string())),
        Err(refused @ Refused::NotYours(_)) => Err(denied(StatusCode::FORBIDDEN, refused.to_string())),
        Err(refused @ Refused::Invalid(_)) => Err(denied(StatusCode::UNPROCESSABLE_ENTITY, refused.to_string())),
        Err(Refused::Storage(e)) => {
            tracing::error!(error = %e, "could not journal a label");
            Err(denied(StatusCode::INTERNAL_SERVER_ERROR, "the label could not be saved; it was not recorded"))
        }
    }
}

/// Starts a live refill when an annotator runs low and none is running; the worker keeps the new
/// items on disk before they join the queues.
fn refill_if_low(app: &Arc<App>) {
    let Some(refills) = &app.refills else { return };
    let Ok(studio) = app.studio() else { return };
    if studio.fewest_left() >= refills.feed.low_water || refills.running.swap(true, Ordering::SeqCst) {
        return;
    }
    let cursor = studio.live_cursor;
    drop(studio);
    let positions = crate::live::next_prompts(&refills.feed.prompts, cursor, refills.feed.batch_prompts);
    let prompts = positions.iter().map(|(_, prompt)| prompt.clone()).collect();
    let config = SampleConfig { seed: refills.feed.config.seed + cursor as u64, ..refills.feed.config.clone() };
    let policy = refills.engine.info.name.clone();
    let app_for_reply = app.clone();
    let queued = refills.engine.sample(prompts, config, move |sampled| {
        let Some(refills) = &app_for_reply.refills else { return };
        let outcome = sampled.and_then(|samples| {
            let items = crate::live::batch_items(&positions, samples);
            let batch = LiveBatch { next_prompt: cursor + positions.len(), policy, items };
            let added = batch.items.len();
            let mut studio = app_for_reply.studio().map_err(|denied| denied.1)?;
            studio.add_live_batch(batch).map_err(|e| e.to_string())?;
            tracing::info!(items = added, cursor = studio.live_cursor, "live sampling: new items");
            Ok(())
        });
        if let Err(message) = &outcome {
            tracing::error!(%message, "live sampling failed");
        }
        *refills.failure.lock().unwrap() = outcome.err();
        refills.running.store(false, Ordering::SeqCst);
    });
    if let Err(busy) = queued {
        tracing::warn!(%busy, "live sampling waits for the model");
        refills.running.store(false, Ordering::SeqCst);
    }
}

fn check_csrf(app: &App, annotator: usize, headers: &HeaderMap) -> Result<(), Denied> {
    let expected = app.studio()?.spec.annotators[annotator].csrf.clone();
    let given = headers.get("x-csrf-token").map(HeaderValue::as_bytes).unwrap_or_default();
    if !constant_time_eq(given, expected.as_bytes()) {
        return Err(denied(StatusCode::FORBIDDEN, "missing or wrong x-csrf-token"));
    }
    if !same_origin(headers) {
        return Err(denied(StatusCode::FORBIDDEN, "cross-origin post refused"));
    }
    Ok(())
}

/// Whether the request's `Origin`, when the browser sends one, is this server.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let origin = origin.to_str().ok();
    origin == Some(&format!("http://{host}")) || origin == Some(&format!("https://{host}"))
}

/// Lets an API call through with the key (`Authorization: Bearer <key>`), or from this server's
/// own pages: a signed-in cookie (SameSite=Strict, so never sent from another site) and a
/// same-origin `Origin`. The JSON endpoints take `application/json` bodies only, which another
/// site cannot post without the server's consent (CORS), and this server gives none.
async fn api_caller(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let with_key = match (bearer, app.api_key.as_deref()) {
        (Some(given), Some(key)) => constant_time_eq(given.trim().as_bytes(), key.as_bytes()),
        _ => false,
    };
    let from_page = cookie_token(headers).is_some_and(|token| app.knows(token)) && same_origin(headers);
    if !with_key && !from_page {
        let message = "send the API key printed at start as `Authorization: Bearer <key>`";
        return crate::openai::api_error(StatusCode::UNAUTHORIZED, message).into_response();
    }
    next.run(request).await
}

/// A token bucket per annotator: whether this post may go ahead.
fn take_token(app: &App, annotator: usize) -> bool {
    let mut buckets = app.buckets.lock().unwrap();
    let now = Instant::now();
    let (tokens, last) = buckets.entry(annotator).or_insert((BURST, now));
    *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * PER_SECOND).min(BURST);
    *last = now;
    if *tokens < 1.0 {
        return false;
    }
    *tokens -= 1.0;
    true
}

async fn chat_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Denied> {
    viewer(&app, &headers)?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], CHAT_PAGE).into_response())
}

async fn runs_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Denied> {
    viewer(&app, &headers)?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], RUNS_PAGE).into_response())
}

/// The runs directory's entries now, after the viewer check.
fn entries(app: &App, headers: &HeaderMap) -> Result<Vec<crate::runs::Entry>, Denied> {
    viewer(app, headers)?;
    let root =
        app.runs.as_ref().ok_or_else(|| denied(StatusCode::NOT_FOUND, "no runs directory (start with --runs DIR)"))?;
    Ok(crate::runs::scan(root))
}

fn entry(app: &App, headers: &HeaderMap, index: usize) -> Result<crate::runs::Entry, Denied> {
    entries(app, headers)?.into_iter().nth(index).ok_or_else(|| denied(StatusCode::NOT_FOUND, "no such run"))
}

async fn runs_list(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Denied> {
    let list: Vec<serde_json::Value> = entries(&app, &headers)?
        .iter()
        .enumerate()
        .map(|(index, e)| json!({ "index": index, "name": e.name, "metrics": e.metrics.is_some(), "report": e.report.is_some() }))
        .collect();
    Ok(Json(json!({ "runs": list })).into_response())
}

async fn run_metrics(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(index): Path<usize>,
) -> Result<Response, Denied> {
    let entry = entry(&app, &headers, index)?;
    let metrics = entry.metrics.ok_or_else(|| denied(StatusCode::NOT_FOUND, "this entry has no metrics"))?;
    let series = tokio::task::block_in_place(|| crate::runs::series(&metrics))
        .map_err(|e| denied(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({ "name": entry.name, "series": series })).into_response())
}

async fn run_report(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(index): Path<usize>,
) -> Result<Response, Denied> {
    let entry = entry(&app, &headers, index)?;
    let report = entry.report.ok_or_else(|| denied(StatusCode::NOT_FOUND, "this entry has no report"))?;
    let html =
        std::fs::read_to_string(&report).map_err(|e| denied(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // The report is the eval's own self-contained HTML (inline style, base64 plots); sandboxed, no script.
    let policy = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'";
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CONTENT_SECURITY_POLICY, policy)], html)
        .into_response())
}
